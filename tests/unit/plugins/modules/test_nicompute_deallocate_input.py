# -*- coding: utf-8 -*-
# Bad input to nicompute_deallocate fails with a clear message before anything changes:
# no database is created or modified and no miner is contacted.

from __future__ import annotations

import hashlib

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import Neuron, write_snapshot
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore
from ansible_collections.neuralinternet.compute.plugins.modules import nicompute_deallocate

HOTKEY = "5CLkGR5xW6HpbCLFLMy5NWfSrRxohkzBLwkW4c9HvKKvndme"


@pytest.fixture
def setup(tmp_path):
    db = tmp_path / "database.db"
    AllocationStore(str(db), create=True).close()
    snapshot = tmp_path / "metagraph.json"
    write_snapshot(str(snapshot), [Neuron(1, HOTKEY, "ck", 0.0, 0.0, "127.0.0.9", 8091)], "local", 27)
    return {"db_path": str(db), "metagraph_file": str(snapshot), "wallet_path": str(tmp_path / "wallets"),
            "wandb_mode": "disabled"}


def digest(path):
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()


@pytest.mark.parametrize("extra, message", [
    ({"names": ""}, "names has an empty entry"),
    ({"names": ",,,"}, "names has an empty entry"),
    ({"names": ["box", "  "]}, "names has an empty entry"),
    ({"hotkeys": ""}, "hotkeys has an empty entry"),
    ({"names": []}, "nothing to release: give at least one hotkey or name"),
    ({"names": "box", "force": "maybe"}, "force"),
    ({"names": "box", "timeout": "nan"}, "timeout must be a finite number"),
    ({"names": "box", "timeout": 0}, "timeout must be greater than 0"),
    ({"hotkeys": "5notanaddress"}, "not a valid ss58 address"),
])
def test_bad_input_fails_before_any_change(run_module, setup, extra, message):
    before = digest(setup["db_path"])
    result, failed = run_module(nicompute_deallocate, dict(setup, **extra))
    assert failed
    assert message in result["msg"]
    assert digest(setup["db_path"]) == before


def test_a_missing_database_is_named_and_not_created(run_module, setup, tmp_path):
    typo = tmp_path / "typo" / "x.db"
    result, failed = run_module(nicompute_deallocate, dict(setup, names="mybox", db_path=str(typo)))
    assert failed
    assert result["msg"].startswith("database %s does not exist" % typo)
    assert not typo.parent.exists()


def test_a_missing_snapshot_is_named(run_module, setup, tmp_path):
    missing = tmp_path / "gone.json"
    result, failed = run_module(nicompute_deallocate, dict(setup, hotkeys=HOTKEY, metagraph_file=str(missing)))
    assert failed
    assert result["msg"] == "metagraph_file %s does not exist" % missing


def test_an_absent_name_is_reported_not_failed(run_module, setup):
    result, failed = run_module(nicompute_deallocate, dict(setup, names="nobox"))
    assert not failed and not result["changed"]
    assert result["absent"] == ["nobox"]
