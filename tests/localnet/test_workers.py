"""localnet's axon workers: miners spread over several processes, stale queries dropped while late
allocations are still granted, and nothing left running after `down` or a killed supervisor.

Needs root and OpenSSH (the harness installs openssh-server openssh-client sshpass).
"""

import asyncio
import json
import os
import signal
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402

_collection.ensure_importable()

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _metagraph, _network, _protocol  # noqa: E402
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import (  # noqa: E402
    DeviceRequirement)
from localnet import cli, harness, procs  # noqa: E402
from localnet.layout import Layout  # noqa: E402

TIMEOUT = 10.0
# Per test run addresses and users (127.1-9.x; the other localnet tests use 127.10 and up), so
# concurrent runs and a developer's localnet never collide.
RUN = os.getpid()
WORK_IP, WORK_USERS = "127.%d.%d" % (1 + RUN // 250 % 5, RUN % 250), "nr%x" % RUN
KILL_IP, KILL_USERS = "127.%d.%d" % (6 + RUN // 250 % 4, RUN % 250), "nq%x" % RUN
# Three workers of two miners each: uids 1-2, 3-4, 5-6.
MINERS, WORKERS = 6, 3
DEVICE = DeviceRequirement.from_options().to_wire()
# A request signed this long ago with a timeout of LATE_TIMEOUT: its client gave up a second ago,
# yet bittensor's axon would still take its nonce (it allows 4 s + the timeout).
LATE_AGE, LATE_TIMEOUT = 3.0, 2.0

localnet = harness.run_cli


def require_environment():  # a missing requirement is a failure, not a skip
    problem = harness.missing_requirements()
    if problem:
        pytest.fail(problem, pytrace=False)


class Net:
    def __init__(self, state_dir):
        self.state_dir = state_dir
        self.layout, _record = Layout.load(state_dir)
        self.keypair = _network.load_hotkey("operator", "validator", self.layout.wallet_path)
        self.query = _network.MinerQuery(self.keypair)
        self.neurons = dict((n.uid, n) for n in _metagraph.read_snapshot(self.layout.metagraph_file)[0])

    def status(self):
        return json.loads(localnet("status", "--json", "--state-dir", self.state_dir).stdout)

    def record(self):
        with open(self.layout.record_file) as handle:
            return json.load(handle)

    def fault(self, uid, *mode):
        localnet("fault", str(uid), *mode, "--state-dir", self.state_dir)

    def available(self, uid, timeout=TIMEOUT):
        return self.query.check_available([self.neurons[uid]], timeout)[0]


def start(tmp_path_factory, name, *options):
    require_environment()
    state_dir = str(tmp_path_factory.mktemp(name))
    localnet("up", "--state-dir", state_dir, "--no-foreign-validators", "--build-seconds", "0", *options)
    return Net(state_dir)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    # No W&B self-release: the allocations here are published nowhere.
    running = start(tmp_path_factory, "workers", "--miners", str(MINERS), "--workers", str(WORKERS),
                    "--sync-seconds", "0", "--ip-prefix", WORK_IP, "--user-prefix", WORK_USERS)
    yield running
    localnet("down", "--state-dir", running.state_dir, check=False)


def parent_pid(pid):
    with open("/proc/%d/stat" % pid) as handle:
        return int(handle.read().rsplit(")", 1)[1].split()[1])


# ---------------------------------------------------------------- without a network

def test_worker_blocks_cover_every_miner_once():
    for miners in (1, 2, 7, 64, 65, 239, 240):
        for workers in range(1, min(miners, 6) + 1):
            layout = Layout("/nonexistent", miners=miners, workers=workers)
            blocks = [list(layout.worker_uids(index)) for index in range(workers)]
            assert sum(blocks, []) == list(range(1, miners + 1))
            assert max(map(len, blocks)) - min(map(len, blocks)) <= 1
            assert all(layout.worker_of(uid) == index for index, block in enumerate(blocks) for uid in block)
    assert [cli.default_workers(miners) for miners in (1, 8, 64, 65, 128, 129, 240)] == [1, 1, 1, 2, 2, 3, 4]


def test_workers_option_is_checked_before_anything_starts(capsys, tmp_path):
    require_environment()
    assert cli.main(["up", "--state-dir", str(tmp_path), "--miners", "2", "--workers", "3"]) == 1
    assert "--workers must be between 1 and the number of miners (2)" in capsys.readouterr().err
    assert not os.listdir(str(tmp_path))


# ---------------------------------------------------------------- serving

def test_workers_serve_disjoint_blocks_and_every_miner_answers(net):
    document = net.status()
    supervisor = net.record()["pids"]["supervisor"]["pid"]
    assert document["running"] is True
    assert [(w["index"], w["uids"], w["running"]) for w in document["workers"]] == [
        (0, [1, 2], True), (1, [3, 4], True), (2, [5, 6], True)]
    assert [parent_pid(w["pid"]) for w in document["workers"]] == [supervisor] * WORKERS
    assert [row["worker"] for row in document["miners"]] == [0, 0, 1, 1, 2, 2]
    replies = net.query.check_available([net.neurons[uid] for uid in range(1, MINERS + 1)], TIMEOUT)
    assert [(r.status_code, r.status, r.output["port"]) for r in replies] == [(200, True, 4444)] * MINERS


def test_fault_on_a_miner_of_the_last_worker(net):
    net.fault(6, "offline")
    assert net.available(6, 3).status_code == 503
    # Its neighbour in the same worker serves on.
    assert net.available(5).status is True
    net.fault(6, "unresponsive")
    silent = net.available(6, 1.5)
    assert not silent.answered and silent.status_code == 408 and silent.elapsed >= 1.4
    net.fault(6, "healthy")
    assert net.available(6).status is True
    assert net.status()["miners"][5]["fault"] == "healthy"


# ---------------------------------------------------------------- stale requests

class PastClock:
    """The time module as bittensor's dendrite sees it, `age` seconds behind: its nonces are that old."""

    def __init__(self, age):
        self.age = age

    def time_ns(self):
        return time.time_ns() - int(self.age * 1e9)

    def __getattr__(self, name):
        return getattr(time, name)


def send_signed_ago(monkeypatch, net, uid, fields, timeout, age):
    """One request through bittensor's own dendrite, signed as if sent `age` seconds ago:
    (status code, status message, output)."""
    bt = _network.bittensor()
    from bittensor.core import dendrite as dendrite_module

    monkeypatch.setattr(dendrite_module, "time", PastClock(age))
    neuron = net.neurons[uid]
    axon = bt.AxonInfo(version=0, ip=neuron.ip, port=neuron.port, ip_type=4, hotkey=neuron.hotkey,
                       coldkey=neuron.coldkey)

    async def call():
        dendrite = bt.Dendrite(wallet=net.keypair)
        try:
            answer = await dendrite.call(target_axon=axon, synapse=_network.allocate_synapse_class()(**fields),
                                         timeout=timeout, deserialize=False)
        finally:
            await dendrite.aclose_session()
        return int(answer.dendrite.status_code), answer.dendrite.status_message, answer.output

    return asyncio.run(call())


def test_stale_query_is_dropped_while_late_allocate_and_release_go_through(net, monkeypatch):
    availability = _protocol.availability_request(1)
    code, message, _output = send_signed_ago(monkeypatch, net, 4, availability, LATE_TIMEOUT, LATE_AGE)
    assert code == 408 and "query dropped" in message
    # The same age within its client's timeout is served: only the client's deadline decides.
    code, _message, output = send_signed_ago(monkeypatch, net, 4, availability, TIMEOUT, LATE_AGE)
    assert (code, output) == (200, {"status": True, "port": 4444})

    private_pem, public_pem = _crypto.generate_key_pair()
    allocate = _protocol.allocate_request(DEVICE, 1, public_pem, _protocol.docker_requirement(ssh_key="k"))
    code, _message, output = send_signed_ago(monkeypatch, net, 4, allocate, LATE_TIMEOUT, LATE_AGE)
    # A v1.8.3 miner grants an allocation however late it comes.
    assert code == 200 and output["status"] is True
    assert _crypto.decrypt_credentials(private_pem, output["info"])["username"] == WORK_USERS + "4"
    code, message, _output = send_signed_ago(monkeypatch, net, 4, _protocol.status_request(public_pem),
                                             LATE_TIMEOUT, LATE_AGE)
    assert code == 408 and "query dropped" in message
    code, _message, output = send_signed_ago(monkeypatch, net, 4, _protocol.deallocate_request(public_pem),
                                             LATE_TIMEOUT, LATE_AGE)
    assert code == 200 and output["status"] is True
    assert net.status()["miners"][3]["allocated"] is False


# ---------------------------------------------------------------- ending

def test_down_leaves_no_worker_process(net):
    pids = net.record()["pids"]
    every = procs.with_descendants([pids["supervisor"]] + pids["workers"])
    assert len(pids["workers"]) == WORKERS and all(procs.alive(worker) for worker in pids["workers"])
    localnet("down", "--state-dir", net.state_dir)
    assert [ident["pid"] for ident in every if procs.alive(ident)] == []
    assert not os.path.exists(net.layout.record_file)


def test_a_killed_supervisor_takes_its_workers_along(tmp_path_factory):
    # With W&B reads on: the supervisor reads, both workers' miners act on it.
    killed = start(tmp_path_factory, "killed", "--miners", "2", "--workers", "2", "--sync-seconds", "1",
                   "--ip-prefix", KILL_IP, "--user-prefix", KILL_USERS)
    try:
        deadline = time.monotonic() + 15
        while not all(row["wandb"] for row in killed.status()["miners"]) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert [row["wandb"]["read"] for row in killed.status()["miners"]] == ["ok", "ok"]
        pids = killed.record()["pids"]
        every = procs.with_descendants([pids["supervisor"]] + pids["workers"])
        os.kill(pids["supervisor"]["pid"], signal.SIGKILL)
        deadline = time.monotonic() + 5
        while any(procs.alive(worker) for worker in pids["workers"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(procs.alive(worker) for worker in pids["workers"])
        assert killed.status()["running"] is False
    finally:
        localnet("down", "--state-dir", killed.state_dir, check=False)
    assert [ident["pid"] for ident in every if procs.alive(ident)] == []
