# -*- coding: utf-8 -*-
# Bad input to nicompute_deallocate fails with a clear message before anything changes:
# no database is created or modified and no miner is contacted.

from __future__ import annotations

import pytest

from ansible_collections.neuralinternet.compute.plugins.modules import nicompute_deallocate
from ansible_collections.neuralinternet.compute.tests.unit.plugins.modules.quiet_network import MINER_HOTKEY, digest


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
def test_bad_input_fails_before_any_change(run_module, quiet_network, extra, message):
    before = digest(quiet_network["db_path"])
    result, failed = run_module(nicompute_deallocate, dict(quiet_network, **extra))
    assert failed
    assert message in result["msg"]
    assert digest(quiet_network["db_path"]) == before


def test_a_missing_database_is_named_and_not_created(run_module, quiet_network, tmp_path):
    typo = tmp_path / "typo" / "x.db"
    result, failed = run_module(nicompute_deallocate, dict(quiet_network, names="mybox", db_path=str(typo)))
    assert failed
    assert result["msg"].startswith("database %s does not exist" % typo)
    assert not typo.parent.exists()


def test_a_missing_snapshot_is_named(run_module, quiet_network, tmp_path):
    missing = tmp_path / "gone.json"
    result, failed = run_module(nicompute_deallocate, dict(quiet_network, hotkeys=MINER_HOTKEY, metagraph_file=str(missing)))
    assert failed
    assert result["msg"] == "metagraph_file %s does not exist" % missing


def test_an_absent_name_is_reported_not_failed(run_module, quiet_network):
    result, failed = run_module(nicompute_deallocate, dict(quiet_network, names="nobox"))
    assert not failed and not result["changed"]
    assert result["absent"] == ["nobox"]
