"""Measure concurrent runs of the collection's real modules against a running localnet.

Shared by tests/localnet/test_concurrency.py and bench/concurrent_allocate.py:

- every module run is its own process, `python -m ansible_collections.neuralinternet.compute.
  plugins.modules.MODULE ARGS.json` with `{"ANSIBLE_MODULE_ARGS": {...}}` (AnsibleModule reads a
  file named on the command line), its settings from the localnet's env file (NICOMPUTE_*), as
  a playbook task on localhost would get them;
- `audit` compares what the miners hold (`python -m localnet status --json`, and the key each
  miner stores) with the validator database's `nicompute_allocation` and `allocation` tables;
- `figures` turns a round of runs and the audit after it into the numbers the tests assert
  and the bench prints; `allocation_round` and `late_race` are the two scenarios, and
  `round_checks` / `race_checks` what a correct client must achieve in them.
"""

import collections
import json
import os
import shlex
import signal
import sqlite3
import statistics
import subprocess
import sys
import time

from localnet import _collection
from localnet.layout import Layout, read_json

MODULE_PACKAGE = "ansible_collections.neuralinternet.compute.plugins.modules."
LOCKED = "database is locked"
KILL_GRACE_S = 5.0


def read_env(state_dir):
    """The KEY=value settings of STATE_DIR/env (shell-quoted values)."""
    env = {}
    with open(os.path.join(state_dir, "env")) as handle:
        for line in handle.read().splitlines():
            if "=" in line and not line.lstrip().startswith("#"):
                key, value = line.split("=", 1)
                words = shlex.split(value)
                env[key.strip()] = words[0] if words else ""
    return env


def module_environment(state_dir):
    """This process's environment with the localnet's settings and the collection importable."""
    env = dict(os.environ)
    env.update(read_env(state_dir))
    env["PYTHONPATH"] = os.pathsep.join([_collection.ensure_importable()]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    return env


class ModuleRun:
    """One module process: its arguments, exit status, output and parsed JSON result."""

    def __init__(self, name, module, args, workdir):
        self.name = name
        self.module = module
        self.args = dict(args)
        self.workdir = workdir
        self.process = None
        self.started = self.ended = None
        self.returncode = None
        self.timed_out = False
        self.stdout = self.stderr = ""
        self.result = None
        self.peak_rss_kib = None
        prefix = os.path.join(workdir, "%s.%s" % (module, name))
        self.args_file, self.stdout_file, self.stderr_file = prefix + ".args.json", prefix + ".out", prefix + ".err"

    def start(self, env, check_mode=False):
        args = dict(self.args)
        if check_mode:
            args["_ansible_check_mode"] = True
        with open(self.args_file, "w") as handle:
            json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
        with open(self.stdout_file, "wb") as out, open(self.stderr_file, "wb") as err:
            self.started = time.monotonic()
            # Own session: a run past its deadline is killed with everything it started.
            self.process = subprocess.Popen([sys.executable, "-m", MODULE_PACKAGE + self.module, self.args_file],
                                            cwd=self.workdir, env=env, stdin=subprocess.DEVNULL, stdout=out,
                                            stderr=err, start_new_session=True)
        return self

    def poll(self):
        if self.returncode is None and self.process.returncode is None:
            # Reaped with wait4, which returns this child's own resource usage (its peak RSS).
            pid, status, usage = os.wait4(self.process.pid, os.WNOHANG)
            if pid:
                # Popen then takes the process as ended and does not wait for it again.
                self.process.returncode = os.waitstatus_to_exitcode(status)
                self.peak_rss_kib = usage.ru_maxrss
        if self.returncode is None and self.process.returncode is not None:
            self._finish()
        return self.returncode

    def kill(self):
        """Kill the run's process group (past its deadline); it counts as timed out."""
        if self.returncode is not None:
            return
        self.timed_out = True
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                break
            try:
                self.process.wait(KILL_GRACE_S)
                break
            except subprocess.TimeoutExpired:
                continue
        self.process.wait(KILL_GRACE_S)
        self._finish()

    def _finish(self):
        self.ended = time.monotonic()
        self.returncode = self.process.returncode
        with open(self.stdout_file, errors="replace") as handle:
            self.stdout = handle.read()
        with open(self.stderr_file, errors="replace") as handle:
            self.stderr = handle.read()
        self.result = parse_result(self.stdout)

    # ---- what the run came to

    @property
    def wall_s(self):
        return None if self.ended is None else self.ended - self.started

    @property
    def succeeded(self):
        return self.returncode == 0 and isinstance(self.result, dict) and not self.result.get("failed")

    @property
    def clean_failure(self):
        """Failed the Ansible way: a JSON result with failed=true and a message, no traceback."""
        return (not self.timed_out and self.returncode != 0 and isinstance(self.result, dict)
                and self.result.get("failed") is True and bool(self.result.get("msg"))
                and "Traceback (most recent call last)" not in self.stderr)

    @property
    def allocation(self):
        return (self.result or {}).get("allocation") if self.succeeded else None

    @property
    def locked(self):
        return (self.stdout + self.stderr).lower().count(LOCKED)

    @property
    def message(self):
        if self.timed_out:
            return "timed out"
        if isinstance(self.result, dict) and self.result.get("msg"):
            return str(self.result["msg"])
        tail = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return "no JSON result (exit %s): %s" % (self.returncode, tail[-1] if tail else "no output")

    def describe(self):
        item = {"name": self.name, "rc": self.returncode, "wall_s": round(self.wall_s or 0, 2)}
        if self.succeeded and self.allocation:
            item.update(uid=self.allocation.get("uid"), allocated_name=self.allocation.get("name"))
        elif not self.succeeded:
            item["msg"] = self.message[:300]
        return item


def parse_result(stdout):
    """The module's JSON result: the last line that parses as a JSON object."""
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                continue
    start = stdout.find("{")
    if start >= 0:
        try:
            return json.loads(stdout[start:])
        except ValueError:
            pass
    return None


def wait_all(runs, timeout):
    """Wait for every run until the deadline; kill those still running then."""
    deadline = time.monotonic() + timeout
    while any(run.poll() is None for run in runs) and time.monotonic() < deadline:
        time.sleep(0.05)
    for run in runs:
        if run.poll() is None:
            run.kill()
    return runs


def run_modules(module, args_by_name, env, workdir, timeout, check_mode=False):
    """Start one process per name at once; wait for all (bounded); the finished ModuleRuns."""
    os.makedirs(workdir, exist_ok=True)
    runs = [ModuleRun(name, module, args, workdir) for name, args in args_by_name.items()]
    for run in runs:
        run.start(env, check_mode)
    return wait_all(runs, timeout)


def run_module(module, args, env, workdir, timeout, name=None, check_mode=False):
    return run_modules(module, {name or args.get("name") or module: args}, env, workdir, timeout, check_mode)[0]


# ---------------------------------------------------------------- what the network and the database say

def localnet_status(state_dir):
    """`python -m localnet status --json` for this network."""
    result = subprocess.run([sys.executable, "-m", "localnet", "status", "--json", "--state-dir", state_dir],
                            cwd=_collection.REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError("localnet status failed (%d): %s" % (result.returncode, result.stderr.strip()))
    return json.loads(result.stdout)


def miner_keys(state_dir):
    """{uid: the allocation public key the miner stores, or None}."""
    layout, _record = Layout.load(state_dir)
    return dict((uid, (read_json(layout.miner_file(uid, "allocation.json")) or {}).get("public_key"))
                for uid in layout.miner_uids)


def database_state(db_path):
    """(own records [dict], upstream allocation hotkeys [str]) read with a plain connection."""
    connection = sqlite3.connect(db_path, timeout=30)
    connection.row_factory = sqlite3.Row
    try:
        tables = set(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
        own = []
        if "nicompute_allocation" in tables:
            own = [dict(row) for row in connection.execute(
                "SELECT hotkey, name, state, uid, regkey FROM nicompute_allocation ORDER BY hotkey")]
        upstream = [row[0] for row in connection.execute("SELECT hotkey FROM allocation ORDER BY hotkey")]
    finally:
        connection.close()
    return own, upstream


def validator_rows(db_path):
    """The validator's miner_details and stats values (what decides matching and ranking)."""
    connection = sqlite3.connect(db_path, timeout=30)
    try:
        return (connection.execute("SELECT id, hotkey, details, no_specs_count FROM miner_details ORDER BY id").fetchall(),
                connection.execute("SELECT uid, hotkey, gpu_specs, score, allocated, own_score, reliability_score "
                                   "FROM stats ORDER BY uid").fetchall())
    finally:
        connection.close()


def audit(state_dir, db_path=None):
    """Compare what the miners hold with the database.

    orphans: a miner that reports an allocation without exactly one `active` record in
    nicompute_allocation plus a row in `allocation`, or whose record holds a key other than
    the one the miner stores (nobody can release it with the record); an `active` record whose
    miner reports no allocation. leftovers: pending or releasing records (none once every run
    has ended against healthy miners).
    """
    db_path = db_path or read_env(state_dir)["NICOMPUTE_DB_PATH"]
    status = localnet_status(state_dir)
    keys = miner_keys(state_dir)
    own, upstream = database_state(db_path)
    by_hotkey = collections.defaultdict(list)
    for record in own:
        by_hotkey[record["hotkey"]].append(record)
    upstream_set = set(upstream)
    miners = dict((row["hotkey"], row) for row in status["miners"])
    orphans = []
    for hotkey, row in sorted(miners.items(), key=lambda item: item[1]["uid"]):
        active = [r for r in by_hotkey.get(hotkey, []) if r["state"] == "active"]
        if not row["allocated"]:
            continue
        if len(active) != 1 or hotkey not in upstream_set:
            orphans.append({"uid": row["uid"], "hotkey": hotkey, "why": "allocated miner with %d active record(s)%s" % (
                len(active), "" if hotkey in upstream_set else " and no allocation row")})
        elif active[0]["regkey"] != keys.get(row["uid"]):
            orphans.append({"uid": row["uid"], "hotkey": hotkey, "name": active[0]["name"],
                            "why": "the record's key is not the key the miner holds"})
    for record in own:
        if record["state"] == "active" and not (miners.get(record["hotkey"]) or {}).get("allocated"):
            orphans.append({"uid": record["uid"], "hotkey": record["hotkey"], "name": record["name"],
                            "why": "active record whose miner reports no allocation"})
    leftovers = [{"hotkey": r["hotkey"], "name": r["name"], "state": r["state"]} for r in own
                 if r["state"] != "active"]
    return {
        "allocated_uids": sorted(row["uid"] for row in miners.values() if row["allocated"]),
        "records": own,
        "upstream_rows": upstream,
        "orphans": orphans,
        "leftovers": leftovers,
    }


def figures(runs, audit_after):
    """The round's numbers: successes, distinct miners, orphans, "database is locked", failures, wall times."""
    ok = [run for run in runs if run.succeeded]
    uids = [(run.allocation or {}).get("uid") for run in ok]
    counts = collections.Counter(uids)
    walls = [run.wall_s for run in runs if run.wall_s is not None]
    failures = [run for run in runs if not run.succeeded]
    return {
        "runs": len(runs),
        "successes": len(ok),
        "distinct_miners": len(set(uids)),
        "shared_miners": sorted(uid for uid, n in counts.items() if n > 1),
        "mislabeled": sorted(run.name for run in ok if (run.allocation or {}).get("name") != run.name),
        "orphans": len(audit_after["orphans"]),
        "leftover_records": len(audit_after["leftovers"]),
        "database_locked": sum(run.locked for run in runs),
        "clean_failures": sum(1 for run in failures if run.clean_failure),
        "unclean_failures": sum(1 for run in failures if not run.clean_failure),
        "timed_out": sum(1 for run in runs if run.timed_out),
        "wall_median_s": round(statistics.median(walls), 2) if walls else None,
        "wall_max_s": round(max(walls), 2) if walls else None,
        "failure_messages": dict(collections.Counter(_shape(run.message) for run in failures)),
        "orphan_details": audit_after["orphans"],
        "leftover_details": audit_after["leftovers"],
    }


def _shape(message):
    """A failure message with hotkeys, quoted names and numbers blanked, so alike failures count together."""
    words = []
    for word in message[:200].split():
        core = word.strip("\"',.;:()")
        if len(core) == 48 and core[:1] == "5":
            word = word.replace(core, "<hotkey>")
        elif word.strip(",.;:()").startswith("'") and word.strip(",.;:()").endswith("'"):
            word = word.replace(word.strip(",.;:()"), "<name>")
        else:
            try:
                float(core)
            except ValueError:
                pass
            else:
                word = word.replace(core, "<n>")
        words.append(word)
    return " ".join(words)


def release_all(state_dir, env, workdir, timeout=60.0, name="release"):
    """Release every allocation the database knows, with one real nicompute_deallocate run.

    Returns (ModuleRun or None when there was nothing to release, audit after)."""
    own, upstream = database_state(read_env(state_dir)["NICOMPUTE_DB_PATH"])
    names = sorted(set(r["name"] for r in own if r["name"]))
    named_hotkeys = set(r["hotkey"] for r in own if r["name"])
    hotkeys = sorted((set(r["hotkey"] for r in own) | set(upstream)) - named_hotkeys)
    run = None
    if names or hotkeys:
        args = {}
        if names:
            args["names"] = names
        if hotkeys:
            args["hotkeys"] = hotkeys
        run = run_module("nicompute_deallocate", args, env, workdir, timeout, name=name)
    return run, audit(state_dir)


def is_clean(audit_result):
    return not (audit_result["allocated_uids"] or audit_result["records"] or audit_result["upstream_rows"])


class Writer:
    """`python -m localnet validator-writer` as a background process, and its report."""

    def __init__(self, state_dir, report_path, interval=0.05):
        self.report_path = report_path
        self.output_path = report_path + ".out"
        with open(self.output_path, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "localnet", "validator-writer", "--state-dir", state_dir, "--interval",
                 str(interval), "--report", report_path], cwd=_collection.REPO_ROOT, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    def wait_started(self, timeout=30.0):
        """Until the writer committed its first transaction (or died, or the timeout)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            report = read_json(self.report_path) if os.path.exists(self.report_path) else None
            if report and report["committed"] + report["failed"] > 0:
                return report
            time.sleep(0.05)
        return read_json(self.report_path) if os.path.exists(self.report_path) else None

    def stop(self, timeout=15.0):
        """SIGTERM, wait (bounded), then the report: {"committed", "failed", "errors", ..., "exit"}."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(KILL_GRACE_S)
        report = (read_json(self.report_path) if os.path.exists(self.report_path) else None) or {
            "committed": 0, "failed": 0, "errors": [], "running": None}
        report["exit"] = self.process.returncode
        with open(self.output_path, errors="replace") as handle:
            report["output"] = handle.read()[-2000:]
        return report


# ---------------------------------------------------------------- the scenarios

def plan(env, workdir, args, timeout=60.0, name="plan"):
    """The ranked candidates of a check-mode nicompute_allocate run (no miner is asked to allocate)."""
    run = run_module("nicompute_allocate", dict(args, name=name), env, workdir, timeout, name=name, check_mode=True)
    if not run.succeeded:
        raise RuntimeError("check-mode allocate failed: %s\n%s" % (run.message, run.stderr[-2000:]))
    return run.result["candidates"]


def allocation_round(state_dir, env, workdir, count, prefix, args, timeout, writer_interval=0.05):
    """`count` nicompute_allocate processes at once (names PREFIX-00...), each with `args`, while the
    validator writer runs; then one nicompute_deallocate of everything. Returns the figures."""
    db_path = read_env(state_dir)["NICOMPUTE_DB_PATH"]
    rows_before = validator_rows(db_path)
    writer = Writer(state_dir, os.path.join(workdir, "%s-writer.json" % prefix), writer_interval)
    release = release_audit = None
    try:
        started = writer.wait_started()
        names = ["%s-%02d" % (prefix, index) for index in range(count)]
        t0 = time.monotonic()
        runs = run_modules("nicompute_allocate", dict((name, dict(args, name=name)) for name in names), env, workdir,
                           timeout)
        elapsed = time.monotonic() - t0
        result = figures(runs, audit(state_dir))
        release, release_audit = release_all(state_dir, env, workdir, name=prefix + "-release")
    finally:
        report = writer.stop()
    result.update(
        round_s=round(elapsed, 2),
        writer_started=bool(started and started["committed"]),
        writer_committed=report["committed"],
        writer_failed=report["failed"],
        writer_errors=report.get("errors", [])[:3],
        writer_max_transaction_s=report.get("max_transaction_s"),
        validator_rows_unchanged=validator_rows(db_path) == rows_before,
        release_ok=release is None or release.succeeded,
        release_msg=None if release is None or release.succeeded else release.message,
        release_locked=0 if release is None else release.locked,
        after_release_clean=is_clean(release_audit),
        after_release_allocated_uids=release_audit["allocated_uids"],
        runs_detail=[run.describe() for run in runs],
    )
    return result


def round_checks(result, count, free):
    """[(label, ok)]: what a correct client achieves with `count` runs at once and `free` matching miners."""
    expected = min(count, free)
    return [
        ("successes == %d" % expected, result["successes"] == expected),
        ("distinct miners == %d" % expected, result["distinct_miners"] == expected),
        ("no miner handed to two runs", not result["shared_miners"]),
        ("every result keeps its own name", not result["mislabeled"]),
        ("0 orphans", result["orphans"] == 0),
        ("0 pending/releasing records left", result["leftover_records"] == 0),
        ('0 "database is locked"', result["database_locked"] == 0 and result["release_locked"] == 0),
        ("%d clean failures" % (count - expected), result["clean_failures"] == count - expected),
        ("no crash or timeout", result["unclean_failures"] == 0 and result["timed_out"] == 0),
        ("the writer committed transactions", result["writer_committed"] > 0 and result["writer_started"]),
        ("the writer never failed", result["writer_failed"] == 0),
        ("the validator's rows are unchanged", result["validator_rows_unchanged"]),
        ("nicompute_deallocate released everything", result["release_ok"] and result["after_release_clean"]),
    ]


SSH_OPTIONS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]


def password_login(host, port, user, password):
    """(exit status, `id -un` output, stderr tail) of an sshpass password login."""
    result = subprocess.run(["sshpass", "-p", password, "ssh"] + SSH_OPTIONS + [
        "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
        "-o", "NumberOfPasswordPrompts=1", "-p", str(port), "%s@%s" % (user, host), "id -un"],
        capture_output=True, text=True, timeout=30, check=False)
    return result.returncode, result.stdout.strip(), result.stderr.strip()[-200:]


def late_race(state_dir, env, workdir, fault, args, requirement, late_s=8, delay_s=4, timeout=75.0, prefix="race"):
    """The `late` race: B's first choice answers allocations only after `late_s`; A allocates it by
    hotkey; B (with `requirement`) starts `delay_s` later. `fault(uid, mode, *seconds)` sets a
    fault. Returns the figures; the network is released (and the fault healed) afterwards."""
    target = plan(env, workdir, dict(args, **requirement), name=prefix + "-plan")[0]
    name_a, name_b = prefix + "A", prefix + "B"
    fault(target["uid"], "late", str(late_s))
    release = release_audit = None
    started = []
    try:
        race_a = ModuleRun(name_a, "nicompute_allocate", dict(args, name=name_a, hotkey=target["hotkey"],
                                                              return_password=True), workdir).start(env)
        started.append(race_a)
        time.sleep(delay_s)
        # The race is on when the miner holds A's grant while A still waits for the answer.
        granted_before_b = miner_keys(state_dir)[target["uid"]] is not None
        a_waiting = race_a.poll() is None
        race_b = ModuleRun(name_b, "nicompute_allocate", dict(args, name=name_b, **requirement), workdir).start(env)
        started.append(race_b)
        wait_all([race_a, race_b], timeout)
        after = audit(state_dir)
        box = race_a.allocation or {}
        login = password_login(box["ip"], box["port"], box["username"], box["password"]) if box.get("password") else None
    finally:
        for run in started:
            if run.poll() is None:
                run.kill()
        fault(target["uid"], "healthy")
        release, release_audit = release_all(state_dir, env, workdir, name=prefix + "-release")
    result = figures([race_a, race_b], after)
    records = dict((r["name"], r) for r in after["records"])
    a_box, b_box = race_a.allocation or {}, race_b.allocation or {}
    result.update(
        target_uid=target["uid"],
        race_set_up=granted_before_b and a_waiting,
        granted_before_b=granted_before_b,
        a_waiting_when_b_started=a_waiting,
        a=race_a.describe(), b=race_b.describe(),
        a_succeeded=race_a.succeeded, b_succeeded=race_b.succeeded,
        both_ended_cleanly=all(run.succeeded or run.clean_failure for run in (race_a, race_b)),
        same_miner=race_a.succeeded and race_b.succeeded and a_box.get("uid") == b_box.get("uid"),
        a_name_kept=not race_a.succeeded or a_box.get("name") == name_a,
        a_on_target=not race_a.succeeded or a_box.get("hotkey") == target["hotkey"],
        b_name_kept=not race_b.succeeded or b_box.get("name") == name_b,
        recorded_under_names=all(
            (records.get(run.name) or {}).get("hotkey") == run.allocation.get("hotkey")
            and (records.get(run.name) or {}).get("state") == "active" for run in (race_a, race_b) if run.succeeded),
        a_login=login,
        a_login_ok=login is None or (login[0] == 0 and login[1] == a_box.get("username")),
        records=[(r["name"], r["uid"], r["state"]) for r in after["records"]],
        release_ok=release is None or release.succeeded,
        after_release_clean=is_clean(release_audit),
    )
    return result


def race_checks(result):
    """[(label, ok)]: both succeed on different miners, or one fails cleanly; never the same miner."""
    return [
        ("the race was set up (miner granted A, A still waiting, when B started)", result["race_set_up"]),
        ("neither run timed out or crashed", result["both_ended_cleanly"]),
        ("at least one run succeeded", result["a_succeeded"] or result["b_succeeded"]),
        ("never the same miner", not result["same_miner"]),
        ("A's result keeps A's name", result["a_name_kept"]),
        ("A's result is on the miner it asked for", result["a_on_target"]),
        ("B's result keeps B's name", result["b_name_kept"]),
        ("the database records each success under its name", result["recorded_under_names"]),
        ("A's credentials log in", result["a_login_ok"]),
        ("0 orphans", result["orphans"] == 0),
        ("0 pending/releasing records left", result["leftover_records"] == 0),
        ('0 "database is locked"', result["database_locked"] == 0),
        ("nicompute_deallocate released everything", result["release_ok"] and result["after_release_clean"]),
    ]


def failed_checks(checks):
    return [label for label, ok in checks if not ok]
