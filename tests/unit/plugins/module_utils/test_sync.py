# -*- coding: utf-8 -*-
# W&B publication with the real wandb client in offline mode (the W&B service cannot be
# reached from here), signed with a real sr25519 hotkey.

from __future__ import annotations

import hashlib
import os
import socket
import stat
import time

import pytest
from bittensor_wallet import Keypair

from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore
from ansible_collections.neuralinternet.compute.plugins.module_utils._sync import WandbPublisher, run_signature

from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.wandb_offline_log import offline_run_config


@pytest.fixture
def keypair():
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


@pytest.fixture
def store(tmp_path):
    store = AllocationStore(str(tmp_path / "database.db"), create=True)
    store._connection.execute("INSERT INTO allocation (hotkey, details) VALUES ('hk-b', '{}'), ('hk-a', '{}')")
    store.penalize("hk-bad", {"reason": "test"})
    return store


def test_signature_verifies_over_sha256_of_run_id(keypair):
    signature = run_signature(keypair.sign, "abc123")
    assert not signature.startswith("0x")
    assert keypair.verify(hashlib.sha256(b"abc123").digest(), bytes.fromhex(signature))


def test_disabled_mode_publishes_nothing(store, keypair):
    publisher = WandbPublisher(Settings(db_path=store.path, wandb_mode="disabled"), keypair.ss58_address,
                               keypair.sign, store)
    assert publisher.publish() == {"mode": "disabled", "published": False, "error": None}
    assert store.wandb_run_id(keypair.ss58_address) is None


def test_auto_mode_without_key_is_disabled():
    assert Settings(db_path="x", wandb_mode="auto").effective_wandb_mode == "disabled"
    assert Settings(db_path="x", wandb_mode="auto", wandb_api_key="k").effective_wandb_mode == "online"


def test_offline_run_carries_the_database_lists_and_a_valid_signature(store, keypair, tmp_path, monkeypatch):
    playbook_dir = tmp_path / "playbooks"
    playbook_dir.mkdir()
    monkeypatch.chdir(playbook_dir)
    wandb_dir = tmp_path / "cache" / "wandb"
    settings = Settings(db_path=store.path, wandb_mode="offline", wandb_timeout=60, wandb_dir=str(wandb_dir))
    result = WandbPublisher(settings, keypair.ss58_address, keypair.sign, store).publish()
    assert result["error"] is None and result["published"] is True
    run_id = store.wandb_run_id(keypair.ss58_address)
    assert run_id == result["run_id"]
    # The run's files are under wandb_dir, none in the working directory (a playbook's).
    assert list(playbook_dir.iterdir()) == []
    assert stat.S_IMODE(os.stat(wandb_dir).st_mode) == 0o700
    # Read at once: publish() returns only after wandb's service process wrote and exited.
    config = offline_run_config(str(wandb_dir), run_id)
    assert config["allocated_hotkeys"] == ["hk-a", "hk-b"]
    assert config["penalized_hotkeys"] == ["hk-bad"]
    assert config["hotkey"] == keypair.ss58_address and config["role"] == "validator"
    assert config["config"] == {"netuid": 27}
    assert keypair.verify(hashlib.sha256(run_id.encode()).digest(), bytes.fromhex(config["signature"]))


@pytest.fixture
def silent_server():
    """A loopback TCP server that accepts connections and never answers (a hung W&B)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield "http://127.0.0.1:%d" % server.getsockname()[1]
    server.close()


def test_a_publication_that_overruns_is_abandoned(store, keypair, tmp_path, monkeypatch, silent_server):
    monkeypatch.setenv("WANDB_BASE_URL", silent_server)
    settings = Settings(db_path=store.path, wandb_mode="online", wandb_api_key="x" * 40, wandb_timeout=2,
                        wandb_dir=str(tmp_path / "wandb"))
    started = time.monotonic()
    result = WandbPublisher(settings, keypair.ss58_address, keypair.sign, store).publish()
    assert result["published"] is False
    assert result["error"] == "W&B did not answer within 2 s"
    assert time.monotonic() - started < 10
