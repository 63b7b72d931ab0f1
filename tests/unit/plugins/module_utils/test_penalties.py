# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Penalties (p_hotkey, dp_hotkey, list_p): input checks, the penalty task end to end on a real
# database file and metagraph snapshot with W&B disabled, and the listing of ours and of what
# other validators publish, judged with real sr25519 signatures. W&B cannot run here: where
# other validators' runs matter, _wandb_read.fetch_runs is replaced, as the test says.

from __future__ import annotations

import getpass
import json
import socket
import subprocess
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _wandb_read
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._network import verify_signature
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._penalties import (
    MAX_REASON,
    check_reason,
    penalize,
    penalty_targets,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._penalty_info import (
    our_penalties,
    penalty_info,
    published_penalties,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore
from ansible_collections.neuralinternet.compute.plugins.module_utils._subnet_runs import SubnetRuns
from ansible_collections.neuralinternet.compute.plugins.module_utils._wandb_read import validator_filters

from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.subnet_builders import (
    CREDENTIALS,
    HEAVY_PROBE,
    PYTHON,
    REGKEY,
    file_state,
    neuron,
    new_keypair,
    signed_run,
    snapshot_file,
    specs,
    subprocess_env,
    table_names,
    upstream_database,
    write_wallet,
)

NAMES = ("spec_only", "graph_only", "both", "held", "stranger", "big", "small", "own", "forger")


@pytest.fixture(scope="module")
def keys():
    return dict((name, new_keypair()) for name in NAMES)


@pytest.fixture(scope="module")
def hk(keys):
    return dict((name, keypair.ss58_address) for name, keypair in keys.items())


# -- input ------------------------------------------------------------------------------------

def test_targets_are_stripped_and_deduplicated_in_order(hk):
    assert penalty_targets([" %s " % hk["both"], hk["held"], hk["both"]]) == [hk["both"], hk["held"]]


@pytest.mark.parametrize("hotkeys", [None, [], ["   "], [None], [7]])
def test_no_target_or_an_empty_entry_is_refused(hotkeys):
    with pytest.raises(BadInput) as caught:
        penalty_targets(hotkeys)
    assert caught.value.details["option"] == "hotkeys"


def test_an_empty_entry_among_good_ones_is_refused(hk):
    with pytest.raises(BadInput) as caught:
        penalty_targets([hk["both"], ""])
    assert caught.value.details == {"option": "hotkeys"}
    assert "empty entry" in caught.value.message


def test_malformed_addresses_are_named(hk):
    typo = hk["both"][:-1] + ("A" if hk["both"][-1] != "A" else "B")
    with pytest.raises(BadInput) as caught:
        penalty_targets([hk["held"], "hk-not-an-address", typo])
    assert caught.value.details == {"option": "hotkeys", "malformed": ["hk-not-an-address", typo]}
    assert "hk-not-an-address, %s" % typo in caught.value.message
    assert hk["held"] not in caught.value.message


def test_reason_is_one_short_line():
    assert check_reason(None) is None
    assert check_reason("   ") is None
    assert check_reason("  failed proof of GPU ") == "failed proof of GPU"
    assert check_reason("x" * MAX_REASON) == "x" * MAX_REASON


@pytest.mark.parametrize("reason", ["first line\nsecond line", "tab\there", "x" * (MAX_REASON + 1), 42, ["a"]])
def test_a_multiline_long_or_non_text_reason_is_refused(reason):
    with pytest.raises(BadInput) as caught:
        check_reason(reason)
    assert caught.value.details == {"option": "reason"}


# -- penalize end to end ----------------------------------------------------------------------

@pytest.fixture
def world(tmp_path, hk):
    """A database with specs for spec_only, both and held (held by allocation 'box'); a metagraph with
    graph_only, both and held; W&B disabled."""
    db = str(tmp_path / "database.db")
    with AllocationStore(db, create=True) as store:
        for name in ("spec_only", "both", "held"):
            store._connection.execute("INSERT INTO miner_details (hotkey, details) VALUES (?, ?)",
                                      (hk[name], json.dumps(specs("NVIDIA L4", 23034, 1))))
        store.claim(name="box", hotkey=hk["held"], uid=4, ip="127.0.0.14", regkey=REGKEY, ssh_key="ssh-ed25519 A x",
                    resource="nvidia l4", timeline=1, owner=Owner.current(), lease_seconds=60)
        store.activate(hk["held"], REGKEY, CREDENTIALS)
    snapshot = snapshot_file(tmp_path / "metagraph.json", [
        neuron(2, hk["graph_only"]), neuron(3, hk["both"]), neuron(4, hk["held"]),
        neuron(8, hk["big"], stake=5000.0, serving=False), neuron(9, hk["small"], stake=100.0, serving=False),
        neuron(0, hk["own"], stake=9000.0, serving=False)])
    settings = Settings(db_path=db, metagraph_file=snapshot, wandb_mode="disabled", wallet_name="validator",
                        wallet_hotkey="default", wallet_path=str(tmp_path / "wallets"), wandb_dir=str(tmp_path / "wandb"))
    return {"db": db, "settings": settings, "tmp": tmp_path}


def penalties(db):
    with AllocationStore(db, reader=True) as store:
        return store.penalties()


def test_present_adds_with_reason_author_and_time(world, hk):
    started = time.time()
    result = penalize(world["settings"], [hk["both"], hk["graph_only"]], reason="failed proof of GPU")
    assert result["changed"] is True
    assert result["added"] == sorted([hk["both"], hk["graph_only"]]) and result["updated"] == []
    assert result["removed"] == [] and result["penalized"] == sorted([hk["both"], hk["graph_only"]])
    assert result["diff"] == {"before": {"penalized": []}, "after": {"penalized": result["penalized"]}}
    assert result["wandb"] == {"mode": "disabled", "published": False, "error": None}
    assert "warnings" not in result
    stored = penalties(world["db"])
    assert sorted(stored) == result["penalized"]
    entry = stored[hk["both"]]
    assert entry["reason"] == "failed proof of GPU"
    assert entry["by"] == "%s@%s" % (getpass.getuser(), socket.gethostname())
    assert started <= entry["at"] <= time.time()
    assert entry["source"] == "neuralinternet.compute"


def test_a_second_identical_run_changes_nothing(world, hk):
    penalize(world["settings"], [hk["both"]], reason="slow")
    before = file_state(world["db"])
    again = penalize(world["settings"], [hk["both"]], reason="slow")
    assert again["changed"] is False and again["added"] == [] and again["updated"] == []
    assert again["diff"]["before"] == again["diff"]["after"]
    # Without a reason an existing penalty keeps its reason.
    assert penalize(world["settings"], [hk["both"]])["changed"] is False
    assert file_state(world["db"]) == before


def test_another_reason_updates_the_penalty(world, hk):
    penalize(world["settings"], [hk["both"]], reason="slow")
    first = penalties(world["db"])[hk["both"]]
    result = penalize(world["settings"], [hk["both"], hk["spec_only"]], reason="offline for days")
    assert result["changed"] is True
    assert result["updated"] == [hk["both"]] and result["added"] == [hk["spec_only"]]
    now = penalties(world["db"])[hk["both"]]
    assert now["reason"] == "offline for days" and now["at"] >= first["at"]


def test_absent_removes_and_is_idempotent(world, hk):
    penalize(world["settings"], [hk["both"], hk["spec_only"]], reason="slow")
    result = penalize(world["settings"], [hk["both"], hk["stranger"]], state="absent")
    assert result["changed"] is True and result["removed"] == [hk["both"]]
    assert result["penalized"] == [hk["spec_only"]]
    assert result["diff"] == {"before": {"penalized": sorted([hk["both"], hk["spec_only"]])},
                              "after": {"penalized": [hk["spec_only"]]}}
    assert sorted(penalties(world["db"])) == [hk["spec_only"]]
    again = penalize(world["settings"], [hk["both"]], state="absent")
    assert again["changed"] is False and again["removed"] == []


def test_a_miner_known_only_by_its_specs_or_only_by_the_metagraph_can_be_penalized(world, hk):
    result = penalize(world["settings"], [hk["spec_only"], hk["graph_only"]])
    assert result["added"] == sorted([hk["spec_only"], hk["graph_only"]])
    assert penalties(world["db"])[hk["spec_only"]]["reason"] is None


def test_the_metagraph_is_read_only_when_the_specs_do_not_know_a_hotkey(world, hk):
    with open(world["settings"].metagraph_file, "w") as handle:
        handle.write("{broken")
    assert penalize(world["settings"], [hk["spec_only"], hk["both"]])["changed"] is True
    with pytest.raises(BadInput, match="malformed"):
        penalize(world["settings"], [hk["graph_only"]])


def test_an_unknown_hotkey_is_refused_by_name_and_nothing_is_written(world, hk):
    penalize(world["settings"], [hk["both"]], reason="slow")
    before, tables = file_state(world["db"]), table_names(world["db"])
    with pytest.raises(BadInput) as caught:
        penalize(world["settings"], [hk["spec_only"], hk["stranger"]], reason="slow")
    assert caught.value.details == {"unknown": [hk["stranger"]]}
    assert hk["stranger"] in caught.value.message and "nothing was changed" in caught.value.message
    assert hk["spec_only"] not in caught.value.message
    assert file_state(world["db"]) == before and table_names(world["db"]) == tables


def test_check_mode_reports_the_change_and_writes_nothing(world, hk):
    penalize(world["settings"], [hk["both"]], reason="slow")
    before = file_state(world["db"])
    planned = penalize(world["settings"], [hk["graph_only"]], reason="slow", check_mode=True)
    assert planned["changed"] is True and planned["added"] == [hk["graph_only"]]
    assert planned["diff"] == {"before": {"penalized": [hk["both"]]},
                               "after": {"penalized": sorted([hk["both"], hk["graph_only"]])}}
    assert "wandb" not in planned
    removal = penalize(world["settings"], [hk["both"]], state="absent", check_mode=True)
    assert removal["changed"] is True and removal["diff"]["after"] == {"penalized": []}
    assert file_state(world["db"]) == before
    assert sorted(penalties(world["db"])) == [hk["both"]]


def test_check_mode_on_a_database_the_validator_made_writes_nothing(tmp_path, hk):
    db = upstream_database(tmp_path / "database.db", miner_details=[(hk["both"], specs("NVIDIA L4", 23034, 1))])
    before, tables = file_state(db), table_names(db)
    settings = Settings(db_path=db, wandb_mode="disabled", wallet_path=str(tmp_path / "w"))
    planned = penalize(settings, [hk["both"]], reason="slow", check_mode=True)
    assert planned["changed"] is True and planned["added"] == [hk["both"]]
    # Check mode promises no write: not even this collection's bookkeeping tables.
    assert table_names(db) == tables
    assert file_state(db) == before


def test_an_unknown_hotkey_on_a_database_the_validator_made_writes_nothing(tmp_path, hk):
    # Fails (reported): penalize opens the store for writing, which creates this collection's two
    # bookkeeping tables, before it refuses the unknown hotkey with "nothing was changed".
    db = upstream_database(tmp_path / "database.db", miner_details=[(hk["both"], specs("NVIDIA L4", 23034, 1))])
    before, tables = file_state(db), table_names(db)
    snapshot = snapshot_file(tmp_path / "metagraph.json", [neuron(3, hk["both"])])
    settings = Settings(db_path=db, metagraph_file=snapshot, wandb_mode="disabled", wallet_path=str(tmp_path / "w"))
    with pytest.raises(BadInput, match="nothing was changed"):
        penalize(settings, [hk["stranger"]])
    assert table_names(db) == tables
    assert file_state(db) == before


def test_a_reason_with_state_absent_is_refused(world, hk):
    before = file_state(world["db"])
    with pytest.raises(BadInput) as caught:
        penalize(world["settings"], [hk["both"]], state="absent", reason="slow")
    assert caught.value.details == {"option": "reason"}
    assert file_state(world["db"]) == before


@pytest.mark.parametrize("state", ["gone", None, "Present"])
def test_an_unknown_state_is_refused(world, hk, state):
    with pytest.raises(BadInput) as caught:
        penalize(world["settings"], [hk["both"]], state=state)
    assert caught.value.details == {"option": "state"}


def test_penalizing_a_held_miner_warns_that_it_stays_allocated(world, hk):
    result = penalize(world["settings"], [hk["held"], hk["both"]], reason="abuse")
    assert result["warnings"] == ["miner %s is held by allocation box; a penalty does not release it "
                                  "(nicompute_deallocate does)" % hk["held"]]
    # The allocation is untouched.
    with AllocationStore(world["db"], reader=True) as store:
        assert store.get(hotkey=hk["held"]).state == "active"
    # No new penalty, no warning.
    assert "warnings" not in penalize(world["settings"], [hk["held"]])


def test_penalizing_a_miner_held_by_an_upstream_cli_allocation_warns_too(world, hk):
    with AllocationStore(world["db"]) as store:
        store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, '{}')", (hk["both"],))
    warnings = penalize(world["settings"], [hk["both"]], check_mode=True)["warnings"]
    assert warnings == ["miner %s is held by allocation of the upstream CLI; a penalty does not release it "
                        "(nicompute_deallocate does)" % hk["both"]]


# -- listing: ours ----------------------------------------------------------------------------

def test_penalty_info_lists_ours_with_age(world, hk):
    with AllocationStore(world["db"]) as store:
        store.set_penalties(add={hk["both"]: {"reason": "slow", "by": "ops@host", "at": time.time() - 100},
                                 hk["spec_only"]: {"reason": "old", "at": "yesterday"}})
        store._connection.execute("INSERT INTO blacklist (hotkey, details) VALUES (?, NULL)", (hk["graph_only"],))
    before = file_state(world["db"])
    result = penalty_info(world["settings"])
    assert set(result) == {"changed", "penalties", "others", "wandb"}
    rows = dict((row["hotkey"], row) for row in result["penalties"])
    assert sorted(rows) == sorted([hk["both"], hk["spec_only"], hk["graph_only"]])
    both = rows[hk["both"]]
    assert (both["uid"], both["reason"], both["by"]) == (3, "slow", "ops@host")
    assert 100 <= both["age"] < 130
    # A time that is not a number, and an upstream row without details, have no age.
    assert (rows[hk["spec_only"]]["uid"], rows[hk["spec_only"]]["at"], rows[hk["spec_only"]]["age"]) == (None, None, None)
    assert rows[hk["graph_only"]] == {"hotkey": hk["graph_only"], "uid": 2, "reason": None, "by": None, "at": None,
                                      "age": None}
    assert result["others"] == []
    assert result["wandb"] == {"mode": "disabled", "read": False, "error": None, "validator_runs": 0,
                               "miner_runs": 0, "skipped_runs": []}
    assert "warnings" not in result
    assert file_state(world["db"]) == before


def test_our_penalties_age_is_never_negative(world, hk):
    with AllocationStore(world["db"]) as store:
        store.set_penalties(add={hk["both"]: {"at": 2000.0}})
        assert our_penalties(store, {}, 1000.0)[0]["age"] == 0
        assert our_penalties(store, {}, 2500.5)[0]["age"] == 500


# -- listing: what other validators publish ------------------------------------------------------

def other_runs(keys, hk):
    return [signed_run(keys["big"], "big00001", penalized_hotkeys=[hk["both"], hk["graph_only"]]),
            signed_run(keys["small"], "sml00001", penalized_hotkeys=[hk["both"], hk["spec_only"]]),
            signed_run(keys["own"], "own00001", penalized_hotkeys=[hk["held"], hk["both"]]),
            signed_run(keys["forger"], "frg00001", hotkey=hk["big"], penalized_hotkeys=[hk["stranger"]])]


def judged(settings, keys, hk, monkeypatch):
    # _wandb_read.fetch_runs replaced: W&B cannot run here; the runs are judged for real. W&B is
    # read only when on.
    settings.wandb_mode, settings.wandb_api_key = "online", "k" * 40
    monkeypatch.setattr(_wandb_read, "fetch_runs",
                        lambda _settings, queries: (dict((label, other_runs(keys, hk)) for label, _f in queries), None))
    neurons = {hk["big"]: neuron(8, hk["big"], stake=5000.0), hk["small"]: neuron(9, hk["small"], stake=100.0),
               hk["own"]: neuron(0, hk["own"], stake=9000.0), hk["both"]: neuron(3, hk["both"])}
    runs = SubnetRuns(settings, neurons, 1024.0, hk["own"], verify_signature).read(lists=("penalized_hotkeys",))
    return runs, neurons


def test_published_penalties_merge_sources_across_runs(world, keys, hk, monkeypatch):
    runs, neurons = judged(world["settings"], keys, hk, monkeypatch)
    rows = published_penalties(runs, neurons)
    assert [row["hotkey"] for row in rows] == sorted([hk["both"], hk["graph_only"], hk["spec_only"]])
    by_hotkey = dict((row["hotkey"], row) for row in rows)
    both = by_hotkey[hk["both"]]
    assert both["uid"] == 3 and both["honoured"] is True
    assert sorted((source["validator"], source["run_id"], source["stake"], source["honoured"], source["own"])
                  for source in both["sources"]) == sorted([(hk["big"], "big00001", 5000.0, True, False),
                                                            (hk["small"], "sml00001", 100.0, False, False)])
    assert all(source["signature_valid"] is True for source in both["sources"])
    # Honoured when any source is; a low-stake validator alone is not.
    assert by_hotkey[hk["graph_only"]]["honoured"] is True and by_hotkey[hk["graph_only"]]["uid"] is None
    assert by_hotkey[hk["spec_only"]]["honoured"] is False
    # Our own run and the forged one list nobody here.
    assert hk["held"] not in by_hotkey and hk["stranger"] not in by_hotkey


def test_penalty_info_with_wandb_lists_the_others(world, keys, hk, monkeypatch):
    write_wallet(world["tmp"] / "wallets", keys["own"], name="validator", hotkey="default")
    asked = []

    def fetch(_settings, queries):  # stands in for W&B, which cannot run here
        asked.append(queries)
        return dict((label, other_runs(keys, hk)) for label, _filters in queries), None

    monkeypatch.setattr(_wandb_read, "fetch_runs", fetch)
    settings = world["settings"]
    settings.wandb_mode, settings.wandb_api_key = "online", "k" * 40
    result = penalty_info(settings)
    assert asked == [[("penalized_hotkeys", validator_filters(27, "penalized_hotkeys"))]]
    others = dict((row["hotkey"], row) for row in result["others"])
    # The wallet's public file names our hotkey: our own run is left out of "others".
    assert sorted(others) == sorted([hk["both"], hk["graph_only"], hk["spec_only"]])
    assert others[hk["both"]]["uid"] == 3 and others[hk["both"]]["honoured"] is True
    assert result["wandb"]["read"] is True and result["wandb"]["validator_runs"] == 3
    assert [item["run_id"] for item in result["wandb"]["skipped_runs"]] == ["frg00001"]


def test_penalty_info_warns_when_wandb_was_not_read(world, monkeypatch):
    monkeypatch.setattr(_wandb_read, "fetch_runs", lambda _s, _q: ({}, "W&B did not answer within 30 s"))  # no W&B here
    settings = world["settings"]
    settings.wandb_mode, settings.wandb_api_key = "online", "k" * 40
    result = penalty_info(settings)
    assert result["warnings"] == ["W&B did not answer within 30 s: other validators' penalized lists are not shown"]
    assert result["others"] == [] and result["wandb"]["error"] == "W&B did not answer within 30 s"


def test_penalty_info_refuses_a_bad_stake_threshold(world):
    with pytest.raises(BadInput) as caught:
        penalty_info(world["settings"], min_validator_stake=float("nan"))
    assert caught.value.details["option"] == "min_validator_stake"


IMPORT_PROBE = """
import json, sys
from ansible_collections.neuralinternet.compute.plugins.module_utils._penalty_info import penalty_info
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
settings = Settings(db_path=sys.argv[1], metagraph_file=sys.argv[2], wandb_mode="disabled", wallet_path=sys.argv[3])
print(json.dumps(len(penalty_info(settings)["penalties"])))
""" + HEAVY_PROBE


def test_penalty_info_imports_neither_the_client_nor_cryptography(world, hk):
    settings = world["settings"]
    penalize(settings, [hk["both"]], reason="probe")
    done = subprocess.run([PYTHON, "-c", IMPORT_PROBE, settings.db_path, settings.metagraph_file, settings.wallet_path],
                          env=subprocess_env(world["tmp"]), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    listed, heavy = [json.loads(line) for line in done.stdout.strip().splitlines()[-2:]]
    assert listed == 1 and heavy == []
