# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
name: nvidia_smi_gpus
short_description: Parse the GPU list that nvidia-smi prints into name and memory per GPU
version_added: 0.1.0
description:
  - Turns the output of C(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits)
    into a list with one dictionary per GPU, in the order nvidia-smi prints them.
  - Blank lines and spaces around fields are ignored. A field that the driver reports as C([N/A]) or
    C([Not Supported]) becomes null. C(No devices were found) (and empty output) gives an empty list.
  - A memory figure may carry the unit (C(81559 MiB)), so output queried without C(nounits) parses too.
  - Any other line that is not C(name, memory) - a missing comma, an empty name, memory that is not a
    whole positive number of MiB - is an error that names the line.
  - The role C(neuralinternet.compute.gpu_box) uses it to report a box's GPUs and compare them with
    what was expected.
options:
  _input:
    description:
      - The output of the query above, as one string (a registered result's C(stdout)) or a list of
        lines (C(stdout_lines)).
    type: raw
    required: true
author:
  - neuralinternet.compute contributors (@neuralinternet)
"""

EXAMPLES = r"""
- name: Ask the GPUs for their names and memory
  ansible.builtin.command:
    cmd: nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits
  register: smi
  changed_when: false

# 'NVIDIA H100 80GB HBM3, 81559' twice gives
# [{"name": "NVIDIA H100 80GB HBM3", "memory_mib": 81559, "memory_gb": 80}, ...]
- name: Parse them
  ansible.builtin.set_fact:
    gpus: "{{ smi.stdout | neuralinternet.compute.nvidia_smi_gpus }}"

- name: Say what the box has
  ansible.builtin.debug:
    msg: "{{ gpus | length }} GPUs: {{ gpus | map(attribute='name') | unique | join(', ') }}"
"""

RETURN = r"""
_value:
  description:
    - One dictionary per GPU, in the order nvidia-smi prints them; empty when there is none.
    - C(name) is the model as the driver reports it, C(memory_mib) the total memory in MiB as
      nvidia-smi prints it (MiB, 2^20 bytes), and C(memory_gb) the size printed on the card in
      decimal GB - the size in the model name when it has one (C(NVIDIA A100-SXM4-80GB)), else the
      largest printed size that a request would match (a card of M MiB matches a printed size G
      when M >= ceil(G * 10^9 / 2^20)). Each is null when nvidia-smi did not know it.
  type: list
  elements: dict
  sample:
    - name: NVIDIA H100 80GB HBM3
      memory_mib: 81559
      memory_gb: 80
    - name: NVIDIA L40S
      memory_mib: 46068
      memory_gb: 48
"""

from collections.abc import Mapping

from ansible.errors import AnsibleFilterError
from ansible.utils.unsafe_proxy import wrap_var

from ansible_collections.neuralinternet.compute.plugins.module_utils._gpu_probe import (
    NvidiaSmiOutputError,
    parse_nvidia_smi,
)


def _text(output):
    if output is None or isinstance(output, str):
        return output
    if isinstance(output, Mapping):
        raise AnsibleFilterError("nvidia_smi_gpus expects nvidia-smi's output, got a dict "
                                 "(pass the registered result's stdout, not the whole result)")
    if isinstance(output, (list, tuple)):
        if not all(isinstance(line, str) for line in output):
            raise AnsibleFilterError("nvidia_smi_gpus expects a list of lines (strings)")
        return "\n".join(output)
    raise AnsibleFilterError("nvidia_smi_gpus expects nvidia-smi's output as a string or a list of lines, got %s"
                             % type(output).__name__)


def nvidia_smi_gpus(output):
    """The GPUs in `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits` output."""
    try:
        gpus = parse_nvidia_smi(_text(output))
    except NvidiaSmiOutputError as error:
        raise AnsibleFilterError("nvidia_smi_gpus: %s" % error)
    # The names come from the box: never let them be templated.
    return wrap_var(gpus)


class FilterModule:
    def filters(self):
        return {"nvidia_smi_gpus": nvidia_smi_gpus}
