"""python -m localnet {up,down,status,fault,wandb,validator-writer}: run a small SN27 subnet on this machine."""

import argparse
import ipaddress
import json
import math
import os
import subprocess
import sys
import time

from localnet import _collection

_collection.ensure_importable()

from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph, _network  # noqa: E402
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import NiComputeError  # noqa: E402
from localnet import box, faults, layout as layout_mod, probe, procs, seed, validator_writer  # noqa: E402
from localnet import wandb_standin, wandb_sync  # noqa: E402
from localnet.layout import Layout  # noqa: E402

READY_TIMEOUT_S = 30.0
FAULT_TIMEOUT_S = 10.0
MAX_MINERS = 240  # miner i sits on .(10+i) of a /24
# The default number of axon workers: one per MINERS_PER_WORKER miners, at most MAX_DEFAULT_WORKERS
# (see default_workers).
MINERS_PER_WORKER = 64
MAX_DEFAULT_WORKERS = 4


class LocalnetError(Exception):
    pass


# ---------------------------------------------------------------- up / down

def _require_root():
    if os.geteuid() != 0:
        raise LocalnetError("localnet must run as root: it starts sshd servers and creates login users "
                            "(run it with sudo, or as root in a container)")
    missing = box.missing_binaries()
    if missing:
        raise LocalnetError("missing %s; install them with: apt-get install -y openssh-server openssh-client sudo"
                            % ", ".join(missing))


def default_workers(miners):
    """Axon workers for this many miners: one process serves 64 well; past that they share the CPUs."""
    return min(MAX_DEFAULT_WORKERS, int(math.ceil(miners / float(MINERS_PER_WORKER))))


def _validate(args):
    if not 1 <= args.miners <= MAX_MINERS:
        raise LocalnetError("--miners must be between 1 and %d" % MAX_MINERS)
    if args.workers is not None and not 1 <= args.workers <= args.miners:
        raise LocalnetError("--workers must be between 1 and the number of miners (%d)" % args.miners)
    try:
        first = ipaddress.ip_address("%s.%d" % (args.ip_prefix, 11))
    except ValueError:
        raise LocalnetError("--ip-prefix must be three octets such as 127.0.0, got %r" % args.ip_prefix)
    if not first.is_loopback:
        raise LocalnetError("--ip-prefix must be a loopback prefix (127.x.y): localnet binds loopback only")
    if any(char in os.path.abspath(args.state_dir) for char in ":\n"):
        # The path goes into the users' GECOS field and sshd configs.
        raise LocalnetError("--state-dir must not contain ':' or a newline")
    if args.day_seconds <= 0:
        raise LocalnetError("--day-seconds must be positive")
    # "not <=" also refuses nan.
    if not 0 <= args.build_seconds < float("inf"):
        raise LocalnetError("--build-seconds must be a number of seconds >= 0")
    if not 0 <= args.foreign_validators <= len(seed.FOREIGN_VALIDATORS):
        raise LocalnetError("--foreign-validators must be between 0 and %d" % len(seed.FOREIGN_VALIDATORS))
    if not 0 <= args.sync_seconds < float("inf"):
        raise LocalnetError("--sync-seconds must be a number of seconds >= 0 (0: miners never read W&B)")
    if not 1 <= args.wandb_port <= 65535:
        raise LocalnetError("--wandb-port must be a TCP port")


def _running_in(state_dir):
    """True while the localnet recorded in state_dir has a live supervisor."""
    _layout, record = Layout.load(state_dir)
    supervisor = record and record["pids"].get("supervisor")
    return bool(supervisor) and procs.alive(supervisor)


def _claim_users(layout):
    """Make way for the miners' users: remove localnet leftovers, refuse real users and live localnets' users."""
    leftovers = []
    for uid in layout.miner_uids:
        name = layout.user(uid)
        comment = box.user_comment(name)
        if comment is None:
            continue
        if not comment.startswith(layout_mod.USER_COMMENT + " "):
            raise LocalnetError("user %s exists and was not created by localnet; remove it or choose another "
                                "--user-prefix" % name)
        owner = comment[len(layout_mod.USER_COMMENT) + 1:]
        if owner != layout.state_dir and _running_in(owner):
            raise LocalnetError("user %s belongs to the localnet running in %s; bring that one down or choose "
                                "another --user-prefix" % (name, owner))
        leftovers.append(name)
    box.remove_users(leftovers)


def _own_users(layout, users):
    return [user for user in users if box.user_comment(user) == layout.user_comment]


def _stop(layout, record):
    """Stop the processes and remove the users a run recorded (those that exist and are its own);
    return what could not be stopped."""
    idents = [record["pids"]["supervisor"]] if record["pids"].get("supervisor") else []
    # The supervisor's workers end with it; recorded too, in case it is gone already.
    idents += record["pids"].get("workers", [])
    idents += list(record["pids"].get("sshd", {}).values())
    idents += [record["pids"]["wandb"]] if record["pids"].get("wandb") else []
    users = _own_users(layout, record.get("users", []))
    # End the users' sessions first, so sshd's per-connection processes go with them.
    box.kill_users_processes(users)
    left = procs.stop(idents)
    box.remove_users(users)
    return left


def _check_addresses_free(layout):
    for uid in layout.miner_uids:
        for port in (layout.axon_port, layout.ssh_port):
            if probe.tcp_open(layout.ip(uid), port, timeout=0.2):
                raise LocalnetError("%s:%d is already in use (another localnet? see --ip-prefix)"
                                    % (layout.ip(uid), port))


def _write_record(layout, pids, users):
    layout_mod.write_json(layout.record_file, {"settings": layout.settings(), "pids": pids, "users": users,
                                               "started_at": time.time()})


def _spawn_supervisor(layout):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_collection.REPO_ROOT, _collection.BUILD_DIR]
                                        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    # The wandb client makes temporary directories that a killed process never removes: keep them
    # in the state dir instead of the system's temp directory.
    env["TMPDIR"] = os.path.join(layout.state_dir, "tmp")
    os.makedirs(env["TMPDIR"], exist_ok=True)
    with open(layout.supervisor_log, "ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "localnet.supervisor", layout.state_dir],
                                   cwd=_collection.REPO_ROOT, env=env, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    return process.pid


def _started_workers(layout, supervisor):
    """The workers this supervisor started, as it wrote them to workers.json; None until it has."""
    document = layout_mod.read_json(layout.workers_file)
    if not document or document["supervisor"] != supervisor:
        return None
    return [{"pid": worker["pid"], "start": worker["start"]} for worker in document["workers"]]


def _wait_ready(layout, pids):
    """Wait until every axon and every sshd listens; return the supervisor's workers. LocalnetError
    when a process dies first."""
    addresses = dict(((layout.ip(uid), port), uid) for uid in layout.miner_uids
                     for port in (layout.axon_port, layout.ssh_port))
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        dead = [name for name, ident in [("supervisor", pids["supervisor"])] + list(pids["sshd"].items())
                if not procs.alive(ident)]
        if dead:
            raise LocalnetError("%s exited during start-up; see %s and %s" % (
                ", ".join("sshd of miner %s" % name if name != "supervisor" else name for name in dead),
                layout.supervisor_log, layout.miner_file("N", "sshd.log")))
        # One read of the kernel's socket table per round, not a connection per miner.
        waiting = set(addresses[address] for address in set(addresses) - probe.listening())
        workers = _started_workers(layout, pids["supervisor"])
        if not waiting and workers is not None:
            return workers
        if time.monotonic() > deadline:
            raise LocalnetError("miners %s not ready after %ds; see %s" % (
                ", ".join(map(str, sorted(waiting))) or "(workers)", READY_TIMEOUT_S, layout.supervisor_log))
        time.sleep(0.05)


def _make_box(layout, uid):
    """Miner uid's login user, sshd config and host key, and its (healthy) fault file."""
    miner_box = box.Box(layout, uid)
    miner_box.create_user()
    miner_box.prepare_sshd()
    faults.write_fault(layout, uid, faults.Fault())


def cmd_up(args):
    _require_root()
    _validate(args)
    # Fail on a missing bittensor before touching anything.
    _network.bittensor()
    started = time.monotonic()
    layout = Layout(args.state_dir, args.miners, args.ip_prefix, args.user_prefix, args.axon_port,
                    args.ssh_port, args.day_seconds, build_seconds=args.build_seconds,
                    miner_version=args.miner_version, foreign_validators=args.foreign_validators,
                    sync_seconds=args.sync_seconds, wandb_port=args.wandb_port,
                    workers=args.workers or default_workers(args.miners))
    old_layout, old_record = Layout.load(layout.state_dir)
    if old_record is not None:
        # Leftovers of a crashed (or still running) run in this state dir.
        _stop(old_layout, old_record)
        os.unlink(old_layout.record_file)
    _claim_users(layout)
    _check_addresses_free(layout)
    if probe.tcp_open(layout.wandb_ip, layout.wandb_port, timeout=0.2):
        raise LocalnetError("%s (the W&B stand-in's address) is already in use (another localnet? see --ip-prefix)"
                            % layout.wandb_url)
    os.makedirs(layout.state_dir, mode=0o700, exist_ok=True)
    os.chmod(layout.state_dir, 0o700)

    keys = seed.create_wallets(layout)
    seed.write_metagraph(layout, keys)
    seed.seed_database(layout, keys)
    seed.seed_wandb(layout, keys)
    seed.write_env(layout)

    pids = {"supervisor": None, "workers": [], "sshd": {}, "wandb": None}
    users = [layout.user(uid) for uid in layout.miner_uids]
    # Recorded before anything starts, so `down` or the next `up` cleans a crash at any point.
    _write_record(layout, pids, users)
    try:
        box.in_parallel(lambda uid: _make_box(layout, uid), layout.miner_uids)
        sshd = box.in_parallel(lambda uid: procs.identity(box.Box(layout, uid).start_sshd()), layout.miner_uids)
        pids["sshd"] = dict((str(uid), ident) for uid, ident in zip(layout.miner_uids, sshd))
        _write_record(layout, pids, users)
        # The W&B stand-in before the supervisor: the miners read it at start.
        pids["wandb"] = procs.identity(wandb_standin.spawn(layout))
        _write_record(layout, pids, users)
        wandb_standin.wait_ready(layout, lambda: procs.alive(pids["wandb"]))
        pids["supervisor"] = procs.identity(_spawn_supervisor(layout))
        _write_record(layout, pids, users)
        pids["workers"] = _wait_ready(layout, pids)
        _write_record(layout, pids, users)
    except BaseException:
        _stop(layout, {"pids": pids, "users": users})
        if os.path.exists(layout.record_file):
            os.unlink(layout.record_file)
        raise
    elapsed = time.monotonic() - started
    print("localnet up: %d miners ready in %.1fs (%s.%d-%d; axon workers: %d)" % (
        layout.miners, elapsed, layout.ip_prefix, 10 + 1, 10 + layout.miners, layout.workers))
    print("W&B stand-in: %s (%d foreign validators; miners read it %s)" % (
        layout.wandb_url, layout.foreign_validators,
        "every %gs" % layout.sync_seconds if layout.sync_seconds else "never"))
    print("use it with: set -a; . %s; set +a" % layout.env_file)
    return 0


def cmd_down(args):
    _require_root()
    layout, record = Layout.load(args.state_dir)
    if record is None:
        print("localnet down: nothing recorded in %s" % os.path.abspath(args.state_dir))
        return 0
    left = _stop(layout, record)
    if left:
        raise LocalnetError("could not stop PIDs %s" % ", ".join(str(ident["pid"]) for ident in left))
    os.unlink(layout.record_file)
    print("localnet down: stopped %d miners, removed users %s" % (layout.miners, ", ".join(record["users"])))
    return 0


# ---------------------------------------------------------------- status / fault

def _running(args):
    layout, record = Layout.load(args.state_dir)
    if record is None:
        raise LocalnetError("no localnet is recorded in %s (run: python -m localnet up)"
                            % os.path.abspath(args.state_dir))
    return layout, record


def miners_status(layout):
    neurons = dict((n.uid, n) for n in _metagraph.read_snapshot(layout.metagraph_file)[0])
    rows = []
    for uid in layout.miner_uids:
        allocation = layout_mod.read_json(layout.miner_file(uid, "allocation.json")) or {}
        rows.append({
            "uid": uid,
            "hotkey": neurons[uid].hotkey,
            "ip": layout.ip(uid),
            "axon_port": layout.axon_port,
            "ssh_port": layout.ssh_port,
            "ssh_user": layout.user(uid),
            "worker": layout.worker_of(uid),
            "fault": str(faults.read_fault(layout, uid)),
            "allocated": bool(allocation.get("allocated")),
            # What the miner's docker says: a paused container (docker action) or the paused fault.
            "paused": bool(allocation.get("paused"))
            or (bool(allocation.get("allocated")) and faults.read_fault(layout, uid).mode == "paused"),
            "building": bool(allocation.get("building")),
            "build_ready_at": allocation.get("build_ready_at"),
            "key_fingerprint": allocation.get("key_fingerprint"),
            "building_key_fingerprint": allocation.get("building_key_fingerprint"),
            "last_release": allocation.get("last_release"),
            "expires_at": allocation.get("expires_at"),
            "gpu": seed.gpu_summary(uid),
            # The miner's last W&B read and what it did (kept / released / read failed).
            "wandb": wandb_sync.miner_report(layout, uid),
        })
    return rows


def workers_status(layout, record):
    return [{"index": index, "pid": ident["pid"], "running": procs.alive(ident),
             "uids": [layout.worker_uids(index)[0], layout.worker_uids(index)[-1]]}
            for index, ident in enumerate(record["pids"].get("workers", []))]


def cmd_status(args):
    layout, record = _running(args)
    supervisor = record["pids"].get("supervisor")
    workers = workers_status(layout, record)
    document = {
        "state_dir": layout.state_dir,
        "env_file": layout.env_file,
        "running": bool(supervisor) and procs.alive(supervisor) and all(worker["running"] for worker in workers),
        "workers": workers,
        "day_seconds": layout.day_seconds,
        "build_seconds": layout.build_seconds,
        "miner_version": layout.miner_version,
        "wandb": wandb_standin.status(layout, record),
        "miners": miners_status(layout),
    }
    if args.json:
        print(json.dumps(document, indent=1))
        return 0
    print("localnet in %s: %s, %d miners, axon workers: %d, env %s" % (
        layout.state_dir, "running" if document["running"] else "NOT running", layout.miners, layout.workers,
        layout.env_file))
    print(wandb_standin.status_line(document["wandb"]))
    for row in document["miners"]:
        print("%4d  %-48s  %s:%d  ssh %s@%s:%d  %-10s %-9s %s" % (
            row["uid"], row["hotkey"], row["ip"], row["axon_port"], row["ssh_user"], row["ip"], row["ssh_port"],
            row["fault"], "building" if row["building"] else "paused" if row["paused"] and row["allocated"]
            else "allocated" if row["allocated"] else "free", row["gpu"]))
    return 0


def _resolve_miner(layout, miner):
    neurons = _metagraph.read_snapshot(layout.metagraph_file)[0]
    for neuron in neurons:
        if neuron.uid != 0 and (str(neuron.uid) == miner or neuron.hotkey == miner):
            return neuron.uid
    raise LocalnetError("no miner %r: give a uid (1-%d) or a miner hotkey" % (miner, layout.miners))


def cmd_fault(args):
    layout, record = _running(args)
    uid = _resolve_miner(layout, args.miner)
    try:
        fault = faults.Fault(args.mode, args.seconds or 0.0)
    except ValueError as exc:
        raise LocalnetError(str(exc))
    faults.write_fault(layout, uid, fault)
    # Return once the axon is as the fault says: stopped for offline, serving otherwise.
    want_open = fault.mode != "offline"
    deadline = time.monotonic() + FAULT_TIMEOUT_S
    while probe.tcp_open(layout.ip(uid), layout.axon_port) != want_open:
        if time.monotonic() > deadline:
            raise LocalnetError("miner %d's axon did not %s within %ds; is the supervisor running? see %s" % (
                uid, "start" if want_open else "stop", FAULT_TIMEOUT_S, layout.supervisor_log))
        time.sleep(0.05)
    print("miner %d: %s" % (uid, fault))
    return 0


def cmd_wandb(args):
    layout, record = _running(args)
    document = wandb_standin.control(layout, record, args.action)
    print(json.dumps(document, indent=1) if args.json else wandb_standin.status_line(document))
    return 0


def cmd_validator_writer(args):
    layout, _record = _running(args)
    # "not >" also refuses nan; inf would never write.
    if not 0 < args.interval < float("inf"):
        raise LocalnetError("--interval must be a positive number of seconds")
    if args.duration is not None and not 0 < args.duration < float("inf"):
        raise LocalnetError("--duration must be a positive number of seconds")
    return validator_writer.main(layout.db_path, args.interval, args.duration, args.report)


# ---------------------------------------------------------------- entry point

def parser():
    top = argparse.ArgumentParser(prog="python -m localnet", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    def state(p):
        p.add_argument("--state-dir", default=".localnet", help="where the network keeps its state (default .localnet)")

    up = sub.add_parser("up", help="start N miners (axons and sshd boxes) and write the network state")
    state(up)
    up.add_argument("--miners", type=int, default=8)
    up.add_argument("--day-seconds", type=float, default=86400.0,
                    help="length of a timeline day in seconds, so tests can watch expiry (default 86400)")
    up.add_argument("--build-seconds", type=float, default=1.0,
                    help="how long a miner builds a container before it grants (default 1.0; upstream takes "
                         "tens of seconds)")
    up.add_argument("--miner-version", type=int, choices=(183, 190), default=183,
                    help="183 (default): v1.8.3 miners, docker actions check no ownership; "
                         "190: v1.9.0 docker actions need the allocation key, unregistered callers get 403")
    up.add_argument("--foreign-validators", type=int, default=len(seed.FOREIGN_VALIDATORS),
                    help="validators besides the operator's, uids after the miners, with signed W&B runs: "
                         "a staked one holding the highest-uid miner, one with too little stake, one with a forged "
                         "signature (default %d, the first K with K)" % len(seed.FOREIGN_VALIDATORS))
    up.add_argument("--no-foreign-validators", dest="foreign_validators", action="store_const", const=0,
                    help="same as --foreign-validators 0")
    # 20 s, not upstream's 15 min: tests wait for self-releases, yet a read seldom falls between a
    # grant and its publication (about a second), which would make allocations flaky.
    up.add_argument("--sync-seconds", type=float, default=20.0,
                    help="miners read W&B at start and every SECONDS and release an allocation no staked "
                         "validator's signed run lists (upstream: 75 blocks, ~15 min; default 20; 0: never)")
    up.add_argument("--wandb-port", type=int, default=8080, help="the W&B stand-in's port on PREFIX.2 (default 8080)")
    up.add_argument("--workers", type=int,
                    help="axon worker processes, each serving a block of miners (default: one per %d miners, "
                         "at most %d)" % (MINERS_PER_WORKER, MAX_DEFAULT_WORKERS))
    up.add_argument("--ip-prefix", default="127.0.0", help="loopback /24 for miners: miner i is PREFIX.(10+i)")
    up.add_argument("--user-prefix", default="nicm", help="login users are PREFIX<uid>")
    up.add_argument("--axon-port", type=int, default=8091)
    up.add_argument("--ssh-port", type=int, default=4444)
    up.set_defaults(handler=cmd_up)

    down = sub.add_parser("down", help="stop what up started and remove its users")
    state(down)
    down.set_defaults(handler=cmd_down)

    status = sub.add_parser("status", help="show the miners")
    state(status)
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=cmd_status)

    fault = sub.add_parser("fault", help="set a miner's fault: %s" % ", ".join(faults.MODES),
                           epilog="modes: " + "; ".join("%s: %s" % (mode, faults.MODE_HELP[mode])
                                                        for mode in faults.MODES))
    state(fault)
    fault.add_argument("miner", help="uid or hotkey")
    fault.add_argument("mode", choices=faults.MODES)
    fault.add_argument("seconds", nargs="?", type=float, help="delay for slow and late")
    fault.set_defaults(handler=cmd_fault)

    wandb = sub.add_parser("wandb", help="stop, start or show the W&B stand-in (stop: the service is down)")
    state(wandb)
    wandb.add_argument("action", choices=("stop", "start", "status"))
    wandb.add_argument("--json", action="store_true")
    wandb.set_defaults(handler=cmd_wandb)

    writer = sub.add_parser("validator-writer",
                            help="stand in for the validator process: rewrite miner_details and stats (same values) "
                                 "in a loop until killed or --duration")
    state(writer)
    writer.add_argument("--interval", type=float, default=0.5, help="seconds between rounds (default 0.5)")
    writer.add_argument("--duration", type=float, help="stop after this many seconds (default: until SIGTERM/SIGINT)")
    writer.add_argument("--report", help="JSON file with the committed and failed transaction counts, "
                                         "rewritten after every transaction")
    writer.set_defaults(handler=cmd_validator_writer)
    return top


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        return args.handler(args)
    except (LocalnetError, box.BoxError, NiComputeError, wandb_standin.StandinError) as exc:
        print("localnet: error: %s" % exc, file=sys.stderr)
        return 1
