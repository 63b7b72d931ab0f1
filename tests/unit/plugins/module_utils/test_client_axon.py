# -*- coding: utf-8 -*-
# ComputeClient end to end over the real wire: real bittensor Axons on 127.0.0.x serving
# localnet's SN27 miner semantics, a real Dendrite signed by a real hotkey, real RSA-OAEP,
# real SQLite. Only the box behind each miner is in memory (no sshd, no root needed here;
# tests/localnet covers real logins).
# No `from __future__ import annotations`: bittensor reads the forward function's annotations as classes.

import json
import os
import sys
import typing

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph, _network
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._protocol import docker_requirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.loopback import free_port, wait_listening

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
        self.port = free_port(self.ip)
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
        wait_listening(miner.ip, miner.port)
    neurons = [_metagraph.Neuron(0, made["operator"].hotkey.ss58_address, "ck", 2e4, 0.0, "0.0.0.0", 0, True)]
    neurons += [_metagraph.Neuron(m.uid, made["miner%d" % m.uid].hotkey.ss58_address, "ck", 100.0, 0.1 * m.uid,
                                  m.ip, m.port) for m in miners]
    snapshot = str(root / "metagraph.json")
    _metagraph.write_snapshot(snapshot, neurons, "local", 27)
    yield {"root": root, "wallets": wallets, "snapshot": snapshot, "miners": miners, "neurons": neurons}
    for miner in miners:
        miner.stop()


@pytest.fixture
def client(subnet, tmp_path):
    db = str(tmp_path / "database.db")
    store = AllocationStore(db, create=True)
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


def test_one_not_held_keeps_the_allocation_and_the_grace_period_ends_it(client, subnet):
    client.check_caller()
    record, _report = client.allocate("box", None, subnet["neurons"][2].hotkey, 1, docker_requirement(), 3, 5, 1)
    miner = subnet["miners"][1].miner
    with miner.lock:
        miner._release()  # gone on the miner's side (or only paused: the answer is the same)
    kept, warning = client.live_allocation("box", 3)
    assert (kept.state, kept.hotkey) == ("unconfirmed", record.hotkey)
    assert "does not hold 'box'" in warning and "paused" in warning
    assert client.store.allocated_hotkeys() == [record.hotkey]  # still published
    client.settings.unconfirmed_grace = 0
    assert client.live_allocation("box", 3) == (None, None)
    assert client.store.get(hotkey=record.hotkey) is None


def test_an_unregistered_caller_is_refused(client, subnet):
    bt = _network.bittensor()
    stranger = bt.Wallet(name="stranger", hotkey="default", path=subnet["wallets"])
    stranger.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    query = _network.MinerQuery(stranger.hotkey)
    reply = query.check_available([subnet["neurons"][1]], 3)[0]
    assert not reply.answered and reply.status is None


# -- many runs on one database ----------------------------------------------------------

def _other_run_claims(client, neuron, owner, lease_seconds=600.0, name="other-run"):
    """What another run's claim looks like: a pending record with its own key and owner."""
    from ansible_collections.neuralinternet.compute.plugins.module_utils._crypto import generate_key_pair

    public_pem = generate_key_pair()[1]
    client.store.claim(name=name, hotkey=neuron.hotkey, uid=neuron.uid, ip=neuron.ip, regkey=public_pem,
                       ssh_key="", resource="x", timeline=1, owner=owner, lease_seconds=lease_seconds)
    return public_pem


def _exited_process_owner():
    import subprocess

    from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner, process_started

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    owner = Owner(Owner.current().host, child.pid, process_started(child.pid))
    child.kill()
    child.wait()
    return owner


def test_a_miner_claimed_by_another_run_is_skipped_without_costing_an_attempt(client, subnet):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner

    client.check_caller()
    ranking = client.rank(None, None)
    top = ranking.candidates[0].neuron
    # Another run claims the best miner after this run ranked and checked it: rank is
    # computed before, so the claim collides inside allocate().
    original_rank = client.rank

    def rank_then_other_run_claims(requirement, hotkey):
        ranked = original_rank(requirement, hotkey)
        _other_run_claims(client, top, Owner.current())
        return ranked

    client.rank = rank_then_other_run_claims
    record, report = client.allocate("box", None, None, 1, docker_requirement(), 3, 5, 1)
    assert record is not None and record.hotkey != top.hotkey
    assert [a["result"] for a in report["attempts"]] == ["allocated"]  # max_attempts=1 was enough
    skipped = [r for r in report["rejected"] if r["hotkey"] == top.hotkey]
    assert skipped and skipped[0]["reason"].startswith("claimed by another allocation meanwhile")
    assert client.store.get(hotkey=top.hotkey).name == "other-run"  # untouched


def test_reconcile_leaves_a_live_runs_claim_alone_and_settles_a_dead_runs(client, subnet):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner

    client.check_caller()
    live, dead = subnet["neurons"][1], subnet["neurons"][2]
    live_key = _other_run_claims(client, live, Owner.current(), name="in-flight")
    dead_key = _other_run_claims(client, dead, _exited_process_owner(), name="crashed")
    # The crashed run's miner granted before the run died.
    granted = subnet["miners"][1].miner.handle({
        "timeline": 1, "device_requirement": DeviceRequirement.from_options().to_wire(), "checking": False,
        "output": {}, "public_key": dead_key,
        "docker_requirement": docker_requirement(), "docker_change": False, "docker_action": {}}, Fault())
    assert granted["status"] is True

    planned = client.reconcile(3, check_mode=True)
    assert [(item["name"], item["result"]) for item in planned] == [("crashed", "would ask the miner to release this key")]
    assert planned[0]["why"].startswith("its run (pid ")
    outcomes = client.reconcile(3)
    assert [(item["name"], item["result"]) for item in outcomes] == [("crashed", "released")]
    assert subnet["miners"][1].miner.allocation is None
    assert client.store.get(hotkey=dead.hotkey) is None
    kept = client.store.get(hotkey=live.hotkey)
    assert (kept.name, kept.state, kept.regkey) == ("in-flight", "pending", live_key)


def test_reconcile_takes_over_a_live_owner_whose_lease_expired(client, subnet):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner

    client.check_caller()
    hung = subnet["neurons"][3]
    _other_run_claims(client, hung, Owner.current(), lease_seconds=-1.0, name="hung")
    outcomes = client.reconcile(3)
    # "Not released" proves little (the miner may still be building): kept, unpublished.
    assert [(item["name"], item["why"]) for item in outcomes] == [("hung", "its lease expired")]
    assert outcomes[0]["result"].startswith("kept for retry: the release answered status false")
    kept = client.store.get(hotkey=hung.hotkey)
    assert kept.state == "releasing"
    # A whole miner sync period after unpublishing, the miner does not hold the key: settled.
    client.store._connection.execute("UPDATE nicompute_allocation SET unpublished_at = unpublished_at - 1000")
    client.settings.miner_sync_period = 900
    outcomes = client.reconcile(3)
    assert [item["result"] for item in outcomes] == ["released by the miner after it was unpublished"]
    assert client.store.get(hotkey=hung.hotkey) is None


def test_a_grant_whose_claim_was_settled_meanwhile_is_released(client, subnet, monkeypatch):
    client.check_caller()
    miners = dict((m.uid, m) for m in subnet["miners"])
    original_allocate = client.query.allocate

    def allocate_then_lose_the_claim(neuron, *args):
        reply = original_allocate(neuron, *args)
        # Another run settled our record while the answer travelled (our lease had run out).
        record = client.store.get(hotkey=neuron.hotkey)
        client.store.remove(record.hotkey, record.regkey)
        return reply

    monkeypatch.setattr(client.query, "allocate", allocate_then_lose_the_claim)
    record, report = client.allocate("box", None, subnet["neurons"][2].hotkey, 1, docker_requirement(), 3, 5, 1)
    assert record is None
    assert report["attempts"][0]["result"] == "released"
    assert report["attempts"][0]["reason"].startswith("claim lost before the grant arrived")
    assert miners[2].miner.allocation is None  # released, not leaked


# -- what keeps an allocation alive on the real subnet ---------------------------------------

def test_a_caller_below_the_miners_stake_threshold_is_refused(client, subnet):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput

    assert client.check_caller(1024.0) == subnet["neurons"][0].hotkey  # the operator has 2e4
    with pytest.raises(BadInput) as caught:
        client.check_caller(3e4)
    assert "total stake of 20000 on netuid 27, below min_validator_stake 30000" in caught.value.message
    assert "release the box at its next W&B check" in caught.value.message


def test_publication_is_skipped_when_unchanged_and_redone_after_a_failure(client, tmp_path):
    # The W&B service cannot be reached from here: the real client writes an offline run.
    client.settings.wandb_mode = "offline"
    client.settings.wandb_dir = str(tmp_path / "wandb")
    client.store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES ('5Hk', '{}')")
    first = client.publish()
    assert first["published"] is True and "unchanged" not in first
    assert client.store.last_publication()["ok"] is True
    again = client.publish()
    assert again["unchanged"] is True and again["allocated_hotkeys"] == ["5Hk"]
    client.store.record_publication(dict(client.store.last_publication(), ok=False, error="down"))
    redone = client.publish()
    assert redone["published"] is True and "unchanged" not in redone
    client.store._connection.execute("DELETE FROM allocation")
    changed = client.publish()
    assert "unchanged" not in changed and changed["allocated_hotkeys"] == []


def test_a_miner_taken_by_another_validator_after_the_check_is_not_evicted(client, subnet):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._crypto import generate_key_pair

    client.check_caller()
    top = client.rank(None, None).candidates[0].neuron
    miner = dict((m.uid, m) for m in subnet["miners"])[top.uid].miner
    theirs = generate_key_pair()[1]
    original_check = client.check_availability

    def check_then_another_validator_allocates(ranking, timeout):
        checked = original_check(ranking, timeout)
        # Another validator (not in this database) takes the best miner right after the check.
        granted = miner.handle({"timeline": 1, "device_requirement": DeviceRequirement.from_options().to_wire(),
                                "checking": False, "output": {}, "public_key": theirs,
                                "docker_requirement": docker_requirement(), "docker_change": False,
                                "docker_action": {}}, Fault())
        assert granted["status"] is True
        return checked

    client.check_availability = check_then_another_validator_allocates
    record, report = client.allocate("box", None, None, 1, docker_requirement(), 3, 5, 1)
    assert record is not None and record.hotkey != top.hotkey
    assert [r["reason"] for r in report["rejected"] if r["hotkey"] == top.hotkey] == [
        "busy when asked again just before allocating"]
    assert miner.allocation.public_key == theirs  # their box was not destroyed
    assert client.store.get(hotkey=top.hotkey) is None


def test_reconcile_unpublishes_an_allocation_past_its_timeline(client, subnet):
    client.check_caller()
    record, _report = client.allocate("box", None, subnet["neurons"][3].hotkey, 1, docker_requirement(), 3, 5, 1)
    client.store._connection.execute("UPDATE nicompute_allocation SET expires_at = 1000")
    planned = client.reconcile(3, check_mode=True)
    assert [(item["name"], item["result"]) for item in planned] == [("box", "would be unpublished as expired")]
    assert client.store.allocated_hotkeys() == [record.hotkey]
    done = client.reconcile(3)
    assert [(item["name"], item["result"], item["why"]) for item in done] == [
        ("box", "expired", "its timeline ended at 1970-01-01 00:16:40 UTC")]
    assert client.store.allocated_hotkeys() == [] and client.store.get(name="box").state == "expired"
    assert client.live_allocation("box", 3) == (None, None)
