#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_allocate
short_description: Allocate a GPU container from an NI Compute (SN27) miner
version_added: 0.1.0
description:
  - Allocates a container from a miner of the NI Compute Subnet (Bittensor netuid 27), either
    the best miner that meets GPU/CPU/RAM/disk requirements (the Registration CLI's C(a)) or a
    given miner (C(a_hotkey)), and returns how to reach it over SSH.
  - "Candidates come from the validator database's miner specs and the metagraph: penalized
    and already allocated miners are never chosen; the rest are ranked by proof-of-GPU score,
    then incentive. Availability is checked in ranked batches (the 16 best candidates, then twice
    as many whenever no free miner answered yet) until the best-ranked free miner is known, so
    silent miners cost about one O(check_timeout) in all; then allocation is tried in ranked
    order, each attempt bounded by O(allocate_timeout)."
  - Before a miner is asked, the run claims it in one database transaction - a pending record
    with the allocation's public key, the run's owner (host, pid, process start time) and a lease.
    A miner that another run claimed meanwhile is skipped like a busy one and costs no attempt,
    so many playbooks may allocate from one database at once.
  - Records left by an interrupted run - whose process is gone or whose lease expired - are
    reconciled first (the miner is asked to release the key), so a granted allocation is never
    lost. Records of runs still in flight are left alone.
  - Idempotent by O(name) - when an allocation with this name is still held by its miner it is
    returned unchanged. A rerun that asks for something else (another O(hotkey), other
    requirements) fails and names the difference; a different O(timeline) only warns.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.attributes
options:
  name:
    description:
      - Label of the allocation, unique in the database. Repeated runs with the same name return
        the same allocation.
    type: str
    required: true
  hotkey:
    description:
      - ss58 hotkey of the miner to allocate from. Mutually exclusive with the requirement options.
    type: str
  gpu_type:
    description:
      - GPU model to require, matched case-insensitively as a substring of the miner's first GPU
        name, ignoring spaces and hyphens (V(h100), V(A100), V(rtx4090)).
    type: str
  gpu_memory:
    description:
      - Memory per GPU in GB as printed on the card (an H100 80GB matches V(80)). Greater than
        C(0), at most C(1024).
    type: float
  gpu_count:
    description:
      - Number of GPUs. Defaults to C(1) when O(gpu_type) or O(gpu_memory) is set. At most C(64).
    type: int
  cpu_count:
    description:
      - Minimum number of CPU cores, at most C(4096).
    type: int
  ram:
    description:
      - Minimum available RAM in GB (10^9 bytes), at most C(1000000).
    type: float
  disk:
    description:
      - Minimum free disk in GB (10^9 bytes), at most C(10000000).
    type: float
  timeline:
    description:
      - Duration of the allocation in days. The miner releases it when it ends.
      - From C(1) to C(36500). Upstream miners schedule the release with Python's C(datetime), which
        fails past the year 9999 only after the container started (the box would leak), so the
        bound stays far inside what every miner accepts.
    type: int
    default: 1
  ssh_public_key:
    description:
      - An SSH public key, as text or as the path of a C(.pub) file (its first key), that the box
        accepts for login. Sent as the Allocate synapse's C(docker_requirement.ssh_key).
      - One key on one line, without quotes - miners write it with C(echo '<key>'), so a second line
        would break the container build.
    type: str
  base_image:
    description:
      - Container base image passed to the miner. Ignored by v1.8.3 miners, which always build
        from their own SSH image; sent for miners that honour it.
    type: str
    default: ubuntu
  dockerfile:
    description:
      - Shell commands the miner runs while building the container, as one Dockerfile
        C(RUN <dockerfile>) line (v1.8.3 miners); not a whole Dockerfile.
    type: str
    default: ""
  check_timeout:
    description:
      - Seconds each miner has to answer the availability check. All miners are asked at once,
        so silent miners cost one timeout in total. Greater than C(0), at most C(600).
    type: float
    default: 5
  allocate_timeout:
    description:
      - Seconds each allocation attempt may take. Greater than C(0), at most C(3600).
      - A miner kills, builds and runs a container before it answers; upstream's CLI waits 60 s.
        An attempt that times out keeps its record (unpublished) for later runs to release - the
        miner may still be building - and the miner releases an allocation no validator publishes
        at its next W&B check.
    type: float
    default: 60
  max_attempts:
    description:
      - How many available miners are asked to allocate, in ranked order, before giving up
        (C(1) to C(256)). Miners claimed by another run meanwhile are skipped without counting.
    type: int
    default: 3
  min_validator_stake:
    description:
      - Smallest total stake of the caller's hotkey on the subnet that allocating accepts.
        Miners keep an allocation only while a validator above C(1.024e3) stake lists it in its
        signed W&B run (v1.8.3), so below it the box would be released at the miner's next W&B
        check. C(0) allocates anyway.
    type: float
    default: 1024
  key_size:
    description:
      - Size of the per-allocation RSA key that the miner encrypts the credentials with.
    type: int
    choices: [2048, 3072, 4096]
    default: 2048
  return_password:
    description:
      - Return the box's login password in RV(allocation.password). Set C(no_log) on the task
        when you do; key login with O(ssh_public_key) needs no password.
    type: bool
    default: false
notes:
  - Real miners release allocations that no validator publishes on W&B; see O(wandb_mode).
"""

EXAMPLES = r"""
- name: Allocate one H100 for two days
  neuralinternet.compute.nicompute_allocate:
    name: training-box
    gpu_type: h100
    gpu_memory: 80
    timeline: 2
    ssh_public_key: ~/.ssh/id_ed25519.pub
  register: box

- name: Allocate from a chosen miner (the CLI's a_hotkey)
  neuralinternet.compute.nicompute_allocate:
    name: pinned-box
    hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX
    ssh_public_key: "{{ lookup('ansible.builtin.file', '~/.ssh/id_ed25519.pub') }}"

- name: See which miners would be chosen, without allocating
  neuralinternet.compute.nicompute_allocate:
    name: dry-run
    gpu_type: a100
  check_mode: true
  register: plan
"""

RETURN = r"""
allocation:
  description: The allocation, or null in check mode.
  returned: success
  type: dict
  contains:
    name:
      description: Label of the allocation.
      type: str
      returned: success
      sample: training-box
    hotkey:
      description: Miner hotkey.
      type: str
      returned: success
      sample: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX
    uid:
      description: Miner uid on the subnet.
      type: int
      returned: success
      sample: 12
    ip:
      description: Address of the box (the miner's axon IP).
      type: str
      returned: success
      sample: 203.0.113.7
    port:
      description: SSH port of the box.
      type: int
      returned: success
      sample: 4444
    username:
      description: Login user.
      type: str
      returned: success
      sample: root
    resource:
      description: Lower-cased first GPU name, as upstream records it.
      type: str
      returned: success
      sample: nvidia h100 80gb hbm3
    state:
      description:
        - Record state, V(active) or V(unconfirmed) (the miner said "not held", which a paused box
          says too; kept and published for O(unconfirmed_grace) seconds).
      type: str
      returned: success
      sample: active
    created_at:
      description: Unix time the allocation was requested.
      type: float
      returned: success
      sample: 1764075600.0
    timeline:
      description: Days requested.
      type: int
      returned: success
      sample: 2
    ssh_command:
      description: A command that logs in.
      type: str
      returned: success
      sample: ssh -p 4444 root@203.0.113.7
    password:
      description: Login password; only when O(return_password=true).
      type: str
      returned: when requested
      sample: Ab3dE5gH7j
candidates:
  description:
    - Miners still to choose from, in ranked order (the plan in check mode) - those that answered
      the availability check as free (C(checked) true), then those whose answer was not needed
      because a better-ranked miner was free (C(checked) false; they are checked before an attempt).
  returned: when miners were ranked
  type: list
  elements: dict
  sample: [{hotkey: 5F3..., uid: 12, resource: nvidia h100 80gb hbm3, score: 0.93, incentive: 0.01, ip: 203.0.113.7,
            checked: true}]
rejected:
  description: Every miner not chosen, with C(reason).
  returned: when miners were ranked
  type: list
  elements: dict
  sample: [{hotkey: 5D4..., uid: 3, reason: penalized}]
attempts:
  description: Allocation attempts in order, with C(result) (allocated, refused, no answer, released).
  returned: when miners were contacted to allocate
  type: list
  elements: dict
  sample: [{hotkey: 5F3..., uid: 12, result: allocated, elapsed: 0.41}]
reconciled:
  description:
    - Records left by runs that are gone or whose lease expired, and allocations past their
      timeline, with C(why) and what was (or in check mode would be) done with each.
  returned: always
  type: list
  elements: dict
  sample: [{hotkey: 5F3..., name: training-box, state: pending, result: released, changed: true}]
wandb:
  description:
    - Outcome of publishing the allocated and penalized hotkeys to W&B. C(unchanged) is true when W&B
      already had these lists from an earlier task, so nothing was sent.
    - When C(published) is false (and C(mode) is not V(disabled)) the task also warns; the next task of
      any nicompute module publishes again.
  returned: when the task did not stop before publishing (not in check mode)
  type: dict
  sample: {mode: online, published: true, error: null, run_id: a1b2c3d4, unchanged: false}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation import (
    AllocationRequest,
    allocate,
    read_ssh_public_key,
)

REQUIREMENT_OPTIONS = ("gpu_type", "gpu_memory", "gpu_count", "cpu_count", "ram", "disk")


def build_request(params):
    return AllocationRequest(
        name=params["name"],
        hotkey=params["hotkey"],
        requirements=dict((key, params[key]) for key in REQUIREMENT_OPTIONS),
        timeline=params["timeline"],
        ssh_public_key=read_ssh_public_key(params["ssh_public_key"]),
        base_image=params["base_image"],
        dockerfile=params["dockerfile"],
        check_timeout=params["check_timeout"],
        allocate_timeout=params["allocate_timeout"],
        max_attempts=params["max_attempts"],
        key_size=params["key_size"],
        return_password=params["return_password"],
        min_validator_stake=params["min_validator_stake"],
    )


def define_module():
    argument_spec = base_argument_spec()
    argument_spec.update(
        name=dict(type="str", required=True),
        hotkey=dict(type="str", no_log=False),
        gpu_type=dict(type="str"),
        gpu_memory=dict(type="float"),
        gpu_count=dict(type="int"),
        cpu_count=dict(type="int"),
        ram=dict(type="float"),
        disk=dict(type="float"),
        timeline=dict(type="int", default=1),
        ssh_public_key=dict(type="str"),
        base_image=dict(type="str", default="ubuntu"),
        dockerfile=dict(type="str", default=""),
        check_timeout=dict(type="float", default=5),
        allocate_timeout=dict(type="float", default=60),
        min_validator_stake=dict(type="float", default=1024),
        max_attempts=dict(type="int", default=3),
        key_size=dict(type="int", default=2048, choices=[2048, 3072, 4096]),
        return_password=dict(type="bool", default=False, no_log=False),
    )
    return AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("hotkey", option) for option in REQUIREMENT_OPTIONS],
        supports_check_mode=True,
    )


def main():
    module = define_module()
    run_module(module, lambda: allocate(settings_from(module), build_request(module.params), module.check_mode))


if __name__ == "__main__":
    main()
