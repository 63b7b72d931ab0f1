#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_resources
short_description: List the GPU resources of NI Compute (SN27) miners
version_added: 0.1.0
description:
  - Lists every miner of the subnet with its GPUs, CPUs, RAM, disk, proof-of-GPU score and
    incentive, and whether it can be allocated (the Registration CLI's C(list_r)), with the CLI's
    two summaries - instances per GPU model and count, and GPUs per model.
  - "Each row has a C(status), the first that applies of: V(allocated) (held by this validator's
    database), V(penalized) (in this validator's blacklist), V(offline) (not in the metagraph, or its
    axon does not serve), V(reserved) (listed in the signed W&B run of another validator that miners
    honour - the signature verifies and its stake is above O(min_validator_stake)), V(invalid) (its
    specs are malformed or missing; the row says why and never hides the others), V(available)."
  - Specs come from the validator database (C(miner_details), O(source=database)) or from the
    miners' own signed W&B runs (O(source=wandb), for operators without a validator database);
    runs whose signature does not verify, or whose hotkey is not in the metagraph, are skipped and
    reported in RV(wandb.skipped_runs).
  - Reads only; nothing is written. With O(source=database) and W&B disabled it imports neither
    bittensor nor wandb (the metagraph comes from O(metagraph_file) or its on-disk cache).
  - An unreachable W&B costs at most O(wandb_timeout) seconds and a warning; the listing stands.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.info_attributes
options:
  db_path:
    description:
      - Required with O(source=database). With O(source=wandb) it is optional and adds this
        validator's allocations, penalties and scores.
    required: false
  source:
    description:
      - Where the miners' specs come from.
    type: str
    choices: [database, wandb]
    default: database
  gpu_type:
    description:
      - Keep miners whose GPU name contains this text (case, spaces and dashes ignored), e.g. V(h100).
    type: str
  gpu_memory:
    description:
      - Keep miners whose GPUs have at least this memory each, in GB as printed on the card (the
        matching rule of M(neuralinternet.compute.nicompute_allocate)). Greater than C(0), at most C(1024).
    type: float
  status:
    description:
      - Keep miners with one of these statuses.
    type: list
    elements: str
    choices: [available, allocated, reserved, penalized, offline, invalid]
  min_validator_stake:
    description:
      - Another validator's W&B list reserves a miner only when that validator's total stake is above
        this; miners honour runs above C(1.024e3) (v1.8.3). From C(0).
    type: float
    default: 1024
seealso:
  - module: neuralinternet.compute.nicompute_allocate
  - module: neuralinternet.compute.nicompute_allocation_info
"""

EXAMPLES = r"""
- name: List every miner
  neuralinternet.compute.nicompute_resources:
  register: listing

- name: Print the table and both summaries
  ansible.builtin.debug:
    msg: "{{ (listing.resources | neuralinternet.compute.resource_table(summary=listing.summary)).split('\n') }}"

- name: Available H100s with at least 80 GB each
  neuralinternet.compute.nicompute_resources:
    gpu_type: h100
    gpu_memory: 80
    status: [available]

- name: From the miners' signed W&B runs, without a validator database
  neuralinternet.compute.nicompute_resources:
    source: wandb
    wandb_api_key: "{{ lookup('ansible.builtin.env', 'WANDB_API_KEY') }}"
"""

RETURN = r"""
resources:
  description: One row per miner that serves an axon, reports specs or is held by this validator, by uid.
  returned: always
  type: list
  elements: dict
  contains:
    hotkey:
      description: The miner's hotkey.
      type: str
    uid:
      description: The miner's uid, or null when it is not in the metagraph.
      type: int
    gpu_name:
      description: The first GPU's name as its driver reports it; null for a CPU-only or invalid row.
      type: str
    gpu_memory_gb:
      description: Memory per GPU in GB as printed on the card (a request for this size matches).
      type: int
    gpu_memory_mib:
      description: Memory per GPU in MiB as the driver reports it.
      type: int
    gpu_count:
      description: Number of GPUs (C(0) for a CPU-only miner).
      type: int
    cpu_count:
      description: Number of CPUs.
      type: int
    ram_gb:
      description: Available RAM, decimal GB.
      type: float
    disk_gb:
      description: Free disk, decimal GB.
      type: float
    score:
      description: The validator's proof-of-GPU score (C(stats.score)), or null.
      type: float
    incentive:
      description: The miner's incentive in the metagraph, or null.
      type: float
    status:
      description: One of V(allocated), V(penalized), V(offline), V(reserved), V(invalid), V(available).
      type: str
    reason:
      description: Why the miner is not available; null when it is.
      type: str
    reserved_by:
      description: Hotkeys of the other validators whose honoured W&B lists hold the miner.
      type: list
      elements: str
    allocation:
      description: Name of this validator's allocation on the miner, or null.
      type: str
  sample:
    - {hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX, uid: 1, gpu_name: NVIDIA H100 80GB HBM3,
       gpu_memory_gb: 80, gpu_memory_mib: 81559, gpu_count: 8, cpu_count: 128, ram_gb: 1924.1, disk_gb: 3297.5,
       score: 0.63, incentive: 0.08, status: available, reason: null, reserved_by: [], allocation: null}
summary:
  description: The listed rows summed up.
  returned: always
  type: dict
  contains:
    miners:
      description: Number of rows.
      type: int
    by_status:
      description: Rows per status.
      type: dict
    instances:
      description: Miners per GPU name and GPU count, and how many of them are available.
      type: list
      elements: dict
    gpus:
      description: GPUs per GPU name in total, and how many are on available miners.
      type: list
      elements: dict
  sample:
    miners: 2
    by_status: {available: 1, allocated: 1, penalized: 0, offline: 0, reserved: 0, invalid: 0}
    instances: [{gpu_name: NVIDIA H100 80GB HBM3, gpu_count: 8, instances: 2, available: 1}]
    gpus: [{gpu_name: NVIDIA H100 80GB HBM3, total: 16, available: 8}]
source:
  description: Where the specs came from.
  returned: always
  type: str
  sample: database
wandb:
  description: What was read from W&B.
  returned: always
  type: dict
  contains:
    mode:
      description: The effective O(wandb_mode).
      type: str
    read:
      description: Whether W&B was read.
      type: bool
    error:
      description: Why W&B could not be read, or null.
      type: str
    validator_runs:
      description: Validators' runs whose signature verified.
      type: int
    miner_runs:
      description: Miners whose signed specs run was used (O(source=wandb)).
      type: int
    skipped_runs:
      description: Runs that were not trusted, each with C(run_id), C(name), C(hotkey) and C(reason).
      type: list
      elements: dict
  sample: {mode: online, read: true, error: null, validator_runs: 2, miner_runs: 0, skipped_runs: []}
ansible_facts:
  description: Facts set by the task.
  returned: always
  type: dict
  contains:
    nicompute_resources:
      description:
        - The status of each listed miner by hotkey, for later tasks and plays on the host (the rows
          themselves are in RV(resources)).
        - Not the rows again - Ansible copies and walks a host's facts for every later task.
      type: dict
      sample: {5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX: available}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._resources import (
    SOURCES,
    STATUSES,
    ResourceFilter,
    list_resources,
)


def define_module():
    argument_spec = base_argument_spec()
    argument_spec["db_path"]["required"] = False
    argument_spec.update(
        source=dict(type="str", default="database", choices=list(SOURCES)),
        gpu_type=dict(type="str"),
        gpu_memory=dict(type="float"),
        status=dict(type="list", elements="str", choices=list(STATUSES)),
        min_validator_stake=dict(type="float", default=1024),
    )
    return AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)


def main():
    module = define_module()
    params = module.params
    row_filter = ResourceFilter(gpu_type=params["gpu_type"], gpu_memory=params["gpu_memory"],
                                status=tuple(params["status"] or ()))
    run_module(module, lambda: list_resources(settings_from(module), params["source"], row_filter,
                                              params["min_validator_stake"]))


if __name__ == "__main__":
    main()
