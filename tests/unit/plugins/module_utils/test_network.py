# -*- coding: utf-8 -*-
# Metagraph sources, the chain cache and wallet loading, offline. The chain itself cannot be
# reached from here: the cache test proves a fresh cache is used without touching it.

from __future__ import annotations

import json
import os
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput, NotFound

NEURONS = [
    _network.Neuron(0, "hk-validator", "ck0", 2e4, 0.0, "0.0.0.0", 0, True),
    _network.Neuron(1, "hk-miner", "ck1", 100.0, 0.25, "127.0.0.11", 8091),
]


def test_snapshot_round_trip(tmp_path):
    path = str(tmp_path / "metagraph.json")
    _network.write_snapshot(path, NEURONS, "local", 27, block=42)
    neurons, document = _network.read_snapshot(path, 27)
    assert neurons == NEURONS
    assert document["block"] == 42 and document["neurons"][1]["axon"] == {"ip": "127.0.0.11", "port": 8091}
    assert [n.serving for n in neurons] == [False, True]


def test_snapshot_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(NotFound, match="missing.json does not exist"):
        _network.read_snapshot(missing)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"neurons": [{"hotkey": "x"}]}))
    with pytest.raises(BadInput, match="broken.json is malformed"):
        _network.read_snapshot(str(broken))
    other = str(tmp_path / "other.json")
    _network.write_snapshot(other, NEURONS, "local", 12)
    with pytest.raises(BadInput, match="netuid 12, not 27"):
        _network.SnapshotMetagraph(other, 27).neurons()


def test_metagraph_source_prefers_the_snapshot(tmp_path):
    source = _network.metagraph_source("finney", 27, metagraph_file=str(tmp_path / "m.json"))
    assert isinstance(source, _network.SnapshotMetagraph)
    assert isinstance(_network.metagraph_source("finney", 27), _network.ChainMetagraph)


def test_a_fresh_chain_cache_is_used_and_a_stale_one_is_not(tmp_path):
    chain = _network.ChainMetagraph("finney", 27, cache_dir=str(tmp_path), cache_ttl=300)
    _network.write_snapshot(chain.cache_path, NEURONS, "finney", 27)
    # A fresh cache answers without a chain connection (none is possible here).
    assert chain.neurons() == NEURONS
    with open(chain.cache_path) as handle:
        document = json.load(handle)
    document["created_at"] = time.time() - 301
    with open(chain.cache_path, "w") as handle:
        json.dump(document, handle)
    assert chain._cached() is None


def test_load_hotkey_errors_say_what_is_missing(tmp_path):
    with pytest.raises(NotFound, match="wallet 'nobody' does not exist"):
        _network.load_hotkey("nobody", "default", str(tmp_path))
    bt = _network.bittensor()
    bt.Wallet(name="op", hotkey="hot", path=str(tmp_path)).create_if_non_existent(
        coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    with pytest.raises(NotFound, match="hotkey 'cold' of wallet 'op' does not exist"):
        _network.load_hotkey("op", "cold", str(tmp_path))
    keypair = _network.load_hotkey("op", "hot", str(tmp_path))
    assert keypair.ss58_address.startswith("5")
    assert oct(os.stat(os.path.join(str(tmp_path), "op", "hotkeys", "hot")).st_mode & 0o777) == "0o600"


def test_allocate_synapse_is_named_allocate_with_the_protocol_defaults():
    synapse = _network.allocate_synapse_class()()
    assert type(synapse).__name__ == "Allocate"
    assert synapse.timeline == 0 and synapse.checking is True and synapse.output == {}
    assert synapse.docker_requirement["ssh_port"] == 4444
    # Each instance gets its own copy of a mutable default.
    synapse.output["status"] = True
    assert _network.allocate_synapse_class()().output == {}
    assert synapse.deserialize() == {"status": True}
