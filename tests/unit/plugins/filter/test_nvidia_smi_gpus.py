# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# The nvidia_smi_gpus filter: what a playbook hands it (stdout or stdout_lines), what it gives back,
# and errors a user can act on.

from __future__ import annotations

import pytest

from ansible.errors import AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar

try:
    from ansible.template import trust_as_template
except ImportError:  # ansible-core < 2.19 templates every string
    def trust_as_template(value):
        return value

from ansible_collections.neuralinternet.compute.plugins.filter.nvidia_smi_gpus import FilterModule, nvidia_smi_gpus
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.gpu_models import GPU_MODELS

GPUS = GPU_MODELS
TWO_H100 = "NVIDIA H100 80GB HBM3, 81559\nNVIDIA H100 80GB HBM3, 81559\n"
H100 = {"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "memory_gb": 80}


def test_registered_as_nvidia_smi_gpus():
    assert FilterModule().filters() == {"nvidia_smi_gpus": nvidia_smi_gpus}


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=[item[0] for item in GPUS])
def test_every_known_card(name, mib, printed):
    assert nvidia_smi_gpus("%s, %d" % (name, mib)) == [{"name": name, "memory_mib": mib, "memory_gb": printed}]


def test_stdout_and_stdout_lines_give_the_same():
    assert nvidia_smi_gpus(TWO_H100) == nvidia_smi_gpus(TWO_H100.splitlines()) == [H100, H100]


@pytest.mark.parametrize("output", [None, "", [], "No devices were found"])
def test_no_gpu_is_an_empty_list(output):
    assert nvidia_smi_gpus(output) == []


def test_a_malformed_line_is_a_filter_error_naming_it():
    with pytest.raises(AnsibleFilterError, match=r"nvidia_smi_gpus: nvidia-smi output line 2 .*'garbage here'"):
        nvidia_smi_gpus("NVIDIA L4, 23034\ngarbage here\n")


def test_the_whole_registered_result_is_refused_with_a_hint():
    with pytest.raises(AnsibleFilterError, match="stdout"):
        nvidia_smi_gpus({"stdout": TWO_H100, "rc": 0})


@pytest.mark.parametrize("output", [42, ["NVIDIA L4, 23034", 7]])
def test_other_types_are_refused(output):
    with pytest.raises(AnsibleFilterError, match="nvidia_smi_gpus expects"):
        nvidia_smi_gpus(output)


def test_names_from_the_box_are_never_templated():
    # A GPU name is whatever the box prints; kept in a variable (set_fact), it must stay text.
    gpus = nvidia_smi_gpus("{{ 7 * 6 }}, 24564")
    templar = Templar(loader=DataLoader(), variables={"gpus": gpus})
    assert templar.template(trust_as_template("{{ 7 * 6 }}")) == 42  # this templar does template
    assert templar.template(trust_as_template("{{ gpus[0].name }}")) == "{{ 7 * 6 }}"
    assert templar.template(trust_as_template("{{ gpus[0].memory_gb }}")) == 24
