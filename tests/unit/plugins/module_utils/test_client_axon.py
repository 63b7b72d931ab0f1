# -*- coding: utf-8 -*-
# ComputeClient end to end over the real wire: real bittensor Axons on 127.0.0.x serving
# localnet's SN27 miner semantics, a real Dendrite signed by a real hotkey, real RSA-OAEP,
# real SQLite. Only the box behind each miner is in memory (no sshd, no root needed here;
# tests/localnet covers real logins).
# No `from __future__ import annotations`: bittensor reads the forward function's annotations as classes.

import json
import os
import socket
import sys
import time
import typing

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._protocol import docker_requirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet.faults import Fault  # noqa: E402  pylint: disable=wrong-import-position
from localnet.miner import Miner  # noqa: E402  pylint: disable=wrong-import-position

H100 = {"cpu": {"count": 32}, "gpu": {"count": 1, "capacity": 81559,
                                      "details": [{"name": "NVIDIA H100 80GB HBM3", "capacity": 81559}]},
        "hard_disk": {"free": 10 ** 12}, "ram": {"available": 10 ** 12}}


class MemoryBox:
    """What a miner's container would hold, kept in memory."""

    def __init__(self, uid):
        self.user = "box%d" % uid
        self.port = 4444
        self.password = None
        self.keys = []

    def grant(self, password, keys):
        self.password, self.keys = password, [k for k in keys if k]

    def set_keys(self, keys):
        self.keys = [k for k in keys if k]

    def revoke(self):
        self.password, self.keys = None, []

    def pause(self):
        self.keys = []

    def resume(self, keys):
        self.set_keys(keys)

    def restart(self):
        pass


class FakeChainMiner:
    """A real Axon on its own loopback address answering Allocate with localnet's miner."""

    def __init__(self, uid, wallet, registered, state_dir):
        bt = _network.bittensor()
        allocate_class = _network.allocate_synapse_class()
        self.uid = uid
        self.ip = "127.0.0.%d" % (60 + uid)
        self.port = _free_port(self.ip)
        self.fault = Fault()
        self.box = MemoryBox(uid)
        self.miner = Miner(uid, self.box, 86400.0, os.path.join(state_dir, "miner-%d.json" % uid))
        names = [name for name in allocate_class.model_fields if name in (
            "timeline", "device_requirement", "checking", "output", "public_key",
            "docker_requirement", "docker_change", "docker_action")]

        def forward(synapse: allocate_class) -> allocate_class:
            synapse.output = self.miner.handle(dict((n, getattr(synapse, n)) for n in names), self.fault)
            return synapse

        def blacklist(synapse: allocate_class) -> typing.Tuple[bool, str]:
            return (synapse.dendrite.hotkey not in registered), "registration"

        self.axon = bt.Axon(wallet=wallet, ip=self.ip, port=self.port, external_ip=self.ip, external_port=self.port)
        self.axon.attach(forward_fn=forward, blacklist_fn=blacklist)
        self.axon.fast_config.host = self.ip

    def start(self):
        self.axon.start()

    def stop(self):
        self.axon.stop()


def _free_port(ip):
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return probe.getsockname()[1]


def _wait_listening(ip, port, deadline=10.0):
    until = time.monotonic() + deadline
    while time.monotonic() < until:
        with socket.socket() as probe:
            if probe.connect_ex((ip, port)) == 0:
                return
        time.sleep(0.05)
    raise AssertionError("axon %s:%d did not start" % (ip, port))


@pytest.fixture(scope="module")
def subnet(tmp_path_factory):
    bt = _network.bittensor()
    root = tmp_path_factory.mktemp("subnet")
    wallets = str(root / "wallets")
    made = {}
    for name in ("operator", "miner1", "miner2", "miner3"):
        wallet = bt.Wallet(name=name, hotkey="default", path=wallets)
        wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
        made[name] = wallet
    registered = set(w.hotkey.ss58_address for w in made.values())
    miners = [FakeChainMiner(uid, made["miner%d" % uid], registered, str(root)) for uid in (1, 2, 3)]
    for miner in miners:
        miner.start()
    for miner in miners:
        _wait_listening(miner.ip, miner.port)
    neurons = [_network.Neuron(0, made["operator"].hotkey.ss58_address, "ck", 2e4, 0.0, "0.0.0.0", 0, True)]
    neurons += [_network.Neuron(m.uid, made["miner%d" % m.uid].hotkey.ss58_address, "ck", 100.0, 0.1 * m.uid,
                                m.ip, m.port) for m in miners]
    snapshot = str(root / "metagraph.json")
    _network.write_snapshot(snapshot, neurons, "local", 27)
    yield {"root": root, "wallets": wallets, "snapshot": snapshot, "miners": miners, "neurons": neurons}
    for miner in miners:
        miner.stop()


@pytest.fixture
def client(subnet, tmp_path):
    db = str(tmp_path / "database.db")
    store = AllocationStore(db)
    for neuron in subnet["neurons"][1:]:
        store._connection.execute("INSERT INTO miner_details (hotkey, details) VALUES (?, ?)",
                                  (neuron.hotkey, json.dumps(H100)))
    for miner in subnet["miners"]:
        miner.fault = Fault()
    settings = Settings(db_path=db, network="local", metagraph_file=subnet["snapshot"], wallet_name="operator",
                        wallet_path=subnet["wallets"], wandb_mode="disabled")
    yield ComputeClient(settings, store=store)
    for miner in subnet["miners"]:
        miner.fault = Fault()
        with miner.miner.lock:
            if miner.miner.allocation is not None:
                miner.miner._release()


def test_allocates_through_a_real_axon_and_decrypts(client, subnet):
    client.check_caller()
    record, report = client.allocate("box", DeviceRequirement.from_options(gpu_type="h100", gpu_memory=80), None, 1,
                                     docker_requirement(ssh_key="ssh-ed25519 AAAAtest"), 3, 5, 3)
    # Ranked by incentive (no scores): uid 3 first.
    assert record.hotkey == subnet["neurons"][3].hotkey
    box = subnet["miners"][2].box
    assert record.details["password"] == box.password and len(box.password) == 10
    assert record.details["username"] == "box3" and record.details["port"] == 4444
    assert box.keys == ["ssh-ed25519 AAAAtest"]
    assert sorted(record.details) == sorted(["username", "password", "port", "version", "ip", "resource",
                                             "regkey", "ssh_key", "uuid"])
    assert report["attempts"] == [dict(report["attempts"][0], result="allocated")]

    live, warning = client.live_allocation("box", 3)
    assert live.hotkey == record.hotkey and warning is None
    outcome = client.deallocate(client.store.get(name="box"), 3)
    assert outcome["result"] == "released"
    assert box.password is None and client.store.get(name="box") is None


def test_fails_over_past_refusing_and_garbage_miners(client, subnet):
    client.check_caller()
    subnet["miners"][2].fault = Fault("refuse")
    subnet["miners"][1].fault = Fault("garbage")
    record, report = client.allocate("box", None, None, 1, docker_requirement(), 3, 5, 3)
    assert [a["result"] for a in report["attempts"]] == ["refused", "released", "allocated"]
    assert record.hotkey == subnet["neurons"][1].hotkey
    # The garbage miner really granted; the client released it with its key.
    assert subnet["miners"][1].miner.allocation is None


def test_a_stale_record_is_dropped_when_the_miner_no_longer_holds_the_key(client, subnet):
    client.check_caller()
    record, _report = client.allocate("box", None, subnet["neurons"][2].hotkey, 1, docker_requirement(), 3, 5, 1)
    miner = subnet["miners"][1].miner
    with miner.lock:
        miner._release()  # the timeline ended on the miner's side
    assert client.live_allocation("box", 3) == (None, None)
    assert client.store.get(hotkey=record.hotkey) is None


def test_an_unregistered_caller_is_refused(client, subnet):
    bt = _network.bittensor()
    stranger = bt.Wallet(name="stranger", hotkey="default", path=subnet["wallets"])
    stranger.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    query = _network.MinerQuery(stranger.hotkey)
    reply = query.check_available([subnet["neurons"][1]], 3)[0]
    assert not reply.answered and reply.status is None
