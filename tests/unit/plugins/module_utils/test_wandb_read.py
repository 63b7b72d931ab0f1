# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Reading the subnet's W&B runs: upstream's filters, signature and stake judgement with real
# sr25519 keys, the reader's deadline, and the wallet's public address. W&B itself cannot run
# here: the judging functions get plain run dicts as _plain_run makes them, and where a task
# reads, _wandb_read.fetch_runs (or the child's _fetch) is replaced, as each test says.

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _wandb_read
from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import hotkey_address
from ansible_collections.neuralinternet.compute.plugins.module_utils._network import verify_signature
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._subnet_runs import SubnetRuns
from ansible_collections.neuralinternet.compute.plugins.module_utils._wandb_read import (
    _plain_run,
    fetch_runs,
    judge_miner_runs,
    judge_validator_runs,
    miner_filters,
    signature_problem,
    validator_filters,
)

from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.subnet_builders import (
    PYTHON,
    neuron,
    new_keypair,
    sign_run_id,
    signed_run,
    specs,
    subprocess_env,
    write_wallet,
)

THRESHOLD = 1024.0


@pytest.fixture(scope="module")
def keys():
    """Real sr25519 hotkeys: three validators, ours, a forger and two miners."""
    return dict((name, new_keypair()) for name in ("big", "small", "unstaked", "own", "forger", "miner1", "miner2"))


@pytest.fixture
def settings(tmp_path):
    return Settings(db_path=str(tmp_path / "database.db"), wandb_mode="disabled", wallet_path=str(tmp_path / "wallets"),
                    wandb_dir=str(tmp_path / "wandb"))


# -- upstream's filters (PROTOCOL.md "W&B") --------------------------------------------------

def test_validator_filters_are_upstreams():
    assert validator_filters(27, "allocated_hotkeys") == {"$and": [
        {"config.role": "validator"}, {"config.config.netuid": 27}, {"config.allocated_hotkeys": {"$exists": True}}]}
    assert validator_filters(15, "penalized_hotkeys") == {"$and": [
        {"config.role": "validator"}, {"config.config.netuid": 15}, {"config.penalized_hotkeys": {"$exists": True}}]}


def test_miner_filters_are_upstreams():
    assert miner_filters(27) == {"$and": [{"config.role": "miner"}, {"config.config.netuid": 27}, {"state": "running"}]}


def test_a_plain_run_keeps_only_what_readers_need_as_json():
    class Run:  # stand-in for wandb's Run: the three attributes _plain_run reads
        id = "abc123"
        name = "validator-x"
        state = "running"
        config = {"hotkey": "hk", "role": "validator", "signature": "00", "version": 183,
                  "allocated_hotkeys": ["a"], "penalized_hotkeys": [], "specs": {"cpu": {"count": 1}},
                  "stats": {"huge": "x" * 1000}, "config": {"netuid": 27}, "odd": object()}

    plain = _plain_run(Run())
    assert plain == {"id": "abc123", "name": "validator-x", "state": "running",
                     "config": {"hotkey": "hk", "role": "validator", "signature": "00", "version": 183,
                                "allocated_hotkeys": ["a"], "penalized_hotkeys": [],
                                "specs": {"cpu": {"count": 1}}}}
    json.dumps(plain)


# -- signatures ------------------------------------------------------------------------------

def test_a_valid_signature_verifies(keys):
    run = signed_run(keys["big"], "run00001")
    assert signature_problem(run, verify_signature) is None


def test_a_0x_prefixed_signature_verifies(keys):
    run = signed_run(keys["big"], "run00001", signature="0x" + sign_run_id(keys["big"], "run00001"))
    assert signature_problem(run, verify_signature) is None


def test_unsigned_runs_are_refused(keys):
    for signature in ("", None):
        run = signed_run(keys["big"], "run00001")
        run["config"]["signature"] = signature
        assert signature_problem(run, verify_signature) == "unsigned"
    run = signed_run(keys["big"], "run00001")
    del run["config"]["signature"]
    assert signature_problem(run, verify_signature) == "unsigned"


def test_a_run_without_a_hotkey_is_refused(keys):
    for hotkey in ("", None, 42):
        run = signed_run(keys["big"], "run00001")
        run["config"]["hotkey"] = hotkey
        assert signature_problem(run, verify_signature) == "no hotkey"


@pytest.mark.parametrize("signature", ["zz" * 64, "abc", "0xgg"])
def test_a_signature_that_is_not_hex_is_refused(keys, signature):
    assert signature_problem(signed_run(keys["big"], "run00001", signature=signature),
                             verify_signature) == "the signature is not hex"


def test_a_forged_signature_does_not_verify(keys):
    victim = keys["big"].ss58_address
    forged = signed_run(keys["forger"], "run00001", hotkey=victim)
    assert signature_problem(forged, verify_signature) == "the signature does not verify for %s" % victim


def test_a_signature_copied_from_another_run_does_not_verify(keys):
    copied = signed_run(keys["big"], "run00002", signature=sign_run_id(keys["big"], "run00001"))
    assert signature_problem(copied, verify_signature).startswith("the signature does not verify")


def test_a_signature_over_the_raw_run_id_does_not_verify(keys):
    # Upstream signs the SHA-256 digest of the run id, not the id itself.
    raw = signed_run(keys["big"], "run00001", signature=keys["big"].sign(b"run00001").hex())
    assert signature_problem(raw, verify_signature) is not None


# -- validators' runs ------------------------------------------------------------------------

def stakes(keys):
    return {keys["big"].ss58_address: 5000.0, keys["small"].ss58_address: 100.0,
            keys["own"].ss58_address: 9000.0, keys["miner1"].ss58_address: 0.0}


def test_only_validators_above_the_threshold_are_honoured(keys):
    at_threshold = dict(stakes(keys), **{keys["small"].ss58_address: THRESHOLD})
    runs = [signed_run(keys["big"], "big00001", allocated_hotkeys=["m1"]),
            signed_run(keys["small"], "sml00001", allocated_hotkeys=["m2"]),
            signed_run(keys["unstaked"], "uns00001", allocated_hotkeys=["m3"])]
    judged, skipped = judge_validator_runs(runs, at_threshold, THRESHOLD, None, verify_signature)
    assert skipped == []
    by_validator = dict((run.validator, run) for run in judged)
    assert by_validator[keys["big"].ss58_address].honoured is True
    # Exactly at the threshold is not above it, as miners require.
    assert by_validator[keys["small"].ss58_address].honoured is False
    # Not in the metagraph: no stake known, never honoured.
    assert by_validator[keys["unstaked"].ss58_address].stake is None
    assert by_validator[keys["unstaked"].ss58_address].honoured is False


def test_our_own_run_is_marked_and_its_lists_kept(keys):
    runs = [signed_run(keys["own"], "own00001", allocated_hotkeys=["m2", "m1", "m1", 7], penalized_hotkeys="m9")]
    (run,), _skipped = judge_validator_runs(runs, stakes(keys), THRESHOLD, keys["own"].ss58_address, verify_signature)
    assert run.own is True and run.honoured is True
    # Deduplicated and sorted, non-text entries dropped, a list that is not a list reads as empty.
    assert run.allocated_hotkeys == ["m1", "m2"]
    assert run.penalized_hotkeys == []
    assert run.source() == {"validator": keys["own"].ss58_address, "run_id": "own00001", "stake": 9000.0,
                            "signature_valid": True, "honoured": True, "own": True}


def test_a_run_found_by_both_queries_counts_once(keys):
    run = signed_run(keys["big"], "big00001", allocated_hotkeys=["m1"], penalized_hotkeys=["m2"])
    judged, skipped = judge_validator_runs([run, dict(run), run], stakes(keys), THRESHOLD, None, verify_signature)
    assert [item.run_id for item in judged] == ["big00001"]
    assert skipped == []


def test_forged_and_unsigned_runs_are_skipped_with_their_reason(keys):
    victim = keys["big"].ss58_address
    runs = [signed_run(keys["forger"], "frg00001", hotkey=victim, allocated_hotkeys=["m1"]),
            signed_run(keys["small"], "uns00001", signature="", allocated_hotkeys=["m1"]),
            signed_run(keys["big"], "big00001", allocated_hotkeys=["m2"])]
    judged, skipped = judge_validator_runs(runs, stakes(keys), THRESHOLD, None, verify_signature)
    assert [run.run_id for run in judged] == ["big00001"]
    assert skipped == [
        {"run_id": "frg00001", "name": "validator-%s" % victim, "hotkey": victim,
         "reason": "the signature does not verify for %s" % victim},
        {"run_id": "uns00001", "name": "validator-%s" % keys["small"].ss58_address,
         "hotkey": keys["small"].ss58_address, "reason": "unsigned"},
    ]


# -- miners' runs ----------------------------------------------------------------------------

def test_miner_runs_count_only_when_signed_registered_and_with_specs(keys):
    m1, m2 = keys["miner1"].ss58_address, keys["miner2"].ss58_address
    h100 = specs("NVIDIA H100 80GB HBM3", 81559, 8)
    runs = [
        signed_run(keys["miner1"], "mnr00001", role="miner", specs=h100),
        # A later run of the same miner: the first one W&B lists wins.
        signed_run(keys["miner1"], "mnr00002", role="miner", specs=specs("NVIDIA L4", 23034, 1)),
        signed_run(keys["forger"], "frg00001", hotkey=m2, role="miner", specs=h100),
        signed_run(keys["miner2"], "uns00001", role="miner", signature="", specs=h100),
        signed_run(keys["unstaked"], "unr00001", role="miner", specs=h100),
        signed_run(keys["miner2"], "nos00001", role="miner"),
    ]
    registered = {m1, m2}
    found, skipped = judge_miner_runs(runs, registered, verify_signature)
    assert found == {m1: h100}
    assert len(skipped) == 4
    assert dict((item["run_id"], item["reason"]) for item in skipped) == {
        "frg00001": "the signature does not verify for %s" % m2,
        "uns00001": "unsigned",
        "unr00001": "hotkey %s is not in the metagraph" % keys["unstaked"].ss58_address,
        "nos00001": "no specs",
    }


# -- SubnetRuns: what a listing sees --------------------------------------------------------

def online(settings, timeout=1):
    settings.wandb_mode = "online"
    settings.wandb_api_key = "k" * 40
    settings.wandb_timeout = timeout
    return settings


def metagraph(keys):
    return dict((keypair.ss58_address, neuron(uid, keypair.ss58_address, stake=stake))
                for uid, (keypair, stake) in enumerate([(keys["big"], 5000.0), (keys["small"], 100.0),
                                                        (keys["own"], 9000.0), (keys["miner1"], 0.0),
                                                        (keys["miner2"], 0.0)]))


@pytest.fixture
def published(keys, monkeypatch):
    """_wandb_read.fetch_runs replaced: W&B cannot run here. Returns the queries it was asked."""
    asked = []
    lists = [signed_run(keys["big"], "big00001", allocated_hotkeys=["m-big", "m-both"], penalized_hotkeys=["p-big"]),
             signed_run(keys["small"], "sml00001", allocated_hotkeys=["m-small", "m-both"], penalized_hotkeys=["p-sm"]),
             signed_run(keys["own"], "own00001", allocated_hotkeys=["m-own"], penalized_hotkeys=["p-own"]),
             signed_run(keys["forger"], "frg00001", hotkey=keys["big"].ss58_address, allocated_hotkeys=["m-forged"])]
    miners = [signed_run(keys["miner1"], "mnr00001", role="miner", specs=specs("NVIDIA L4", 23034, 1)),
              signed_run(keys["unstaked"], "mnr00002", role="miner", specs=specs("NVIDIA L4", 23034, 1))]

    def fetch(settings, queries):
        asked.append(list(queries))
        found = dict((label, list(lists)) for label, _filters in queries if label != "miners")
        if any(label == "miners" for label, _filters in queries):
            found["miners"] = miners
        return found, None

    monkeypatch.setattr(_wandb_read, "fetch_runs", fetch)
    return asked


def test_holders_are_other_honoured_validators(keys, settings, published):
    runs = SubnetRuns(online(settings), metagraph(keys), THRESHOLD, keys["own"].ss58_address, verify_signature).read()
    holders = runs.holders()
    assert sorted(holders) == ["m-big", "m-both"]
    assert [run.validator for run in holders["m-both"]] == [keys["big"].ss58_address]
    # The low-stake validator counts when asked for everyone; our own run never does.
    everyone = runs.holders(honoured_only=False)
    assert sorted(everyone) == ["m-big", "m-both", "m-small"]
    both = sorted([keys["big"].ss58_address, keys["small"].ss58_address])
    assert sorted(run.validator for run in everyone["m-both"]) == both
    assert sorted(runs.holders("penalized_hotkeys")) == ["p-big"]


def test_read_asks_upstreams_queries_and_counts_each_run_once(keys, settings, published):
    runs = SubnetRuns(online(settings), metagraph(keys), THRESHOLD, keys["own"].ss58_address, verify_signature)
    runs.read(miners=True)
    assert published == [[("allocated_hotkeys", validator_filters(27, "allocated_hotkeys")),
                          ("penalized_hotkeys", validator_filters(27, "penalized_hotkeys")),
                          ("miners", miner_filters(27))]]
    # Both list queries return the same four runs: three signed validators, once each.
    assert sorted(run.run_id for run in runs.validators) == ["big00001", "own00001", "sml00001"]
    assert runs.miner_specs == {keys["miner1"].ss58_address: specs("NVIDIA L4", 23034, 1)}
    report = runs.report()
    assert report["validator_runs"] == 3 and report["miner_runs"] == 1
    assert sorted(item["run_id"] for item in report["skipped_runs"]) == ["frg00001", "mnr00002"]
    assert report["mode"] == "online" and report["read"] is True and report["error"] is None


def test_read_of_one_list_asks_one_query(keys, settings, published):
    SubnetRuns(online(settings), metagraph(keys), THRESHOLD, None, verify_signature).read(lists=("penalized_hotkeys",))
    assert published == [[("penalized_hotkeys", validator_filters(27, "penalized_hotkeys"))]]


def test_nothing_is_read_when_wandb_is_off(keys, settings):
    runs = SubnetRuns(settings, metagraph(keys), THRESHOLD, None, verify_signature).read(miners=True)
    assert runs.validators == [] and runs.miner_specs == {} and runs.holders() == {}
    assert runs.report() == {"mode": "disabled", "read": False, "error": None, "validator_runs": 0,
                             "miner_runs": 0, "skipped_runs": []}


# -- fetch_runs: the child and its deadline --------------------------------------------------

@pytest.mark.parametrize("mode", ["disabled", "offline"])
def test_fetch_runs_reads_nothing_unless_online(settings, mode, monkeypatch):
    def never(*_args):
        raise AssertionError("W&B was read in mode %s" % mode)

    monkeypatch.setattr(_wandb_read, "_fetch", never)  # would fail the test if called
    settings.wandb_mode = mode
    assert fetch_runs(settings, [("allocated_hotkeys", {})]) == ({}, None)


def test_fetch_runs_gives_up_at_wandb_timeout(settings, tmp_path, monkeypatch):
    pid_file = tmp_path / "reader.pid"

    def hang(_settings, _queries):  # stands in for wandb.Api without a network: it never answers
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)

    monkeypatch.setattr(_wandb_read, "_fetch", hang)
    started = time.monotonic()
    found, error = fetch_runs(online(settings, timeout=1), [("allocated_hotkeys", {})])
    assert time.monotonic() - started < 3
    assert (found, error) == ({}, "W&B did not answer within 1 s")
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_fetch_runs_reports_a_failing_reader(settings, monkeypatch):
    def fail(_settings, _queries):  # stands in for wandb raising, e.g. a wrong API key
        raise RuntimeError("permission denied")

    monkeypatch.setattr(_wandb_read, "_fetch", fail)
    assert fetch_runs(online(settings), []) == ({}, "W&B could not be read: RuntimeError: permission denied")


def test_fetch_runs_returns_what_the_child_read(settings, monkeypatch):
    def read(_settings, queries):  # stands in for wandb: one run per query, labelled
        return dict((label, [{"id": label, "filters": filters}]) for label, filters in queries)

    monkeypatch.setattr(_wandb_read, "_fetch", read)
    queries = [("allocated_hotkeys", validator_filters(27, "allocated_hotkeys")), ("miners", miner_filters(27))]
    found, error = fetch_runs(online(settings, timeout=10), queries)
    assert error is None
    assert found == {"allocated_hotkeys": [{"id": "allocated_hotkeys", "filters": queries[0][1]}],
                     "miners": [{"id": "miners", "filters": queries[1][1]}]}


def test_a_failed_read_still_judges_to_nothing_and_reports_the_error(keys, settings, monkeypatch):
    monkeypatch.setattr(_wandb_read, "_fetch", lambda _s, _q: time.sleep(60))  # a hung W&B
    runs = SubnetRuns(online(settings), metagraph(keys), THRESHOLD, None, verify_signature).read(miners=True)
    report = runs.report()
    assert report["mode"] == "online" and report["read"] is False
    assert report["error"] == "W&B did not answer within 1 s"
    assert runs.holders() == {} and runs.miner_specs == {}


# -- the wallet's public address and signature checks (_network) -----------------------------

def test_hotkey_address_reads_the_public_file(tmp_path, keys):
    write_wallet(tmp_path, keys["own"], name="val", hotkey="hk1", key=False)
    assert hotkey_address("val", "hk1", str(tmp_path)) == keys["own"].ss58_address


def test_hotkey_address_prefers_the_public_file_to_the_key_file(tmp_path, keys):
    directory = write_wallet(tmp_path, keys["own"], name="val", hotkey="hk1")
    with open(os.path.join(directory, "hk1"), "w") as handle:
        json.dump({"ss58Address": keys["big"].ss58_address, "secretPhrase": "x"}, handle)
    assert hotkey_address("val", "hk1", str(tmp_path)) == keys["own"].ss58_address


def test_hotkey_address_falls_back_to_the_key_file(tmp_path, keys):
    write_wallet(tmp_path, keys["own"], name="val", hotkey="hk1", pub=False)
    assert hotkey_address("val", "hk1", str(tmp_path)) == keys["own"].ss58_address
    # A public file that is not JSON does not hide the key file.
    directory = os.path.join(str(tmp_path), "val", "hotkeys")
    with open(os.path.join(directory, "hk1pub.txt"), "w") as handle:
        handle.write("not json")
    assert hotkey_address("val", "hk1", str(tmp_path)) == keys["own"].ss58_address


def test_hotkey_address_is_none_when_missing_or_unreadable(tmp_path, keys):
    assert hotkey_address("nobody", "default", str(tmp_path)) is None
    directory = write_wallet(tmp_path, keys["own"], name="val", hotkey="hk1", pub=False, key=False)
    assert hotkey_address("val", "hk1", str(tmp_path)) is None
    with open(os.path.join(directory, "hk1pub.txt"), "w") as handle:
        json.dump(["not", "an", "object"], handle)
    with open(os.path.join(directory, "hk1"), "w") as handle:
        json.dump({"ss58Address": ""}, handle)
    assert hotkey_address("val", "hk1", str(tmp_path)) is None


def test_hotkey_address_expands_the_home_directory(tmp_path, keys, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    write_wallet(tmp_path / "wallets", keys["own"], name="val", hotkey="hk1")
    assert hotkey_address("val", "hk1", "~/wallets") == keys["own"].ss58_address


def test_hotkey_address_does_not_import_bittensor(tmp_path, keys):
    write_wallet(tmp_path / "wallets", keys["own"], name="val", hotkey="hk1")
    script = (
        "import json, sys\n"
        "from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import hotkey_address\n"
        "address = hotkey_address('val', 'hk1', sys.argv[1])\n"
        "print(json.dumps([address, sorted(m for m in sys.modules if m.split('.')[0] in "
        "('bittensor', 'bittensor_wallet', 'wandb'))]))\n"
    )
    done = subprocess.run([PYTHON, "-c", script, str(tmp_path / "wallets")], env=subprocess_env(tmp_path),
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == [keys["own"].ss58_address, []]


def test_verify_signature(keys):
    message = b"\x01" * 32
    signature = keys["big"].sign(message)
    assert verify_signature(keys["big"].ss58_address, message, signature) is True
    assert verify_signature(keys["small"].ss58_address, message, signature) is False
    assert verify_signature(keys["big"].ss58_address, b"\x02" * 32, signature) is False
    assert verify_signature(keys["big"].ss58_address, message, signature[:-1] + bytes([signature[-1] ^ 1])) is False


@pytest.mark.parametrize("address", ["", "not-an-address", "5" * 48, None])
def test_verify_signature_with_a_malformed_address_is_false(keys, address):
    message = b"\x01" * 32
    assert verify_signature(address, message, keys["big"].sign(message)) is False


def test_verify_signature_with_a_malformed_signature_is_false(keys):
    assert verify_signature(keys["big"].ss58_address, b"\x01" * 32, b"short") is False
