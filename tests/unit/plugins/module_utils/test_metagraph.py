# -*- coding: utf-8 -*-
# Metagraph sources and the chain cache, offline. The chain itself cannot be reached from here:
# the cache test proves a fresh cache is used without touching it.

from __future__ import annotations

import json
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput, NotFound

NEURONS = [
    _metagraph.Neuron(0, "hk-validator", "ck0", 2e4, 0.0, "0.0.0.0", 0, True),
    _metagraph.Neuron(1, "hk-miner", "ck1", 100.0, 0.25, "127.0.0.11", 8091),
]


def test_snapshot_round_trip(tmp_path):
    path = str(tmp_path / "metagraph.json")
    _metagraph.write_snapshot(path, NEURONS, "local", 27, block=42)
    neurons, document = _metagraph.read_snapshot(path, 27)
    assert neurons == NEURONS
    assert document["block"] == 42 and document["neurons"][1]["axon"] == {"ip": "127.0.0.11", "port": 8091}
    assert [n.serving for n in neurons] == [False, True]


def test_snapshot_errors_name_the_file(tmp_path):
    missing = str(tmp_path / "missing.json")
    with pytest.raises(NotFound, match="missing.json does not exist"):
        _metagraph.read_snapshot(missing)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"neurons": [{"hotkey": "x"}]}))
    with pytest.raises(BadInput, match="broken.json is malformed"):
        _metagraph.read_snapshot(str(broken))
    other = str(tmp_path / "other.json")
    _metagraph.write_snapshot(other, NEURONS, "local", 12)
    with pytest.raises(BadInput, match="netuid 12, not 27"):
        _metagraph.SnapshotMetagraph(other, 27).neurons()


def test_metagraph_source_prefers_the_snapshot(tmp_path):
    source = _metagraph.metagraph_source("finney", 27, metagraph_file=str(tmp_path / "m.json"))
    assert isinstance(source, _metagraph.SnapshotMetagraph)
    assert isinstance(_metagraph.metagraph_source("finney", 27), _metagraph.ChainMetagraph)


def test_a_fresh_chain_cache_is_used_and_a_stale_one_is_not(tmp_path):
    chain = _metagraph.ChainMetagraph("finney", 27, cache_dir=str(tmp_path), cache_ttl=300)
    _metagraph.write_snapshot(chain.cache_path, NEURONS, "finney", 27)
    # A fresh cache answers without a chain connection (none is possible here).
    assert chain.neurons() == NEURONS
    with open(chain.cache_path) as handle:
        document = json.load(handle)
    document["created_at"] = time.time() - 301
    with open(chain.cache_path, "w") as handle:
        json.dump(document, handle)
    assert chain._cached() is None
