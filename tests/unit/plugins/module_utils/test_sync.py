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
    store.set_penalties(add={"hk-bad": {"reason": "test"}})
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


# -- online: the real wandb client against localnet's W&B stand-in (the hosted service cannot be
# reached from here; the stand-in serves the public API's GraphQL subset) ------------------------

class StandinLayout:
    """What localnet's stand-in needs of a layout: where it keeps its files and where it listens."""

    def __init__(self, root, port):
        self.root = root
        self.wandb_ip = "127.0.0.1"
        self.wandb_port = port

    def wandb_path(self, name):
        return os.path.join(self.root, name)


@pytest.fixture
def standin(tmp_path):
    import sys
    import threading

    sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..")))
    from localnet import wandb_standin

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    layout = StandinLayout(str(tmp_path / "standin"), port)
    os.makedirs(layout.root)
    key = wandb_standin.ensure_api_key(layout)
    server = wandb_standin.Server(layout)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield {"url": "http://127.0.0.1:%d" % port, "key": key, "server": server}
    server.shutdown()
    server.server_close()


def online(store, standin, tmp_path, **extra):
    return Settings(db_path=store.path, wandb_mode="online", wandb_api_key=standin["key"], wandb_base_url=standin["url"],
                    wandb_timeout=60, wandb_dir=str(tmp_path / "wandb"), **extra)


def stored_runs(standin):
    return standin["server"].service.store.runs


def test_online_creates_the_run_then_changes_only_its_own_keys(store, keypair, tmp_path, standin):
    settings = online(store, standin, tmp_path)
    first = WandbPublisher(settings, keypair.ss58_address, keypair.sign, store).publish()
    assert first["error"] is None and first["published"] is True
    (stored,) = stored_runs(standin)
    assert stored["displayName"] == "validator-%s" % keypair.ss58_address
    import wandb

    config = wandb.Api(api_key=standin["key"], overrides={"base_url": standin["url"]}).run(
        "neuralinternet/opencompute/%s" % first["run_id"]).config
    assert config["role"] == "validator" and config["config"] == {"netuid": 27} and config["version"] == 183
    assert config["allocated_hotkeys"] == ["hk-a", "hk-b"] and config["penalized_hotkeys"] == ["hk-bad"]
    assert keypair.verify(hashlib.sha256(first["run_id"].encode()).digest(), bytes.fromhex(config["signature"]))
    assert store.wandb_run_id(keypair.ss58_address) == first["run_id"]


def test_online_finds_the_validators_run_by_display_name_and_keeps_its_config(store, keypair, tmp_path, standin):
    import wandb

    # The validator process made its run; this database has no run id for it yet.
    api = wandb.Api(api_key=standin["key"], overrides={"base_url": standin["url"]})
    made = api.create_run(entity="neuralinternet", project="opencompute", run_id="valrun01")
    run = api.run("neuralinternet/opencompute/%s" % made.id)
    run.display_name = "validator-%s" % keypair.ss58_address
    run.config.update({"hotkey": keypair.ss58_address, "role": "validator", "version": 183,
                       "config": {"netuid": 27, "axon": {"port": 8091}}, "stats": {"uid": 0}})
    run.update()
    result = WandbPublisher(online(store, standin, tmp_path), keypair.ss58_address, keypair.sign, store).publish()
    assert result["published"] is True and result["run_id"] == "valrun01"
    assert len(stored_runs(standin)) == 1  # found, not duplicated
    config = wandb.Api(api_key=standin["key"], overrides={"base_url": standin["url"]}).run(
        "neuralinternet/opencompute/valrun01").config
    assert config["config"] == {"netuid": 27, "axon": {"port": 8091}} and config["stats"] == {"uid": 0}
    assert config["allocated_hotkeys"] == ["hk-a", "hk-b"]
    assert keypair.verify(hashlib.sha256(b"valrun01").digest(), bytes.fromhex(config["signature"]))


def test_online_with_a_wrong_key_fails_and_says_so(store, keypair, tmp_path, standin):
    settings = online(store, standin, tmp_path)
    settings.wandb_api_key = "0" * 40
    result = WandbPublisher(settings, keypair.ss58_address, keypair.sign, store).publish()
    assert result["published"] is False and result["error"]
    assert stored_runs(standin) == []
