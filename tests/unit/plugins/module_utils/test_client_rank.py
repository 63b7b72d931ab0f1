# -*- coding: utf-8 -*-
# Ranking candidates from a real SQLite store and a metagraph snapshot file; no miner is contacted.

from __future__ import annotations

import json

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import (
    Neuron,
    SnapshotMetagraph,
    write_snapshot,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore


def specs(name, mib, count):
    return json.dumps({
        "cpu": {"count": 32, "frequency": 2450.0},
        "gpu": {"count": count, "capacity": mib * count,
                "details": [{"name": name, "capacity": mib} for _attempt in range(count)]},
        "hard_disk": {"total": 2e12, "free": 1.5e12, "used": 5e11},
        "ram": {"total": 2.2e12, "available": 2.1e12, "used": 1e11},
        "has_docker": True,
    })


MINERS = [
    # uid, hotkey, specs, score, incentive
    (1, "hk-h100-low", specs("NVIDIA H100 80GB HBM3", 81559, 8), 0.2, 0.9),
    (2, "hk-h100-high", specs("NVIDIA H100 80GB HBM3", 81559, 8), 0.8, 0.1),
    (3, "hk-h100-noscore", specs("NVIDIA H100 PCIe", 81559, 1), None, 0.5),
    (4, "hk-l40s", specs("NVIDIA L40S", 46068, 2), 0.9, 0.9),
    (5, "hk-malformed", "{not json", 0.9, 0.9),
    (6, "hk-penalized", specs("NVIDIA H100 80GB HBM3", 81559, 8), 0.99, 0.9),
    (7, "hk-taken", specs("NVIDIA H100 80GB HBM3", 81559, 8), 0.99, 0.9),
    (8, "hk-nospecs", None, 0.99, 0.9),
]


@pytest.fixture
def client(tmp_path):
    db = str(tmp_path / "database.db")
    store = AllocationStore(db, create=True)
    conn = store._connection
    for uid, hotkey, details, score, _incentive in MINERS:
        if details is not None:
            conn.execute("INSERT INTO miner_details (hotkey, details) VALUES (?, ?)", (hotkey, details))
        conn.execute("INSERT INTO stats (uid, hotkey, score) VALUES (?, ?, ?)", (uid, hotkey, score))
    conn.execute("INSERT INTO blacklist (hotkey, details) VALUES ('hk-penalized', '{}')")
    conn.execute("INSERT INTO allocation (hotkey, details) VALUES ('hk-taken', '{}')")
    neurons = [Neuron(uid=uid, hotkey=hotkey, coldkey="ck", stake=0.0, incentive=incentive,
                      ip="127.0.0.%d" % (10 + uid), port=8091)
               for uid, hotkey, _details, _score, incentive in MINERS]
    neurons.append(Neuron(uid=9, hotkey="hk-not-serving", coldkey="ck", stake=0.0, incentive=0.9,
                          ip="0.0.0.0", port=0))
    snapshot = str(tmp_path / "metagraph.json")
    write_snapshot(snapshot, neurons, "local", 27)
    settings = Settings(db_path=db, network="local", metagraph_file=snapshot)
    return ComputeClient(settings, store=store, metagraph=SnapshotMetagraph(snapshot, 27))


def test_rank_orders_by_score_then_incentive_and_explains_every_rejection(client):
    ranking = client.rank(DeviceRequirement.from_options(gpu_type="h100", gpu_memory=80))
    assert [c.neuron.hotkey for c in ranking.candidates] == ["hk-h100-high", "hk-h100-low", "hk-h100-noscore"]
    reasons = dict((c.neuron.hotkey, c.reason) for c in ranking.rejected)
    assert reasons["hk-penalized"] == "penalized"
    assert reasons["hk-taken"] == "already allocated in the database"
    assert reasons["hk-not-serving"] == "axon not serving"
    assert reasons["hk-malformed"].startswith("invalid specs")
    assert reasons["hk-nospecs"] == "no specs reported"
    assert "hk-l40s" in reasons and "l40s" in reasons["hk-l40s"].lower()
    # Every miner is either a candidate or a rejection with a reason.
    assert len(ranking.candidates) + len(ranking.rejected) == len(MINERS) + 1


def test_malformed_row_does_not_empty_the_candidate_list(client):
    ranking = client.rank(DeviceRequirement.from_options())
    hotkeys = [c.neuron.hotkey for c in ranking.candidates]
    assert "hk-l40s" in hotkeys and "hk-malformed" not in hotkeys


def test_rank_by_hotkey_needs_no_specs_but_still_refuses_penalized(client):
    assert [c.neuron.hotkey for c in client.rank(hotkey="hk-nospecs").candidates] == ["hk-nospecs"]
    ranking = client.rank(hotkey="hk-penalized")
    assert ranking.candidates == [] and ranking.rejected[0].reason == "penalized"


def test_report_lists_resources(client):
    report = client.rank(DeviceRequirement.from_options(gpu_type="l40s")).report()
    assert report["candidates"][0]["resource"] == "nvidia l40s"
    assert all("reason" in item for item in report["rejected"])
