# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import json

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import (
    DeviceRequirement,
    MatchResult,
    gpu_summary,
    parse_specs,
)
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.gpu_models import GPU_MODELS

GPUS = GPU_MODELS

TB = 10 ** 12


def specs(name="NVIDIA H100 80GB HBM3", mib=81559, count=8, listed=None, cpus=32,
          disk_free=1502 * 10 ** 9, ram_available=2100 * 10 ** 9):
    listed = count if listed is None else listed
    return {
        "cpu": {"count": cpus, "frequency": 2450.0},
        "gpu": {"count": count, "capacity": float(mib * count),
                "details": [{"name": name, "capacity": float(mib)} for _index in range(listed)]},
        "hard_disk": {"total": 2 * TB, "free": disk_free, "used": 0},
        "ram": {"total": 3 * TB, "available": ram_available},
        "has_docker": True,
    }


def cpu_box(cpus=16):
    return {"cpu": {"count": cpus}, "gpu": {"count": 0, "capacity": 0, "details": []},
            "hard_disk": {"free": TB}, "ram": {"available": TB}}


# -- from_options ---------------------------------------------------------------

def test_defaults_need_no_gpu_and_one_cpu():
    requirement = DeviceRequirement.from_options()
    assert requirement.gpu_count == 0
    assert requirement.cpu_count == 1
    assert not requirement.wants_gpu


@pytest.mark.parametrize("options", [{"gpu_type": "h100"}, {"gpu_memory": 80}])
def test_gpu_count_defaults_to_one_with_type_or_memory(options):
    assert DeviceRequirement.from_options(**options).gpu_count == 1


def test_gpu_count_alone_requires_that_many_gpus():
    requirement = DeviceRequirement.from_options(gpu_count=4)
    assert requirement.gpu_count == 4
    assert requirement.to_wire()["gpu"] == {"count": 4, "capacity": 0, "type": ""}


def test_numeric_strings_are_accepted():
    requirement = DeviceRequirement.from_options(gpu_memory="80", gpu_count="2", cpu_count="8", ram="16.5")
    assert (requirement.gpu_memory, requirement.gpu_count, requirement.cpu_count, requirement.ram) == (80, 2, 8, 16.5)


@pytest.mark.parametrize("options, option", [
    ({"gpu_count": 0}, "gpu_count"),
    ({"gpu_type": "h100", "gpu_count": 0}, "gpu_count"),
    ({"gpu_count": -1}, "gpu_count"),
    ({"gpu_count": 1.5}, "gpu_count"),
    ({"gpu_count": True}, "gpu_count"),
    ({"gpu_count": "two"}, "gpu_count"),
    ({"gpu_memory": -1}, "gpu_memory"),
    ({"gpu_memory": 0}, "gpu_memory"),
    ({"gpu_memory": "lots"}, "gpu_memory"),
    ({"gpu_memory": True}, "gpu_memory"),
    ({"gpu_memory": float("nan")}, "gpu_memory"),
    ({"gpu_memory": float("inf")}, "gpu_memory"),
    ({"gpu_memory": [80]}, "gpu_memory"),
    ({"gpu_type": 4090}, "gpu_type"),
    ({"gpu_type": " - "}, "gpu_type"),
    ({"cpu_count": 0}, "cpu_count"),
    ({"cpu_count": False}, "cpu_count"),
    ({"ram": -0.5}, "ram"),
    ({"ram": "x"}, "ram"),
    ({"disk": -1}, "disk"),
    ({"disk": None, "ram": {}}, "ram"),
])
def test_bad_options_name_the_option(options, option):
    with pytest.raises(BadInput) as caught:
        DeviceRequirement.from_options(**options)
    assert option in caught.value.message
    assert caught.value.details["option"] == option


def test_zero_ram_and_disk_are_allowed():
    requirement = DeviceRequirement.from_options(ram=0, disk=0)
    assert requirement.ram_bytes == 0
    assert requirement.disk_bytes == 0


def test_empty_gpu_type_means_no_type():
    requirement = DeviceRequirement.from_options(gpu_type="  ")
    assert requirement.gpu_type is None
    assert not requirement.wants_gpu


# -- to_wire ----------------------------------------------------------------------

def test_wire_dict_without_gpu_matches_upstream_cli_defaults():
    assert DeviceRequirement.from_options().to_wire() == {
        "cpu": {"count": 1},
        "gpu": {},
        "hard_disk": {"capacity": 1073741824},
        "ram": {"capacity": 1073741824},
    }


def test_wire_dict_units():
    wire = DeviceRequirement.from_options(gpu_type="h100", gpu_memory=80, gpu_count=2, cpu_count=8,
                                          ram=64, disk=500).to_wire()
    assert wire == {
        "cpu": {"count": 8},
        "gpu": {"count": 2, "capacity": 81920, "type": "h100"},
        "hard_disk": {"capacity": 500 * 10 ** 9},
        "ram": {"capacity": 64 * 10 ** 9},
    }
    assert isinstance(wire["gpu"]["capacity"], int)
    assert isinstance(wire["ram"]["capacity"], int)


def test_wire_capacity_of_fractional_gb_is_an_int():
    wire = DeviceRequirement.from_options(gpu_memory=23.5, ram=0.5).to_wire()
    assert wire["gpu"] == {"count": 1, "capacity": 24064, "type": ""}
    assert wire["ram"]["capacity"] == 500000000


def test_wire_dict_is_json_serializable():
    wire = DeviceRequirement.from_options(gpu_type="a100", gpu_memory=40).to_wire()
    assert json.loads(json.dumps(wire)) == wire


# -- matching -------------------------------------------------------------------

@pytest.mark.parametrize("gb, mib", [(80, 76294), (94, 89646), (48, 45777), (141, 134469), (24, 22889), (16, 15259)])
def test_required_mib_is_ceiling_of_printed_gb(gb, mib):
    assert DeviceRequirement.from_options(gpu_memory=gb).gpu_memory_mib == mib


@pytest.mark.parametrize("name, mib, printed_gb", GPUS, ids=[gpu[0] for gpu in GPUS])
def test_every_card_matches_its_printed_size(name, mib, printed_gb):
    box = specs(name=name, mib=mib, count=1)
    assert DeviceRequirement.from_options(gpu_memory=printed_gb).match(box).ok
    assert DeviceRequirement.from_options(gpu_type=name, gpu_memory=printed_gb).match(box).ok
    # The largest whole decimal GB the card holds matches, one more does not.
    largest = mib * 2 ** 20 // 10 ** 9
    assert largest >= printed_gb
    assert DeviceRequirement.from_options(gpu_memory=largest).match(box).ok
    bigger = DeviceRequirement.from_options(gpu_memory=largest + 1).match(box)
    assert not bigger.ok
    assert bigger.reason.startswith("GPU memory %d MiB < " % mib)


@pytest.mark.parametrize("name, mib, gb, ok", [
    ("NVIDIA H100 80GB HBM3", 81559, 80, True),
    ("NVIDIA H100 80GB HBM3", 81559, 94, False),
    ("NVIDIA A100-SXM4-80GB", 81920, 80, True),
    ("NVIDIA A100-PCIE-40GB", 40960, 40, True),
    ("NVIDIA A100-PCIE-40GB", 40960, 80, False),
    ("NVIDIA GeForce RTX 4090", 24564, 24, True),
    ("NVIDIA L40S", 46068, 48, True),
    ("NVIDIA H200", 143771, 141, True),
])
def test_real_cards(name, mib, gb, ok):
    assert DeviceRequirement.from_options(gpu_memory=gb).match(specs(name=name, mib=mib)).ok is ok


def test_memory_is_per_gpu_not_the_sum():
    # Upstream compared with gpu.capacity, the sum over 8 GPUs: 8 x 24 GB passed for 94 GB.
    box = specs(name="NVIDIA GeForce RTX 4090", mib=24564, count=8)
    assert not DeviceRequirement.from_options(gpu_memory=94).match(box).ok


def test_an_equal_capacity_matches():
    box = specs(mib=76294, count=1)
    assert DeviceRequirement.from_options(gpu_memory=80).match(box) == MatchResult(True, "")
    assert not DeviceRequirement.from_options(gpu_memory=80).match(specs(mib=76293, count=1)).ok


def test_memory_reason_names_both_figures():
    result = DeviceRequirement.from_options(gpu_memory=80).match(specs(name="NVIDIA L40S", mib=46068))
    assert result == MatchResult(False, "GPU memory 46068 MiB < 76294 MiB required")
    assert not result


@pytest.mark.parametrize("wanted, name", [
    ("a100", "NVIDIA A100-SXM4-80GB"),
    ("A100", "NVIDIA A100-PCIE-40GB"),
    ("h100", "NVIDIA H100 80GB HBM3"),
    ("H100 PCIe", "NVIDIA H100 PCIe"),
    ("rtx4090", "NVIDIA GeForce RTX 4090"),
    ("RTX-4090", "NVIDIA GeForce RTX 4090"),
    ("4090", "NVIDIA GeForce RTX 4090"),
    ("rtx a6000", "NVIDIA RTX A6000"),
    ("a100_sxm4", "NVIDIA A100-SXM4-80GB"),
])
def test_gpu_type_is_a_tolerant_substring(wanted, name):
    assert DeviceRequirement.from_options(gpu_type=wanted).match(specs(name=name)).ok


def test_wrong_gpu_type_reason():
    result = DeviceRequirement.from_options(gpu_type="h100").match(specs(name="NVIDIA L40S", mib=46068))
    assert result == MatchResult(False, "GPU type h100 not offered (NVIDIA L40S)")


def test_gpu_count_reason():
    result = DeviceRequirement.from_options(gpu_type="h100", gpu_count=4).match(specs(count=2))
    assert result == MatchResult(False, "2 GPUs offered, 4 required")
    assert DeviceRequirement.from_options(gpu_type="h100", gpu_count=2).match(specs(count=2)).ok


def test_gpu_required_but_cpu_only_box():
    result = DeviceRequirement.from_options(gpu_type="h100").match(cpu_box())
    assert not result.ok
    assert "no GPU offered" in result.reason


def test_no_gpu_requirement_matches_cpu_only_and_gpu_boxes():
    requirement = DeviceRequirement.from_options(cpu_count=8)
    assert requirement.match(cpu_box(16)).ok
    assert requirement.match(specs()).ok
    assert requirement.match({"cpu": {"count": 8}, "gpu": {}}).ok


def test_fewer_details_than_count_repeat_a_uniform_model():
    box = specs(count=8, listed=1)
    assert DeviceRequirement.from_options(gpu_type="h100", gpu_memory=80, gpu_count=8).match(box).ok


def test_mixed_box_counts_only_matching_gpus():
    box = specs(count=2)
    box["gpu"]["details"] = [{"name": "NVIDIA H100 80GB HBM3", "capacity": 81559.0},
                             {"name": "NVIDIA L4", "capacity": 23034.0}]
    assert DeviceRequirement.from_options(gpu_type="h100", gpu_count=1).match(box).ok
    result = DeviceRequirement.from_options(gpu_memory=80, gpu_count=2).match(box)
    assert result == MatchResult(False, "1 of 2 listed GPUs match, 2 required")


def test_no_details_falls_back_to_capacity_per_gpu():
    box = specs(count=4, listed=0)
    assert DeviceRequirement.from_options(gpu_memory=80, gpu_count=4).match(box).ok
    assert not DeviceRequirement.from_options(gpu_memory=94, gpu_count=4).match(box).ok
    typed = DeviceRequirement.from_options(gpu_type="h100").match(box)
    assert not typed.ok
    assert "no GPU details" in typed.reason


def test_cpu_disk_and_ram_limits():
    box = specs(cpus=8, disk_free=100 * 10 ** 9, ram_available=64 * 10 ** 9)
    assert DeviceRequirement.from_options(cpu_count=8, disk=100, ram=64).match(box).ok
    assert DeviceRequirement.from_options(cpu_count=9).match(box) == MatchResult(False, "8 CPUs offered, 9 required")
    disk = DeviceRequirement.from_options(disk=101).match(box)
    assert not disk.ok and "free disk 100000000000 bytes < 101000000000 bytes required" == disk.reason
    ram = DeviceRequirement.from_options(ram=65).match(box)
    assert not ram.ok and ram.reason.startswith("available RAM")


def test_several_faults_are_all_reported():
    result = DeviceRequirement.from_options(cpu_count=64, gpu_type="h100", ram=10 ** 5).match(specs(name="NVIDIA L4"))
    assert not result.ok
    assert result.reason.count(";") == 2


def test_unset_ram_and_disk_are_no_constraint():
    box = cpu_box()
    del box["ram"], box["hard_disk"]
    assert DeviceRequirement.from_options().match(box).ok
    result = DeviceRequirement.from_options(ram=1).match(box)
    assert not result.ok and "RAM unknown" in result.reason


def test_match_accepts_the_raw_row_text():
    assert DeviceRequirement.from_options(gpu_type="h100").match(json.dumps(specs())).ok


# -- malformed specs ----------------------------------------------------------------

MALFORMED = [
    ("{not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ("null", "not a JSON object"),
    (json.dumps({"gpu": {}}), "cpu is missing"),
    (json.dumps({"cpu": {"count": 4}}), "gpu is missing"),
    (json.dumps({"cpu": 4, "gpu": {}}), "cpu is int"),
    (json.dumps({"cpu": {"count": "4"}, "gpu": {}}), "cpu.count is not a number"),
    (json.dumps({"cpu": {}, "gpu": {}}), "cpu.count is missing"),
    (json.dumps({"cpu": {"count": 4}, "gpu": {"count": "8"}}), "gpu.count is not a number"),
    (json.dumps({"cpu": {"count": 4}, "gpu": {"count": 1, "details": "H100"}}), "gpu.details is not a list"),
    (json.dumps({"cpu": {"count": 4}, "gpu": {"count": 1, "details": [{"capacity": 1}]}}), "gpu.details[0] has no name"),
    (json.dumps({"cpu": {"count": 4}, "gpu": {"count": 1, "details": [{"name": "x", "capacity": "big"}]}}),
     "gpu.details[0].capacity is not a number"),
    (json.dumps({"cpu": {"count": 4}, "gpu": {}, "ram": []}), "ram is list"),
    (json.dumps({"cpu": {"count": 4}, "gpu": {}, "hard_disk": {"free": -1}}), "hard_disk.free is negative"),
    (json.dumps({"cpu": {"count": True}, "gpu": {}}), "cpu.count is not a number"),
]


@pytest.mark.parametrize("text, reason", MALFORMED)
def test_malformed_rows_are_rejected_with_a_reason(text, reason):
    specs, invalid = parse_specs(text)
    assert specs is None
    assert reason in invalid
    assert not invalid.startswith("invalid specs")
    result = DeviceRequirement.from_options().match(text)
    assert not result.ok
    assert result.reason == "invalid specs: " + invalid
    assert gpu_summary(text)["name"] == "Invalid details"


@pytest.mark.parametrize("value, reason", [(None, "not text"), (42, "not text"), (b"\xff", "not UTF-8")])
def test_parse_specs_rejects_non_text(value, reason):
    specs, invalid = parse_specs(value)
    assert specs is None
    assert reason in invalid


def test_parse_specs_accepts_text_bytes_and_dicts():
    box = specs()
    for value in (json.dumps(box), json.dumps(box).encode("utf-8"), box):
        parsed, invalid = parse_specs(value)
        assert invalid is None
        assert parsed["gpu"]["details"][0] == {"name": "NVIDIA H100 80GB HBM3", "capacity": 81559.0}
        assert parsed["has_docker"] is True


def test_one_malformed_row_does_not_empty_the_candidates():
    rows = {"good": json.dumps(specs()), "bad": "{", "cpu": json.dumps(cpu_box()), "odd": json.dumps([])}
    requirement = DeviceRequirement.from_options(gpu_type="h100", gpu_memory=80)
    results = dict((hotkey, requirement.match(text)) for hotkey, text in rows.items())
    assert [hotkey for hotkey, result in results.items() if result.ok] == ["good"]
    assert results["bad"].reason.startswith("invalid specs")
    assert results["odd"].reason.startswith("invalid specs")


def test_parse_specs_fills_gpu_defaults():
    parsed, invalid = parse_specs(json.dumps({"cpu": {"count": 4},
                                              "gpu": {"details": [{"name": "NVIDIA L4", "capacity": 23034}]}}))
    assert invalid is None
    assert parsed["gpu"]["count"] == 1
    assert parsed["gpu"]["capacity"] == 23034


# -- gpu_summary -----------------------------------------------------------------

def test_gpu_summary_of_an_h100_box():
    assert gpu_summary(json.dumps(specs())) == {"name": "nvidia h100 80gb hbm3", "resource": "nvidia h100 80gb hbm3",
                                                "count": 8, "memory_mib": 81559}
    assert gpu_summary(specs(name="NVIDIA L40S", mib=46068, count=2))["name"] == "nvidia l40s"


@pytest.mark.parametrize("value, name", [
    (None, "No details available"),
    ("", "No details available"),
    (json.dumps(cpu_box()), "No details available"),
    ("{", "Invalid details"),
    (json.dumps({"gpu": {}}), "Invalid details"),
])
def test_gpu_summary_fallback_names(value, name):
    summary = gpu_summary(value)
    assert summary["name"] == name
    assert summary["resource"] == name
    assert summary["memory_mib"] == 0
