"""What the playbook benches share: one ansible-playbook run on localhost whose tasks a callback
plugin times on the controller (task start to result), and figures per kind of task.

A timed task is named "KIND N" (N: its repetition); other names (a warm-up, a check) are not timed.
"""

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

from localnet_cmd import REPO_ROOT

VENV_BIN = os.path.join(REPO_ROOT, ".venv", "bin")
COLLECTIONS_PATH = os.path.join(REPO_ROOT, ".build")
CALLBACK_NAME = "bench_task_times"
TIMES_ENV = "NICOMPUTE_BENCH_TIMES"
# The default stdout callback, which also writes each task's wall time on the controller (task start to
# its result shown) as a JSON line to $NICOMPUTE_BENCH_TIMES, with the seconds the miners took over
# allocation attempts where the result reports them. A stdout callback rather than one more
# callback: Ansible copies and walks a result once more for every callback that wants it, a cost
# that grows with the result and that a playbook with the default output does not pay.
CALLBACK_SOURCE = '''from __future__ import annotations

DOCUMENTATION = """
    name: %(name)s
    type: stdout
    short_description: default Ansible screen output, and each task's wall time
    description:
      - The default callback, which also appends each task's wall time to the file named by $%(env)s.
    extends_documentation_fragment:
      - default_callback
      - result_format_callback
"""

import json
import os
import time

from ansible.plugins.callback.default import CallbackModule as DefaultCallback


class CallbackModule(DefaultCallback):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "stdout"
    CALLBACK_NAME = "%(name)s"

    def __init__(self):
        super().__init__()
        self._started = {}

    def v2_playbook_on_task_start(self, task, is_conditional):
        super().v2_playbook_on_task_start(task, is_conditional)
        self._started[task._uuid] = time.monotonic()

    def _record(self, result, ok):
        task = result._task
        seconds = time.monotonic() - self._started[task._uuid]
        attempts = result._result.get("attempts") or []
        line = {"task": task.get_name(), "seconds": seconds, "ok": ok,
                "attempts_elapsed_s": sum(attempt.get("elapsed") or 0 for attempt in attempts)}
        with open(os.environ["%(env)s"], "a") as handle:
            handle.write(json.dumps(line) + "\\n")

    def v2_runner_on_ok(self, result):
        super().v2_runner_on_ok(result)
        self._record(result, True)

    def v2_runner_on_failed(self, result, ignore_errors=False):
        super().v2_runner_on_failed(result, ignore_errors)
        self._record(result, False)
''' % {"name": CALLBACK_NAME, "env": TIMES_ENV}


def require_venv():
    if not os.path.exists(os.path.join(VENV_BIN, "ansible-playbook")):
        sys.exit("no %s/ansible-playbook: run `make setup` first" % VENV_BIN)


def write_file(path, text, mode=0o644):
    with open(path, "w") as handle:
        handle.write(text)
    os.chmod(path, mode)
    return path


def write_callback(work_dir):
    """The timing callback in work_dir/callback_plugins/, where ansible-playbook finds it next to the playbook."""
    os.makedirs(os.path.join(work_dir, "callback_plugins"))
    write_file(os.path.join(work_dir, "callback_plugins", CALLBACK_NAME + ".py"), CALLBACK_SOURCE)


def localhost_inventory(work_dir, run, python=os.path.join(VENV_BIN, "python")):
    """An inventory of localhost, connection local, modules run by `python`."""
    return write_file(os.path.join(work_dir, "inventory-%s.ini" % run),
                      "localhost ansible_connection=local ansible_python_interpreter=%s\n" % python)


def run_playbook(work_dir, book, inventory, run):
    """ansible-playbook with the timing callback as its stdout callback (records in
    work_dir/task-times-RUN.jsonl); returns (completed process, seconds)."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_STDOUT_CALLBACK=CALLBACK_NAME,
               ANSIBLE_REMOTE_TMP=os.path.join(work_dir, "remote-tmp"),
               ANSIBLE_LOCAL_TEMP=os.path.join(work_dir, "local-tmp"), ANSIBLE_NOCOLOR="1")
    env[TIMES_ENV] = os.path.join(work_dir, "task-times-%s.jsonl" % run)
    started = time.monotonic()
    completed = subprocess.run([os.path.join(VENV_BIN, "ansible-playbook"), "-i", inventory, book], cwd=work_dir,
                               env=env, capture_output=True, text=True, check=False)
    return completed, time.monotonic() - started


def read_task_times(work_dir, run="timed"):
    with open(os.path.join(work_dir, "task-times-%s.jsonl" % run)) as handle:
        return [json.loads(line) for line in handle]


def records_by_kind(records, kinds):
    """{kind: [record]} of the timed tasks that succeeded ("KIND N"); other tasks are left out."""
    found = dict((kind, []) for kind in kinds)
    for record in records:
        kind = record["task"].split()[0]
        if kind in found and record["ok"]:
            found[kind].append(record)
    return found


def summary(values):
    return {"n": len(values), "median_s": statistics.median(values),
            "p90_s": statistics.quantiles(values, n=10, method="inclusive")[-1]}


def timed_records(work_dir, kinds, repeat, run="timed"):
    """{kind: [record]} with `repeat` records per kind; None (and why) when a task's record is missing."""
    found = records_by_kind(read_task_times(work_dir, run), kinds)
    if any(len(records) != repeat for records in found.values()):
        print("expected %d ok records per kind, got %s" % (repeat, dict((k, len(v)) for k, v in found.items())))
        return None
    return found


def show_failure(completed):
    print("ansible-playbook exited %d; its output ends (lines cut at 300 characters):" % completed.returncode)
    print("\n".join(line[:300] for line in (completed.stdout + completed.stderr).splitlines()[-30:]))


def measured_in_work_dir(prefix, keep, json_path, measure, show):
    """measure(work_dir) in a temp dir of its own; show its figures, write them to json_path when
    given, and remove the dir unless keep. The figures, or None when measuring failed."""
    work_dir = tempfile.mkdtemp(prefix=prefix)
    try:
        figures = measure(work_dir)
        if figures is None:
            return None
        show(figures)
    finally:
        if keep:
            print("kept %s" % work_dir)
        else:
            shutil.rmtree(work_dir)
    if json_path:
        with open(json_path, "w") as handle:
            json.dump(figures, handle, indent=1, sort_keys=True)
    return figures
