# -*- coding: utf-8 -*-
# Bad input to nicompute_allocate fails with a clear message before anything changes:
# the database file is neither created nor modified, and no miner is contacted.

from __future__ import annotations

import hashlib
import os
import sqlite3

import pytest

from ansible_collections.neuralinternet.compute.plugins.modules import nicompute_allocate

HOTKEY = "5CLkGR5xW6HpbCLFLMy5NWfSrRxohkzBLwkW4c9HvKKvndme"


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "database.db"
    connection = sqlite3.connect(str(path))
    connection.execute("CREATE TABLE allocation (id INTEGER PRIMARY KEY, hotkey TEXT UNIQUE, details TEXT)")
    connection.execute("INSERT INTO allocation (hotkey, details) VALUES ('x', '{}')")
    connection.commit()
    connection.close()
    return path


def digest(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("extra, message", [
    ({"hotkey": "5notanaddress"}, "not a valid ss58 address"),
    ({"timeline": 0}, "timeline must be at least 1 and at most 36500, got 0"),
    ({"timeline": -3}, "timeline must be at least 1"),
    ({"timeline": 36501}, "timeline must be at least 1 and at most 36500"),
    ({"timeline": 9223372036854775808}, "timeline must be at least 1 and at most 36500"),
    ({"gpu_type": "h100", "gpu_count": 0}, "gpu_count"),
    ({"gpu_memory": -80}, "gpu_memory"),
    ({"hotkey": HOTKEY, "gpu_type": "h100"}, "mutually exclusive"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"check_timeout": 0}, "check_timeout must be greater than 0"),
    ({"check_timeout": float("nan")}, "check_timeout must be a finite number"),
    ({"check_timeout": "nan"}, "check_timeout must be a finite number"),
    ({"allocate_timeout": "inf"}, "allocate_timeout must be a finite number"),
    ({"allocate_timeout": 1e9}, "allocate_timeout must be greater than 0 and at most 3600"),
    ({"gpu_memory": "nan"}, "gpu_memory must be a finite number"),
    ({"ram": float("inf")}, "ram must be a finite number"),
    ({"max_attempts": 100000}, "max_attempts must be at least 1 and at most 256"),
    ({"netuid": -1}, "netuid must be at least 0"),
    ({"wandb_timeout": 0}, "wandb_timeout must be at least 1"),
    ({"ssh_public_key": "/no/such/key.pub"}, "ssh_public_key"),
])
def test_bad_input_fails_before_any_change(run_module, db, tmp_path, extra, message):
    before = digest(db)
    args = {"name": "box", "db_path": str(db), "wallet_path": str(tmp_path / "wallets"),
            "metagraph_file": str(tmp_path / "metagraph.json"), "wandb_mode": "disabled"}
    args.update(extra)
    result, failed = run_module(nicompute_allocate, args)
    assert failed
    assert message in result["msg"]
    assert digest(db) == before


def test_a_metagraph_file_that_is_missing_or_a_directory_is_named(run_module, db, tmp_path):
    before = digest(db)
    for path, message in ((tmp_path / "absent.json", "does not exist"), (tmp_path, "is not a regular file")):
        result, failed = run_module(nicompute_allocate, {
            "name": "box", "db_path": str(db), "wallet_path": str(tmp_path / "wallets"),
            "metagraph_file": str(path), "wandb_mode": "disabled"})
        assert failed
        assert result["msg"] == "metagraph_file %s %s" % (path, message)
    assert digest(db) == before


def test_missing_wallet_is_reported_and_no_database_is_created(run_module, tmp_path):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import Neuron, write_snapshot

    snapshot = tmp_path / "metagraph.json"
    write_snapshot(str(snapshot), [Neuron(1, HOTKEY, "ck", 0.0, 0.0, "127.0.0.9", 8091)], "local", 27)
    db = tmp_path / "new.db"
    # Even with db_create: the wallet is checked before the database is opened.
    result, failed = run_module(nicompute_allocate, {
        "name": "box", "db_path": str(db), "db_create": True, "wallet_path": str(tmp_path / "wallets"),
        "wallet_name": "absent", "metagraph_file": str(snapshot), "wandb_mode": "disabled"})
    assert failed
    assert "wallet 'absent' does not exist" in result["msg"]
    assert not os.path.exists(db)


def test_db_path_falls_back_to_upstream_environment_variable(run_module, monkeypatch, tmp_path):
    monkeypatch.delenv("NICOMPUTE_DB_PATH", raising=False)
    monkeypatch.setenv("SQLITE_DB_PATH", str(tmp_path / "from-env.db"))
    result, failed = run_module(nicompute_allocate, {"name": "box", "timeline": 0})
    # The fallback satisfied the required option: the failure is about the timeline.
    assert failed and "timeline" in result["msg"]
