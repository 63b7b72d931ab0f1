# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The nvidia-smi parser against real GPU models (as drivers report them, gpu_models.py) and the
# shapes nvidia-smi output takes: blank lines, padding, unknown fields, no devices, garbage.

from __future__ import annotations

import os

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._gpu_probe import (
    QUERY,
    NvidiaSmiOutputError,
    parse_gpu_line,
    parse_nvidia_smi,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import required_mib
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.gpu_models import GPU_MODELS

GPUS = GPU_MODELS
IDS = [item[0] for item in GPUS]
ROLE_TASKS = os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", "roles", "gpu_box", "tasks")


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=IDS)
def test_every_known_card(name, mib, printed):
    assert parse_nvidia_smi("%s, %d\n" % (name, mib)) == [{"name": name, "memory_mib": mib, "memory_gb": printed}]


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=IDS)
def test_every_known_card_matches_its_printed_size_by_the_collection_rule(name, mib, printed):
    gpu = parse_gpu_line("%s, %d" % (name, mib))
    assert gpu["memory_mib"] >= required_mib(gpu["memory_gb"])


def test_a_box_of_every_known_card_keeps_the_order():
    text = "".join("%s, %d\n" % (name, mib) for name, mib, _printed in GPUS)
    gpus = parse_nvidia_smi(text)
    assert [(gpu["name"], gpu["memory_mib"], gpu["memory_gb"]) for gpu in gpus] == list(GPUS)


def test_eight_h100s():
    gpus = parse_nvidia_smi("NVIDIA H100 80GB HBM3, 81559\n" * 8)
    assert len(gpus) == 8 and all(gpu == {"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "memory_gb": 80}
                                  for gpu in gpus)


def test_blank_lines_padding_and_crlf_are_ignored():
    text = "\n\n   NVIDIA L40S ,   46068   \r\n\t\n  Tesla T4,15360\n\n"
    assert parse_nvidia_smi(text) == [{"name": "NVIDIA L40S", "memory_mib": 46068, "memory_gb": 48},
                                      {"name": "Tesla T4", "memory_mib": 15360, "memory_gb": 16}]


@pytest.mark.parametrize("text", [None, "", "\n", "   \n\t\n", "No devices were found", "No devices were found.\n",
                                  "\n  no devices were found  \n"])
def test_no_gpu(text):
    assert parse_nvidia_smi(text) == []


@pytest.mark.parametrize("unknown", ["[N/A]", "[Not Supported]", "N/A", "[n/a]", "[Unknown Error]"])
def test_unknown_memory_keeps_the_size_in_the_name(unknown):
    assert parse_nvidia_smi("NVIDIA H100 80GB HBM3, %s" % unknown) == [
        {"name": "NVIDIA H100 80GB HBM3", "memory_mib": None, "memory_gb": 80}]
    assert parse_nvidia_smi("NVIDIA L4, %s" % unknown) == [{"name": "NVIDIA L4", "memory_mib": None, "memory_gb": None}]


def test_unknown_name_keeps_the_memory():
    assert parse_nvidia_smi("[N/A], 23034") == [{"name": None, "memory_mib": 23034, "memory_gb": 24}]
    assert parse_nvidia_smi("[Not Supported], [Not Supported]") == [
        {"name": None, "memory_mib": None, "memory_gb": None}]


def test_memory_with_its_unit_parses():
    # Queried without nounits, nvidia-smi prints "81559 MiB".
    assert parse_nvidia_smi("NVIDIA H100 PCIe, 81559 MiB") == [
        {"name": "NVIDIA H100 PCIe", "memory_mib": 81559, "memory_gb": 80}]


def test_a_comma_in_a_name_is_kept():
    assert parse_gpu_line("Some GPU, rev 2, 24564") == {
        "name": "Some GPU, rev 2", "memory_mib": 24564, "memory_gb": 24}


@pytest.mark.parametrize("line, reason", [
    ("NVIDIA H100 80GB HBM3", "no comma"),
    ("NVIDIA H100 80GB HBM3 81559", "no comma"),
    (", 81559", "no name"),
    ("NVIDIA H100, ", "not a whole number"),
    ("NVIDIA H100, 80 GB", "not a whole number"),
    ("NVIDIA H100, 81559.5", "not a whole number"),
    ("NVIDIA H100, -1", "not a whole number"),
    ("NVIDIA H100, 0", "not positive"),
    ("NVIDIA H100, lots", "not a whole number"),
    ("name, memory.total [MiB]", "not a whole number"),
])
def test_a_malformed_line_is_an_error_naming_it(line, reason):
    text = "NVIDIA L4, 23034\n\n%s\n" % line
    with pytest.raises(NvidiaSmiOutputError) as raised:
        parse_nvidia_smi(text)
    error = raised.value
    assert (error.line_number, error.line) == (3, line)
    assert reason in str(error) and "line 3" in str(error) and repr(line) in str(error)


def test_the_header_line_is_an_error():
    # The role asks for noheader; a header means the query was not the one the parser reads.
    with pytest.raises(NvidiaSmiOutputError, match="line 1"):
        parse_nvidia_smi("name, memory.total [MiB]\nNVIDIA L4, 23034 MiB\n")


def test_no_devices_among_gpus_is_an_error():
    with pytest.raises(NvidiaSmiOutputError, match="line 2"):
        parse_nvidia_smi("NVIDIA L4, 23034\nNo devices were found\n")


def test_output_must_be_text():
    with pytest.raises(TypeError):
        parse_nvidia_smi(b"NVIDIA L4, 23034")


def test_the_role_asks_nvidia_smi_what_the_parser_reads():
    with open(os.path.join(ROLE_TASKS, "gpus.yml")) as handle:
        assert QUERY in handle.read()
