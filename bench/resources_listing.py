"""nicompute_resources over 240 miners from the validator database, per task, against ansible.builtin.ping.

Run from the collection root (no root, no localnet): .venv/bin/python bench/resources_listing.py [options]

Builds a network state in a temp dir without starting a miner: a validator database (localnet's
seeding: miner_details and stats for every miner, the specs mix with its malformed rows, plus a
few upstream `allocation` and `blacklist` rows) and a metagraph snapshot in which every tenth
miner serves no axon. Then one ansible-playbook run on localhost (gather_facts off) runs a
warm-up ping, one nicompute_resources task that fails unless it lists every miner, and K ping
and K nicompute_resources tasks (source database, W&B disabled) interleaved, so machine noise
hits both kinds alike. The playbook runs twice. The timed run uses the venv's python as it is: a
callback plugin written next to the playbook records each task's wall time on the controller
(task start to result). The import run uses a wrapper interpreter (ansible_python_interpreter)
that adds `-X importtime`, keeps each process's stderr in its own log and appends the
interpreter's wall time to it; its figures are kept apart, since `-X importtime` slows every
import and so the kind that imports more.

Prints median and p90 per task kind, the ratio of the medians (target: resources at most 1.5x
ping, the floor Ansible pays per task), which module processes imported bittensor,
bittensor_wallet or wandb, the module processes' median wall and import times (and how much of
the latter is the collection's own modules, compiled from the AnsiballZ zip at every run), and
`list_resources` called in this process over the same state (the module's own work, without
Ansible). About 30 s on 2 cores. Exit status 0 when the measurement ran (1 with --require-ratio
when the ratio misses the target), 1 when something broke (a task failed, the listing was not
complete, a record or a module process log is missing). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import yaml
from _playbook_timing import (
    VENV_BIN,
    localhost_inventory,
    measured_in_work_dir,
    require_venv,
    run_playbook,
    show_failure,
    summary,
    timed_records,
    write_callback,
    write_file,
)
from bittensor_wallet import Keypair

from ansible_collections.neuralinternet.compute.plugins.module_utils import _store
from ansible_collections.neuralinternet.compute.plugins.module_utils._resources import list_resources
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from localnet import seed
from localnet.layout import NETUID, NETWORK, Layout

RESOURCES = "neuralinternet.compute.nicompute_resources"
PING = "ansible.builtin.ping"
KINDS = (("ping", PING), ("resources", RESOURCES))
TARGET_RATIO = 1.5
WATCHED_PACKAGES = ("bittensor", "bittensor_wallet", "wandb")
# What tells the module processes apart in their import lists.
RESOURCES_MARK = "ansible_collections.neuralinternet.compute.plugins.module_utils._resources"
PING_MARK = "ansible.modules"
COLLECTION_PACKAGE = "ansible_collections.neuralinternet.compute"
WALL_MARK = "process wall ns:"
WRAPPER_SOURCE = '''#!/bin/sh
# The module's interpreter: python -X importtime with this process's stderr in its own log (stdout
# stays Ansible's), and the interpreter's wall time on the log's last line.
log=%(logs)s/$$.log
started=$(date +%%s%%N)
%(python)s -X importtime "$@" 2>>"$log"
status=$?
echo "%(wall)s $(( $(date +%%s%%N) - started ))" >>"$log"
exit $status
'''


class BenchLayout(Layout):
    """localnet's layout for miners that are never started: addresses nobody dials, some not serving."""

    def ip(self, uid):
        if planted_status(uid) == "offline":
            return "0.0.0.0"
        return "10.%d.%d.%d" % (uid // 65536, uid // 256 % 256, uid % 256)


def planted_status(uid):
    """The status the database or the metagraph forces on miner uid, or None (its specs decide)."""
    if uid % 10 == 0:
        return "offline"
    if uid % 30 == 7:
        return "allocated"
    if uid % 30 == 13:
        return "penalized"
    return None


def derived_keys(layout):
    """{uid: (hotkey, coldkey)}: ss58 addresses from fixed derivation paths, so every run lists the same miners."""
    uids = [0] + list(layout.miner_uids)
    return dict((uid, (Keypair.create_from_uri("//nicompute-bench/hot/%d" % uid).ss58_address,
                       Keypair.create_from_uri("//nicompute-bench/cold/%d" % uid).ss58_address)) for uid in uids)


def plant_allocations_and_penalties(layout, keys):
    """Upstream CLI allocations and blacklist rows for the miners planted_status names."""
    connection = _store.connect(layout.db_path)
    try:
        connection.execute("BEGIN IMMEDIATE")
        for uid in layout.miner_uids:
            hotkey = keys[uid][0]
            if planted_status(uid) == "allocated":
                details = {"ip": layout.ip(uid), "resource": "bench", "regkey": "bench-%d" % uid}
                connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (hotkey, json.dumps(details)))
            elif planted_status(uid) == "penalized":
                connection.execute("INSERT INTO blacklist (hotkey, details) VALUES (?, ?)",
                                   (hotkey, json.dumps({"reason": "bench"})))
        connection.execute("COMMIT")
    finally:
        connection.close()


def build_state(state_dir, miners):
    """The validator database and metagraph snapshot of a network of `miners` miners; returns the layout."""
    layout = BenchLayout(state_dir, miners=miners)
    keys = derived_keys(layout)
    seed.write_metagraph(layout, keys)
    seed.seed_database(layout, keys)
    plant_allocations_and_penalties(layout, keys)
    return layout


def settings_options(layout):
    """The shared options for this state: W&B off, and a wallet path that does not exist (none is needed)."""
    return {"db_path": layout.db_path, "metagraph_file": layout.metagraph_file, "network": NETWORK,
            "netuid": NETUID, "wallet_path": layout.path("wallets"), "wandb_mode": "disabled"}


def playbook(layout, repeat):
    check = {"name": "check: resources lists %d miners" % layout.miners, RESOURCES: {}, "register": "listing",
             "failed_when": "listing.resources | default([]) | length != %d" % layout.miners}
    tasks = [{"name": "warm-up: ping", PING: {}}, check]
    for index in range(repeat):
        tasks.extend({"name": "%s %d" % (kind, index), module: {}} for kind, module in KINDS)
    return [{"name": "nicompute_resources against ping", "hosts": "localhost", "gather_facts": False,
             "module_defaults": {RESOURCES: dict(settings_options(layout), source="database")}, "tasks": tasks}]


def write_playbook_dir(work_dir, layout, repeat):
    """playbook.yml, callback_plugins/, the interpreter wrapper and two inventories.

    Returns (playbook, {run: inventory}): run "timed" uses the venv's python, run "imports" the wrapper.
    """
    logs = os.path.join(work_dir, "importtime")
    os.makedirs(logs)
    write_callback(work_dir)
    wrapper = write_file(os.path.join(work_dir, "python-importtime"),
                         WRAPPER_SOURCE % {"logs": logs, "python": os.path.join(VENV_BIN, "python"), "wall": WALL_MARK}, mode=0o755)
    inventories = {"timed": localhost_inventory(work_dir, "timed"),
                   "imports": localhost_inventory(work_dir, "imports", wrapper)}
    book = write_file(os.path.join(work_dir, "playbook.yml"),
                      yaml.safe_dump(playbook(layout, repeat), sort_keys=False, width=160))
    return book, inventories


def parse_process_log(path):
    """One module process's log: the modules it imported, the top-level imports' cumulative seconds, the
    collection's own modules' self seconds (compiled from the AnsiballZ zip at every run), its wall seconds."""
    process = {"names": set(), "import_s": 0.0, "collection_import_s": 0.0, "wall_s": None}
    with open(path) as handle:
        for line in handle:
            if line.startswith(WALL_MARK):
                process["wall_s"] = int(line[len(WALL_MARK):]) / 1e9
            if not line.startswith("import time:") or "imported package" in line:
                continue
            self_us, cumulative_us, indented = line[len("import time:"):].split("|", 2)
            name = indented.rstrip("\n")[1:]
            process["names"].add(name.strip())
            if name.strip().startswith(COLLECTION_PACKAGE):
                process["collection_import_s"] += int(self_us) / 1e6
            if not name.startswith(" "):
                process["import_s"] += int(cumulative_us) / 1e6
    return process


def process_kind(process):
    if RESOURCES_MARK in process["names"]:
        return "resources"
    return "ping" if PING_MARK in process["names"] else "other"


def module_processes(logs_dir):
    """{kind: [process]} over every module process the wrapper logged (kind "other": neither module)."""
    processes = {"ping": [], "resources": [], "other": []}
    for entry in sorted(os.listdir(logs_dir)):
        process = parse_process_log(os.path.join(logs_dir, entry))
        processes[process_kind(process)].append(process)
    return processes


def imported_by(processes, package):
    return sum(1 for process in processes if any(name == package or name.startswith(package + ".")
                                                 for name in process["names"]))


def process_figures(processes):
    """Per kind: processes, how many imported each watched package, median wall and import seconds."""
    figures = {}
    for kind, _module in KINDS:
        logged = processes[kind]
        figures[kind] = dict(("%s_median_s" % key, statistics.median(process["%s_s" % key] for process in logged))
                             for key in ("wall", "import", "collection_import"))
        figures[kind]["processes"] = len(logged)
        figures[kind].update(("%s_imported_by" % package, imported_by(logged, package)) for package in WATCHED_PACKAGES)
    return figures


def in_process_listing(layout, repeat):
    """list_resources called here `repeat` times over the same state: (summary of seconds, the last result)."""
    settings = Settings(**settings_options(layout))
    times, result = [], None
    for _run in range(repeat):
        started = time.monotonic()
        result = list_resources(settings, "database")
        times.append(time.monotonic() - started)
    return summary(times), result


def show_figures(figures):
    tasks, processes = figures["tasks"], figures["processes"]
    print("%-43s %4s %9s %9s   %s" % ("task wall time on the controller (timed run)", "n", "median s", "p90 s",
                                      "import run, module processes: n, medians of wall s, import s (collection's own)"))
    for kind, module in KINDS:
        print("%-43s %4d %9.3f %9.3f   %d, %.3f, %.3f (%.3f)" % (
            module, tasks[kind]["n"], tasks[kind]["median_s"], tasks[kind]["p90_s"], processes[kind]["processes"],
            processes[kind]["wall_median_s"], processes[kind]["import_median_s"],
            processes[kind]["collection_import_median_s"]))
    verdict = "PASS" if figures["ratio"] <= TARGET_RATIO else "FAIL"
    print("ratio resources/ping (task medians): %.2fx, target <= %.1fx: %s" % (figures["ratio"], TARGET_RATIO, verdict))
    for package in WATCHED_PACKAGES:
        print("%s imported by %s" % (package, ", ".join("%d of %d %s processes" % (
            processes[kind]["%s_imported_by" % package], processes[kind]["processes"], kind) for kind, _module in KINDS)))
    own = figures["list_resources_in_process"]
    print("list_resources in this process over the same state (the module's own work): median %.3fs, p90 %.3fs (n=%d)"
          % (own["median_s"], own["p90_s"], own["n"]))


def timed_tasks(work_dir, repeat):
    """{kind: summary} of the timed tasks; None when a task's record is missing."""
    found = timed_records(work_dir, [kind for kind, _module in KINDS], repeat)
    if found is None:
        return None
    return dict((kind, summary([record["seconds"] for record in records])) for kind, records in found.items())


def logged_processes(work_dir, repeat):
    """process_figures; None (and why) unless every task's module process, and only those, was logged."""
    processes = module_processes(os.path.join(work_dir, "importtime"))
    counts = dict((kind, len(logged)) for kind, logged in processes.items())
    # Each kind has one untimed task: the warm-up ping, the check listing.
    if counts != {"ping": repeat + 1, "resources": repeat + 1, "other": 0}:
        print("expected %d module processes of each kind and no other, got %s" % (repeat + 1, counts))
        return None
    return process_figures(processes)


def measure(work_dir, miners, repeat):
    """Build the state, run the in-process listing and the playbook; returns the figures, or None when it broke."""
    started = time.monotonic()
    layout = build_state(os.path.join(work_dir, "state"), miners)
    own, listing = in_process_listing(layout, repeat)
    print("state: %d miners, built in %.2fs; statuses (in-process listing): %s" % (
        miners, time.monotonic() - started, ", ".join("%s %d" % item for item in listing["summary"]["by_status"].items())))
    book, inventories = write_playbook_dir(work_dir, layout, repeat)
    for run in ("timed", "imports"):
        completed, playbook_s = run_playbook(work_dir, book, inventories[run], run)
        if completed.returncode != 0:
            show_failure(completed)
            return None
        print("playbook (%s run): a warm-up ping, the %d-row check, %d tasks of each kind interleaved: %.1fs in all"
              % (run, miners, repeat, playbook_s))
    tasks, processes = timed_tasks(work_dir, repeat), logged_processes(work_dir, repeat)
    if tasks is None or processes is None:
        return None
    return {"miners": miners, "repeat": repeat, "playbook_s": playbook_s, "tasks": tasks, "processes": processes,
            "ratio": tasks["resources"]["median_s"] / tasks["ping"]["median_s"],
            "statuses": listing["summary"]["by_status"], "list_resources_in_process": own}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=240, help="miners in the database and metagraph (240)")
    parser.add_argument("--repeat", type=int, default=20, help="timed tasks of each kind, at least 2 (20)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (state, playbook, logs) and print it")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--require-ratio", action="store_true",
                        help="exit status 1 when the ratio is above %.1fx" % TARGET_RATIO)
    args = parser.parse_args()
    if args.repeat < 2 or args.miners < 1:
        parser.error("--repeat must be at least 2 and --miners at least 1")
    require_venv()

    figures = measured_in_work_dir("nicompute-resources-bench-", args.keep, args.json,
                                   lambda work_dir: measure(work_dir, args.miners, args.repeat), show_figures)
    if figures is None:
        return 1
    return 1 if args.require_ratio and figures["ratio"] > TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
