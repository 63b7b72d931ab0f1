"""What every bench shares: the collection and localnet importable, a timed `python -m localnet`,
and a bench's own localnet (its addresses from --ip-prefix / --user-prefix, faults set in bulk)."""

import os
import subprocess
import sys
import tempfile
import threading
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402  pylint: disable=wrong-import-position

_collection.ensure_importable()

from localnet import faults, probe  # noqa: E402  pylint: disable=wrong-import-position
from localnet.layout import Layout  # noqa: E402  pylint: disable=wrong-import-position

# No foreign validators (one would hold a miner) and no W&B self-release of unpublished
# allocations: the miners hold only what the bench allocates.
ALLOCATION_BENCH_OPTIONS = ("--no-foreign-validators", "--sync-seconds", "0")
# As long as `python -m localnet fault` waits for an axon to start or stop.
FAULT_WAIT_S = 10.0


def localnet(*args):
    """Run `python -m localnet ARGS` from the checkout; returns the seconds it took."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "localnet"] + list(args), cwd=REPO_ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def address_options(parser, ip_prefix, user_prefix):
    """--ip-prefix and --user-prefix: the bench's own loopback /24 and login users, so several
    benches (and a running .localnet) can share the machine."""
    parser.add_argument("--ip-prefix", default=ip_prefix,
                        help="loopback /24 of the bench's miners (default %s)" % ip_prefix)
    parser.add_argument("--user-prefix", default=user_prefix,
                        help="prefix of the miners' login users (default %s)" % user_prefix)


def require_root(script):
    if os.geteuid() != 0:
        sys.exit("%s must run as root: localnet starts sshd and creates users" % script)


class BenchNetwork:
    """An allocation bench's own localnet in state_dir: up, down and faults."""

    def __init__(self, state_dir, miners, ip_prefix, user_prefix, *up_options):
        self.state_dir = state_dir
        self.miners = miners
        self.addresses = ("--ip-prefix", ip_prefix, "--user-prefix", user_prefix)
        self.up_options = up_options

    def up(self):
        """Start it; the seconds `up` took."""
        return localnet("up", "--miners", str(self.miners), "--state-dir", self.state_dir, *self.addresses,
                        *ALLOCATION_BENCH_OPTIONS, *self.up_options)

    def down(self):
        return localnet("down", "--state-dir", self.state_dir)

    def fault(self, uid, *mode):
        """One miner's fault through the CLI (any mode, with SECONDS for slow and late)."""
        localnet("fault", str(uid), *mode, "--state-dir", self.state_dir)

    def set_faults(self, uids, mode):
        """Set many miners' fault at once, as `localnet fault` does for one: write each miner's fault
        file (the miner's worker reads it per request) and wait until every axon is serving, or stopped
        for offline. No `localnet fault` process (≈ 0.17 s) per miner: 120 faults cost milliseconds."""
        layout, _record = Layout.load(self.state_dir)
        fault = faults.Fault(mode)
        for uid in uids:
            faults.write_fault(layout, uid, fault)
        want_open = mode != "offline"
        deadline = time.monotonic() + FAULT_WAIT_S
        for uid in uids:
            while probe.tcp_open(layout.ip(uid), layout.axon_port) != want_open:
                if time.monotonic() > deadline:
                    raise RuntimeError("miner %d's axon did not %s within %gs" % (
                        uid, "start" if want_open else "stop", FAULT_WAIT_S))
                time.sleep(0.05)


def timed_process(argv, env, workdir, timeout=120.0):
    """Run argv to its end: wall seconds (no polling delay), peak RSS (KiB), exit status and output."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(argv, cwd=workdir, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        timer = threading.Timer(timeout, process.kill)
        timer.start()
        try:
            # wait4 blocks until this child ends and returns its own resource usage.
            _pid, status, usage = os.wait4(process.pid, 0)
        finally:
            timer.cancel()
        wall = time.monotonic() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        return {"wall_s": wall, "peak_rss_kib": usage.ru_maxrss, "returncode": process.returncode,
                "stdout": out.read().decode("utf-8", "replace"), "stderr": err.read().decode("utf-8", "replace")}
