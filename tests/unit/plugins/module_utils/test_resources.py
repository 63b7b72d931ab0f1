# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The resources listing (list_r): each miner's row and status, the filter, the CLI's summaries,
# and the task end to end on a real database file and metagraph snapshot, read-only. W&B cannot
# run here: where other validators' runs matter, _wandb_read.fetch_runs is replaced (said where).

from __future__ import annotations

import json
import subprocess

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _wandb_read
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput, NiComputeError
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._resources import (
    STATUSES,
    MinerFacts,
    ResourceFilter,
    gather,
    list_resources,
    specs_columns,
    summarize,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import parse_specs, required_mib
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import Allocation, AllocationStore
from ansible_collections.neuralinternet.compute.plugins.module_utils._wandb_read import ValidatorRun

from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.subnet_builders import (
    CREDENTIALS,
    HEAVY_PROBE,
    PYTHON,
    REGKEY,
    cpu_only_specs,
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

H100 = specs("NVIDIA H100 80GB HBM3", 81559, 8)
ROW_KEYS = {"hotkey", "uid", "score", "incentive", "reserved_by", "allocation", "gpu_name", "gpu_memory_gb",
            "gpu_memory_mib", "gpu_count", "cpu_count", "ram_gb", "disk_gb", "status", "reason"}


def honoured_run(validator="5Validator", stake=5000.0):
    return ValidatorRun(run_id="run-%s" % validator, validator=validator, stake=stake, honoured=True, own=False)


# -- one row: status precedence --------------------------------------------------------------

def test_status_precedence_with_each_reason():
    facts = MinerFacts("hk", neuron=None, raw_specs="{not json", score=0.5, penalty={"reason": "slow"},
                       ours=Allocation(hotkey="hk", state="active", name="box"),
                       reserved_by=(honoured_run("5Big", 5000.0),))
    steps = []
    steps.append(facts.row())
    facts.ours = None
    steps.append(facts.row())
    facts.penalty = None
    steps.append(facts.row())
    facts.neuron = neuron(3, "hk", serving=False)
    steps.append(facts.row())
    facts.neuron = neuron(3, "hk")
    steps.append(facts.row())
    facts.reserved_by = ()
    steps.append(facts.row())
    facts.raw_specs = None
    steps.append(facts.row())
    facts.raw_specs = json.dumps(H100)
    steps.append(facts.row())
    assert [(row["status"], row["reason"]) for row in steps] == [
        ("allocated", "allocated by this validator as box (active)"),
        ("penalized", "penalized by this validator: slow"),
        ("offline", "not in the metagraph"),
        ("offline", "axon not serving"),
        ("reserved", "held by another validator in its signed W&B run (stake 5000)"),
        ("invalid", "invalid specs: not JSON"),
        ("invalid", "no specs reported"),
        ("available", None),
    ]
    assert [row["status"] for row in steps][::2] == ["allocated", "offline", "reserved", "invalid"]
    assert set(STATUSES) == set(row["status"] for row in steps)


def test_status_reasons_without_a_name_or_a_penalty_reason():
    upstream_cli = MinerFacts("hk", neuron=neuron(1, "hk"), ours=Allocation(hotkey="hk", state="releasing"))
    assert upstream_cli.row()["reason"] == "allocated by this validator as an upstream CLI allocation (releasing)"
    assert upstream_cli.row()["allocation"] is None
    assert MinerFacts("hk", neuron=neuron(1, "hk"), penalty={}).row()["reason"] == "penalized by this validator"
    two = MinerFacts("hk", neuron=neuron(1, "hk"), raw_specs=H100,
                     reserved_by=(honoured_run("5B", 2048.5), honoured_run("5A", 1e6)))
    row = two.row()
    assert row["reason"] == "held by 2 other validators in their signed W&B runs (stake 2048.5, 1e+06)"
    assert row["reserved_by"] == ["5A", "5B"]


def test_a_row_carries_the_hardware_columns():
    row = MinerFacts("hk", neuron=neuron(4, "hk", incentive=0.25), raw_specs=json.dumps(H100), score=0.75).row()
    assert set(row) == ROW_KEYS
    assert row == dict(hotkey="hk", uid=4, score=0.75, incentive=0.25, reserved_by=[], allocation=None,
                       gpu_name="NVIDIA H100 80GB HBM3", gpu_memory_gb=80, gpu_memory_mib=81559, gpu_count=8,
                       cpu_count=32, ram_gb=2100.0, disk_gb=1500.0, status="available", reason=None)


def test_specs_columns_for_cpu_only_and_unlisted_gpus():
    cpu = specs_columns(parse_specs(cpu_only_specs())[0])
    assert cpu["gpu_name"] is None and cpu["gpu_memory_gb"] is None and cpu["gpu_count"] == 0
    assert cpu["cpu_count"] == 16 and cpu["ram_gb"] == 64.0 and cpu["disk_gb"] == 500.0
    unlisted = specs_columns(parse_specs({"cpu": {"count": 4}, "gpu": {"count": 2, "capacity": 2 * 81559}})[0])
    assert unlisted["gpu_name"] is None and unlisted["gpu_memory_mib"] == 81559 and unlisted["gpu_memory_gb"] == 80
    assert unlisted["ram_gb"] is None and unlisted["disk_gb"] is None
    assert specs_columns(None) == dict(gpu_name=None, gpu_memory_gb=None, gpu_memory_mib=None, gpu_count=None,
                                       cpu_count=None, ram_gb=None, disk_gb=None)


def test_a_malformed_row_is_invalid_and_hides_nothing_else():
    neurons = dict((hk, neuron(uid, hk)) for uid, hk in enumerate(["a", "bad", "c"], start=1))
    rows = [item.row() for item in gather(neurons, {"a": json.dumps(H100), "bad": '{"cpu": {"count": -1}, "gpu": {}}',
                                                    "c": json.dumps(cpu_only_specs())})]
    by_hotkey = dict((row["hotkey"], row) for row in rows)
    assert by_hotkey["bad"]["status"] == "invalid"
    assert by_hotkey["bad"]["reason"] == "invalid specs: cpu.count is negative"
    assert by_hotkey["a"]["status"] == "available" and by_hotkey["c"]["status"] == "available"


def test_gather_leaves_out_validators_and_keeps_departed_and_held_miners():
    ours = Allocation(hotkey="held", state="active", name="box")
    neurons = {"validator": neuron(0, "validator", stake=1e5, serving=False),
               "serving": neuron(1, "serving"), "held": neuron(2, "held", serving=False)}
    facts = gather(neurons, {"departed": json.dumps(H100)}, ours={"held": ours})
    rows = dict((item.hotkey, item.row()) for item in facts)
    assert sorted(rows) == ["departed", "held", "serving"]
    assert (rows["departed"]["uid"], rows["departed"]["status"], rows["departed"]["reason"]) == (
        None, "offline", "not in the metagraph")
    assert rows["held"]["status"] == "allocated" and rows["held"]["allocation"] == "box"
    assert rows["serving"]["reason"] == "no specs reported"


def test_gather_takes_the_reason_for_unknown_specs():
    facts = gather({"m": neuron(1, "m")}, {}, specs_unknown_why="no signed specs run on W&B")
    assert facts[0].row()["reason"] == "no signed specs run on W&B"


# -- the filter ------------------------------------------------------------------------------

def row(hotkey, gpu_name=None, mib=None, count=None, status="available"):
    return dict(hotkey=hotkey, uid=None, gpu_name=gpu_name, gpu_memory_mib=mib, gpu_count=count, status=status)


ROWS = [row("h100", "NVIDIA H100 80GB HBM3", 81559, 8), row("a100", "NVIDIA A100-SXM4-80GB", 81920, 4),
        row("4090", "NVIDIA GeForce RTX 4090", 24564, 2, "reserved"), row("cpu", None, None, 0),
        row("gone", "NVIDIA H100 PCIe", 81559, 1, "offline")]


def kept(**options):
    keep = ResourceFilter(**options).validate()
    return [item["hotkey"] for item in ROWS if keep.keeps(item)]


@pytest.mark.parametrize("gpu_type, hotkeys", [
    ("h100", ["h100", "gone"]), ("H100", ["h100", "gone"]), ("a100 sxm4", ["a100"]), ("A100-SXM4", ["a100"]),
    ("rtx-4090", ["4090"]), ("RTX4090", ["4090"]), ("GeForce RTX 4090", ["4090"]), ("h100_pcie", ["gone"]),
    ("a100-pcie", []), ("nvidia", ["h100", "a100", "4090", "gone"]),
])
def test_gpu_type_is_a_substring_ignoring_case_dashes_and_spaces(gpu_type, hotkeys):
    assert kept(gpu_type=gpu_type) == hotkeys


@pytest.mark.parametrize("gpu_memory, hotkeys", [
    (80, ["h100", "a100", "gone"]), ("80", ["h100", "a100", "gone"]), (24, ["h100", "a100", "4090", "gone"]),
    (85, ["h100", "a100", "gone"]), (86, []), (1024, []),
])
def test_gpu_memory_is_a_minimum_by_the_printed_size_rule(gpu_memory, hotkeys):
    # The rule DeviceRequirement.match applies: a card matches g GB when it reports >= ceil(g * 10^9 / 2^20) MiB.
    # An 81559 MiB H100 is 85.5 decimal GB, an 81920 MiB A100 85.9: both are kept up to 85, neither for 86.
    # CPU-only rows never pass.
    assert kept(gpu_memory=gpu_memory) == hotkeys


def test_gpu_memory_boundary_is_required_mib():
    at = [row("at", "X", required_mib(48)), row("below", "X", required_mib(48) - 1)]
    keep = ResourceFilter(gpu_memory=48).validate()
    assert [item["hotkey"] for item in at if keep.keeps(item)] == ["at"]


def test_status_filter_and_combined_options():
    assert kept(status=["reserved", "offline"]) == ["4090", "gone"]
    assert kept(status=["available"], gpu_type="h100") == ["h100"]
    assert kept(status=["available"], gpu_memory=80, gpu_type="a100") == ["a100"]
    assert kept() == [item["hotkey"] for item in ROWS]


@pytest.mark.parametrize("options, option", [
    ({"gpu_memory": float("nan")}, "gpu_memory"), ({"gpu_memory": float("inf")}, "gpu_memory"),
    ({"gpu_memory": -1}, "gpu_memory"), ({"gpu_memory": 0}, "gpu_memory"), ({"gpu_memory": "lots"}, "gpu_memory"),
    ({"gpu_memory": True}, "gpu_memory"), ({"status": ["free"]}, "status"),
    ({"status": ["available", "gone", "busy"]}, "status"), ({"gpu_type": ""}, "gpu_type"),
    ({"gpu_type": " - _"}, "gpu_type"), ({"gpu_type": 100}, "gpu_type"),
])
def test_bad_filter_options_are_refused_naming_the_option(options, option):
    with pytest.raises(BadInput) as caught:
        ResourceFilter(**options).validate()
    assert caught.value.details["option"] == option
    assert option in caught.value.message


def test_a_bad_status_names_the_unknown_values():
    with pytest.raises(BadInput) as caught:
        ResourceFilter(status=["available", "gone", "busy"]).validate()
    assert caught.value.message.startswith("status busy, gone is not one of allocated, penalized")


# -- the summaries -----------------------------------------------------------------------------

def test_summaries_count_instances_gpus_and_statuses():
    rows = [row("a", "NVIDIA H100 80GB HBM3", 81559, 8), row("b", "NVIDIA H100 80GB HBM3", 81559, 8, "allocated"),
            row("c", "NVIDIA H100 80GB HBM3", 81559, 4), row("d", "NVIDIA L4", 23034, 1, "reserved"),
            row("e", None, None, 0), row("f", None, None, None, "invalid"), row("g", "NVIDIA L4", 23034, 1),
            row("h", "NVIDIA L4", 23034, 0, "offline")]
    summary = summarize(rows)
    assert summary["miners"] == 8
    assert summary["by_status"] == {"allocated": 1, "penalized": 0, "offline": 1, "reserved": 1, "invalid": 1,
                                    "available": 4}
    assert summary["instances"] == [
        {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 4, "instances": 1, "available": 1},
        {"gpu_name": "NVIDIA H100 80GB HBM3", "gpu_count": 8, "instances": 2, "available": 1},
        {"gpu_name": "NVIDIA L4", "gpu_count": 1, "instances": 2, "available": 1},
    ]
    assert summary["gpus"] == [{"gpu_name": "NVIDIA H100 80GB HBM3", "total": 20, "available": 12},
                               {"gpu_name": "NVIDIA L4", "total": 2, "available": 1}]


def test_summaries_of_nothing():
    assert summarize([]) == {"miners": 0, "by_status": dict((status, 0) for status in STATUSES),
                             "instances": [], "gpus": []}


# -- the task end to end -------------------------------------------------------------------------

NAMES = ("h100", "ours", "pen", "idle", "gone", "bad", "nospecs", "cpu", "reserved", "big", "small", "own")


@pytest.fixture(scope="module")
def keys():
    return dict((name, new_keypair()) for name in NAMES + ("forger",))


@pytest.fixture
def world(tmp_path, keys):
    """A validator database (with this collection's tables and one allocation 'box'), a snapshot and a wallet."""
    hk = dict((name, keypair.ss58_address) for name, keypair in keys.items())
    db = str(tmp_path / "database.db")
    with AllocationStore(db, create=True) as store:
        connection = store._connection
        for name, details in (("h100", H100), ("ours", specs("NVIDIA A100-SXM4-80GB", 81920, 4)),
                              ("pen", specs("NVIDIA L40S", 46068, 2)), ("idle", specs("NVIDIA GeForce RTX 4090", 24564, 1)),
                              ("gone", specs("NVIDIA L4", 23034, 1)), ("bad", "{not json"), ("cpu", cpu_only_specs()),
                              ("reserved", specs("NVIDIA H100 PCIe", 81559, 1))):
            connection.execute("INSERT INTO miner_details (hotkey, details) VALUES (?, ?)",
                               (hk[name], details if isinstance(details, str) else json.dumps(details)))
        connection.execute("INSERT INTO stats (uid, hotkey, score) VALUES (1, ?, 0.9), (7, ?, NULL)", (hk["h100"], hk["cpu"]))
        store.set_penalties(add={hk["pen"]: {"reason": "failed proof of GPU"}})
        store.claim(name="box", hotkey=hk["ours"], uid=2, ip="127.0.0.12", regkey=REGKEY, ssh_key="ssh-ed25519 AAAA x",
                    resource="nvidia a100-sxm4-80gb", timeline=1, owner=Owner.current(), lease_seconds=60)
        store.activate(hk["ours"], REGKEY, CREDENTIALS)
    neurons = [neuron(1, hk["h100"], incentive=0.5), neuron(2, hk["ours"]), neuron(3, hk["pen"]),
               neuron(4, hk["idle"], serving=False), neuron(5, hk["bad"]), neuron(6, hk["nospecs"]), neuron(7, hk["cpu"]),
               neuron(10, hk["reserved"]), neuron(8, hk["big"], stake=5000.0, serving=False),
               neuron(9, hk["small"], stake=100.0, serving=False), neuron(0, hk["own"], stake=9000.0, serving=False)]
    snapshot = snapshot_file(tmp_path / "metagraph.json", neurons)
    write_wallet(tmp_path / "wallets", keys["own"], name="validator", hotkey="default")
    settings = Settings(db_path=db, network="local", metagraph_file=snapshot, wandb_mode="disabled",
                        wallet_name="validator", wallet_hotkey="default", wallet_path=str(tmp_path / "wallets"),
                        wandb_dir=str(tmp_path / "wandb"))
    return {"hk": hk, "settings": settings, "db": db, "tmp": tmp_path}


def statuses(result, hk):
    names = dict((value, name) for name, value in hk.items())
    return [(names[row["hotkey"]], row["uid"], row["status"]) for row in result["resources"]]


def test_database_listing_end_to_end(world):
    hk, before, tables = world["hk"], file_state(world["db"]), table_names(world["db"])
    result = list_resources(world["settings"])
    assert set(result) == {"changed", "source", "resources", "summary", "wandb", "ansible_facts"}
    assert result["changed"] is False and result["source"] == "database"
    assert statuses(result, hk) == [
        ("h100", 1, "available"), ("ours", 2, "allocated"), ("pen", 3, "penalized"), ("idle", 4, "offline"),
        ("bad", 5, "invalid"), ("nospecs", 6, "invalid"), ("cpu", 7, "available"), ("reserved", 10, "available"),
        ("gone", None, "offline"),
    ]
    rows = dict((row["hotkey"], row) for row in result["resources"])
    assert all(set(item) == ROW_KEYS for item in result["resources"])
    assert rows[hk["ours"]]["allocation"] == "box" and rows[hk["ours"]]["reason"] == \
        "allocated by this validator as box (active)"
    assert rows[hk["pen"]]["reason"] == "penalized by this validator: failed proof of GPU"
    assert rows[hk["bad"]]["reason"] == "invalid specs: not JSON"
    assert rows[hk["h100"]]["score"] == 0.9 and rows[hk["h100"]]["incentive"] == 0.5
    assert rows[hk["cpu"]]["score"] is None
    # The fact is each row's status by hotkey, not the rows again (Ansible walks and copies every fact).
    assert result["ansible_facts"] == {"nicompute_resources": dict((row["hotkey"], row["status"])
                                                                   for row in result["resources"])}
    assert result["summary"]["by_status"] == {"allocated": 1, "penalized": 1, "offline": 2, "reserved": 0,
                                              "invalid": 2, "available": 3}
    assert result["wandb"] == {"mode": "disabled", "read": False, "error": None, "validator_runs": 0,
                               "miner_runs": 0, "skipped_runs": []}
    assert "warnings" not in result
    json.dumps(result)
    # Read only: not a byte changed, no table made, no journal left beside it.
    assert file_state(world["db"]) == before and table_names(world["db"]) == tables


def test_listing_a_database_the_validator_made_creates_nothing(tmp_path):
    db = upstream_database(tmp_path / "database.db", miner_details=[("m1", H100), ("m2", "{not json")],
                           scores=[(1, "m1", 0.5)], blacklist=[("m2", None)],
                           allocations=[("m3", {"ip": "127.0.0.13", "resource": "nvidia l4", "regkey": REGKEY})])
    before, tables = file_state(db), table_names(db)
    snapshot = snapshot_file(tmp_path / "metagraph.json", [neuron(1, "m1"), neuron(2, "m2"), neuron(3, "m3")])
    settings = Settings(db_path=db, metagraph_file=snapshot, wandb_mode="disabled", wallet_path=str(tmp_path / "w"))
    result = list_resources(settings, row_filter=ResourceFilter(status=["available", "allocated", "penalized"]))
    assert [(row["hotkey"], row["status"]) for row in result["resources"]] == [
        ("m1", "available"), ("m2", "penalized"), ("m3", "allocated")]
    assert result["resources"][2]["reason"] == "allocated by this validator as an upstream CLI allocation (active)"
    assert file_state(db) == before
    assert table_names(db) == tables and not any(name.startswith("nicompute") for name in tables)


def test_the_filter_applies_to_rows_and_summaries(world):
    result = list_resources(world["settings"], row_filter=ResourceFilter(gpu_type="h100", gpu_memory=80))
    assert [row["uid"] for row in result["resources"]] == [1, 10]
    assert result["summary"]["miners"] == 2
    assert result["summary"]["gpus"] == [{"gpu_name": "NVIDIA H100 80GB HBM3", "total": 8, "available": 8},
                                         {"gpu_name": "NVIDIA H100 PCIe", "total": 1, "available": 1}]


@pytest.fixture
def validator_runs(world, keys, monkeypatch):
    """_wandb_read.fetch_runs replaced (W&B cannot run here) by signed runs of three validators and a forger."""
    hk = world["hk"]
    runs = [signed_run(keys["big"], "big00001", allocated_hotkeys=[hk["reserved"], hk["ours"]]),
            signed_run(keys["small"], "sml00001", allocated_hotkeys=[hk["h100"]]),
            signed_run(keys["own"], "own00001", allocated_hotkeys=[hk["h100"], hk["cpu"]]),
            signed_run(keys["forger"], "frg00001", hotkey=hk["big"], allocated_hotkeys=[hk["cpu"]])]
    answer = {"found": {"allocated_hotkeys": runs}, "error": None}
    asked = []

    def fetch(settings, queries):
        asked.append([label for label, _filters in queries])
        return answer["found"], answer["error"]

    monkeypatch.setattr(_wandb_read, "fetch_runs", fetch)
    world["settings"].wandb_mode = "online"
    world["settings"].wandb_api_key = "k" * 40
    return {"answer": answer, "asked": asked}


def test_only_other_honoured_validators_reserve(world, validator_runs):
    hk = world["hk"]
    before = file_state(world["db"])
    result = list_resources(world["settings"])
    assert validator_runs["asked"] == [["allocated_hotkeys"]]
    rows = dict((row["hotkey"], row) for row in result["resources"])
    assert rows[hk["reserved"]]["status"] == "reserved"
    assert rows[hk["reserved"]]["reason"] == "held by another validator in its signed W&B run (stake 5000)"
    assert rows[hk["reserved"]]["reserved_by"] == [hk["big"]]
    # Our allocation stays ours; the honoured validator that lists it is shown.
    assert rows[hk["ours"]]["status"] == "allocated" and rows[hk["ours"]]["reserved_by"] == [hk["big"]]
    # Listed only by a low-stake validator, by our own run, or by a forged run: free.
    for name in ("h100", "cpu"):
        assert (rows[hk[name]]["status"], rows[hk[name]]["reserved_by"]) == ("available", [])
    assert result["wandb"]["mode"] == "online" and result["wandb"]["read"] is True
    assert result["wandb"]["validator_runs"] == 3
    assert [item["run_id"] for item in result["wandb"]["skipped_runs"]] == ["frg00001"]
    assert result["summary"]["by_status"]["reserved"] == 1
    assert file_state(world["db"]) == before


def test_an_unread_wandb_warns_that_reservations_are_not_shown(world, validator_runs):
    validator_runs["answer"].update(found={}, error="W&B did not answer within 30 s")
    result = list_resources(world["settings"])
    assert result["warnings"] == ["W&B did not answer within 30 s: other validators' reservations are not shown"]
    assert result["wandb"]["read"] is False and result["wandb"]["error"] == "W&B did not answer within 30 s"
    assert result["summary"]["by_status"]["reserved"] == 0


def test_wandb_source_takes_specs_from_signed_miner_runs(world, keys, validator_runs):
    hk = world["hk"]
    validator_runs["answer"]["found"] = {"allocated_hotkeys": [], "miners": [
        signed_run(keys["h100"], "mnr00001", role="miner", specs=specs("NVIDIA H100 80GB HBM3", 81559, 4)),
        signed_run(keys["cpu"], "mnr00002", role="miner", signature="", specs=cpu_only_specs()),
        signed_run(keys["gone"], "mnr00003", role="miner", specs=specs("NVIDIA L4", 23034, 1)),
    ]}
    result = list_resources(world["settings"], source="wandb")
    assert validator_runs["asked"] == [["allocated_hotkeys", "miners"]]
    assert result["source"] == "wandb"
    rows = dict((row["hotkey"], row) for row in result["resources"])
    # The database's specs are not used: 4 GPUs from W&B, not the database's 8.
    assert rows[hk["h100"]]["gpu_count"] == 4 and rows[hk["h100"]]["status"] == "available"
    assert (rows[hk["cpu"]]["status"], rows[hk["cpu"]]["reason"]) == ("invalid", "no signed specs run on W&B")
    assert rows[hk["bad"]]["reason"] == "no signed specs run on W&B"
    # Our allocation and penalty still come from the database.
    assert rows[hk["ours"]]["status"] == "allocated" and rows[hk["pen"]]["status"] == "penalized"
    # A miner that left the metagraph and has no valid run is no row at all.
    assert hk["gone"] not in rows
    assert result["wandb"]["miner_runs"] == 1
    assert sorted(item["run_id"] for item in result["wandb"]["skipped_runs"]) == ["mnr00002", "mnr00003"]


def test_wandb_source_unread_says_why_specs_are_unknown(world, validator_runs):
    validator_runs["answer"].update(found={}, error="W&B did not answer within 30 s")
    result = list_resources(world["settings"], source="wandb")
    rows = dict((row["hotkey"], row) for row in result["resources"])
    assert rows[world["hk"]["h100"]]["reason"] == "specs unknown: W&B did not answer within 30 s"
    assert result["warnings"] == ["W&B did not answer within 30 s: other validators' reservations are not shown; "
                                  "miners' specs are unknown"]


def test_wandb_source_without_credentials_is_refused_before_anything(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    missing = tmp_path / "database.db"
    settings = Settings(db_path=str(missing), metagraph_file=None, wallet_path=str(tmp_path / "w"))
    assert settings.effective_wandb_mode == "disabled"
    with pytest.raises(BadInput) as caught:
        list_resources(settings, source="wandb")
    assert caught.value.details == {"option": "source"}
    assert "wandb_mode is auto" in caught.value.message
    assert not missing.exists()


@pytest.mark.parametrize("source", ["chain", "", None, "Database"])
def test_an_unknown_source_is_refused(tmp_path, source):
    settings = Settings(db_path=str(tmp_path / "missing.db"), wandb_mode="disabled")
    with pytest.raises(BadInput) as caught:
        list_resources(settings, source=source)
    assert caught.value.details == {"option": "source"}


@pytest.mark.parametrize("kwargs, option", [
    ({"row_filter": ResourceFilter(gpu_memory=float("nan"))}, "gpu_memory"),
    ({"min_validator_stake": float("inf")}, "min_validator_stake"),
    ({"min_validator_stake": -1}, "min_validator_stake"),
])
def test_bad_options_are_refused_before_the_database_is_opened(tmp_path, kwargs, option):
    settings = Settings(db_path=str(tmp_path / "missing.db"), wandb_mode="disabled")
    with pytest.raises(BadInput) as caught:
        list_resources(settings, **kwargs)
    assert caught.value.details["option"] == option


def test_a_missing_database_is_not_created(tmp_path):
    snapshot = snapshot_file(tmp_path / "metagraph.json", [neuron(1, "m1")])
    missing = tmp_path / "database.db"
    with pytest.raises(NiComputeError, match="does not exist"):
        list_resources(Settings(db_path=str(missing), metagraph_file=snapshot, wandb_mode="disabled"))
    assert not missing.exists()


# -- what a listing imports ----------------------------------------------------------------------

IMPORT_PROBE = """
import json, sys
from ansible_collections.neuralinternet.compute.plugins.module_utils._resources import list_resources
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
settings = Settings(db_path=sys.argv[1], metagraph_file=sys.argv[2], wandb_mode="disabled", wallet_path=sys.argv[3],
                    wallet_name="validator", wallet_hotkey="default")
result = list_resources(settings)
print(json.dumps({"rows": len(result["resources"]), "statuses": [r["status"] for r in result["resources"]]}))
""" + HEAVY_PROBE


def test_a_database_listing_imports_neither_bittensor_nor_wandb_nor_the_client(world):
    settings = world["settings"]
    done = subprocess.run([PYTHON, "-c", IMPORT_PROBE, settings.db_path, settings.metagraph_file, settings.wallet_path],
                          env=subprocess_env(world["tmp"]), capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    listing, heavy = [json.loads(line) for line in done.stdout.strip().splitlines()[-2:]]
    assert listing["rows"] == 9 and "allocated" in listing["statuses"]
    assert heavy == []
