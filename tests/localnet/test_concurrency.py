"""Concurrent allocations against one validator database, with the validator writing it too.

Real processes only: each allocation is the real `nicompute_allocate` module run as its own
process (`python -m ...modules.nicompute_allocate ARGS.json`, settings from the localnet's env
file, as a playbook task on localhost gets them); releases are real `nicompute_deallocate`
runs; `python -m localnet validator-writer` rewrites `miner_details` and `stats` throughout
the rounds the way the upstream validator does. One 13-miner localnet on per-run addresses
(uid 6 has malformed specs, so 12 miners match an allocation without requirements).

Figures per round (printed, and in every failure message): successes, distinct miners,
orphans (a miner that holds an allocation without exactly one active record plus an
`allocation` row holding its key, or an active record whose miner holds nothing), leftover
pending/releasing records, "database is locked" in any module output, clean failures (JSON
with failed=true and a msg), the writer's committed and failed transactions.

Needs root and OpenSSH (the harness installs openssh-server openssh-client sshpass).
"""

import json
import os
import sqlite3
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402

_collection.ensure_importable()

from localnet import concurrency, harness  # noqa: E402

# Per test run addresses and users (test_localnet.py uses 127.100-249.x), so concurrent runs,
# a developer's localnet and the benches never collide.
RUN = os.getpid()
CONC_IP, CONC_USERS = "127.%d.%d" % (50 + RUN // 250 % 50, RUN % 250), "nk%x" % RUN
MINERS = 13
MATCHING = 12  # every miner but uid 6 (malformed specs) matches a request without requirements
# No foreign validators (one would hold a miner) and no W&B self-release: these figures are about
# the database and the miners, not about publishing (tests/localnet/test_wandb_standin.py).
UP_OPTIONS = ("--miners", str(MINERS), "--ip-prefix", CONC_IP, "--user-prefix", CONC_USERS,
              "--no-foreign-validators", "--sync-seconds", "0")
CHECK_TIMEOUT = 5
ALLOCATE_TIMEOUT = 30
ROUND_TIMEOUT_S = 75.0  # bound on one round of concurrent module processes
WRITER_INTERVAL_S = 0.05
LATE_S = 8
RACE_DELAY_S = 4


def require_environment():  # a missing requirement is a failure, not a skip
    problem = harness.missing_requirements()
    if problem:
        pytest.fail(problem, pytrace=False)


# Run the real CLI, as a user would.
localnet = harness.run_cli


def allocate_args(name, **extra):
    args = {"name": name, "check_timeout": CHECK_TIMEOUT, "allocate_timeout": ALLOCATE_TIMEOUT}
    args.update(extra)
    return args


class Net:
    def __init__(self, state_dir, workdir):
        self.state_dir = state_dir
        self.workdir = workdir
        self.env = concurrency.module_environment(state_dir)
        self.db_path = self.env["NICOMPUTE_DB_PATH"]
        self.restarts = 0

    def up(self):
        localnet("up", "--state-dir", self.state_dir, *UP_OPTIONS)

    def down(self):
        localnet("down", "--state-dir", self.state_dir, check=False)

    def fault(self, uid, *mode):
        localnet("fault", str(uid), *mode, "--state-dir", self.state_dir)

    def plan(self, name="plan", **requirements):
        """The ranked candidates of a check-mode module run (contacts no miner to allocate)."""
        return concurrency.plan(self.env, self.workdir, allocate_args(name, **requirements), ROUND_TIMEOUT_S, name)

    def fresh(self):
        """Every miner free and no allocation recorded; restart the network when a test left any."""
        if concurrency.is_clean(concurrency.audit(self.state_dir)):
            return False
        self.down()
        self.up()
        self.restarts += 1
        assert concurrency.is_clean(concurrency.audit(self.state_dir))
        return True


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    require_environment()
    state_dir = str(tmp_path_factory.mktemp("concurrency"))
    workdir = str(tmp_path_factory.mktemp("runs"))
    localnet("up", "--state-dir", state_dir, *UP_OPTIONS)
    try:
        network = Net(state_dir, workdir)
        candidates = network.plan()
        assert len(candidates) == MATCHING, [c["uid"] for c in candidates]
        yield network
    finally:
        localnet("down", "--state-dir", state_dir, check=False)


def show(label, figures):
    print("\n%s: %s" % (label, json.dumps(figures, indent=1, sort_keys=True)))


def assert_checks(checks, figures):
    """Every violated check at once, with the figures."""
    failed = concurrency.failed_checks(checks)
    shown = dict((key, value) for key, value in figures.items() if key != "runs_detail")
    assert not failed, "failed: %s\nfigures: %s" % ("; ".join(failed), json.dumps(shown, indent=1, sort_keys=True))


def allocation_round(net, count, prefix):
    """`count` allocations at once while the validator writes, then one release of everything."""
    net.fresh()
    figures = concurrency.allocation_round(net.state_dir, net.env, net.workdir, count, prefix, allocate_args(prefix),
                                           ROUND_TIMEOUT_S, WRITER_INTERVAL_S)
    show("round %s (N=%d, M=%d)" % (prefix, count, MATCHING), figures)
    return figures


def test_the_harness_sees_orphans_and_writer_failures(net):
    """The figures can fail: a miner whose record points elsewhere, a blocked validator write."""
    net.fresh()
    run = concurrency.run_module("nicompute_allocate", allocate_args("probe"), net.env, net.workdir, ROUND_TIMEOUT_S)
    assert run.succeeded, run.message
    held = run.allocation["hotkey"]
    assert concurrency.audit(net.state_dir)["orphans"] == []
    free = next(c["hotkey"] for c in net.plan("probe-plan") if c["hotkey"] != held)
    # Move the record to another miner: the holder has no record, the record's miner holds nothing.
    connection = sqlite3.connect(net.db_path, timeout=30)
    with connection:
        for table in ("nicompute_allocation", "allocation"):
            connection.execute("UPDATE %s SET hotkey = ? WHERE hotkey = ?" % table, (free, held))
    connection.close()
    whys = sorted(orphan["why"] for orphan in concurrency.audit(net.state_dir)["orphans"])
    assert whys == ["active record whose miner reports no allocation", "allocated miner with 0 active record(s) and "
                    "no allocation row"], whys

    writer = concurrency.Writer(net.state_dir, os.path.join(net.workdir, "probe-writer.json"), WRITER_INTERVAL_S)
    try:
        assert writer.wait_started()["committed"] > 0
        # A client that keeps the write lock longer than the validator's 5 s busy timeout.
        blocker = sqlite3.connect(net.db_path, timeout=30, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        time.sleep(6)
        blocker.execute("ROLLBACK")
        blocker.close()
        time.sleep(0.5)
    finally:
        report = writer.stop()
    assert report["failed"] >= 1 and "locked" in report["errors"][0]["error"], report
    assert report["committed"] > 2 and report["exit"] == 1, report
    net.fresh()  # the moved record cannot release the box: start over


def test_concurrent_allocations_with_enough_miners(net):
    """N=8 at once with M=12 free miners: 8 successes on 8 miners, nothing orphaned."""
    figures = allocation_round(net, 8, "conc8")
    assert_checks(concurrency.round_checks(figures, 8, MATCHING), figures)


def test_concurrent_allocations_beyond_the_miners(net):
    """N=16 at once with M=12 free miners: exactly 12 successes, 4 clean failures."""
    figures = allocation_round(net, 16, "conc16")
    assert_checks(concurrency.round_checks(figures, 16, MATCHING), figures)


def test_late_answer_race(net):
    """A waits on a miner that granted at once but answers after 8 s; B starts 4 s after A.

    Both succeed on different miners, or one fails cleanly; never the same miner; A keeps
    its name and its credentials log in.
    """
    net.fresh()
    figures = concurrency.late_race(net.state_dir, net.env, net.workdir, net.fault, allocate_args("race"),
                                    {"gpu_count": 1}, LATE_S, RACE_DELAY_S, ROUND_TIMEOUT_S)
    show("late race", figures)
    assert_checks(concurrency.race_checks(figures), figures)
