#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_allocation_info
short_description: List this validator's NI Compute (SN27) allocations
version_added: 0.1.0
description:
  - Lists the allocations in the validator database - made by this collection or by the upstream
    Registration CLI - with their state, when they expire, the time left and a ready SSH command
    (the CLI's C(list_a)).
  - With O(in_metagraph=true), only those whose miner still serves an axon in the metagraph (the
    CLI's C(list_ah)).
  - With O(check_status=true), every miner is asked at once whether it still holds the
    allocation's key, and each allocation gets a C(status) by the rules the other modules apply -
    one "not held" proves little (a paused or restarting container answers so too).
  - Reads only; nothing is written, and records are not changed by what miners answer. The
    allocating and deallocating tasks act on those answers.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.info_attributes
options:
  names:
    description:
      - Only the allocations with these names. Names without an allocation are returned in RV(absent).
    type: list
    elements: str
  in_metagraph:
    description:
      - Keep only allocations whose miner is in the metagraph and serves an axon.
    type: bool
    default: false
  check_status:
    description:
      - Ask each miner (all at once, each within O(timeout)) whether it still holds the allocation.
        Needs the wallet, whose hotkey signs the requests.
    type: bool
    default: false
  show_credentials:
    description:
      - Return each allocation's login password. Set C(no_log) on the task when you do.
    type: bool
    default: false
  timeout:
    description:
      - Seconds each miner has to answer O(check_status). Greater than C(0), at most C(3600).
    type: float
    default: 5
seealso:
  - module: neuralinternet.compute.nicompute_allocate
  - module: neuralinternet.compute.nicompute_deallocate
"""

EXAMPLES = r"""
- name: List this validator's allocations
  neuralinternet.compute.nicompute_allocation_info:
  register: listing

- name: Print one line per allocation
  ansible.builtin.debug:
    msg: "{{ listing.allocations | map(attribute='ssh_command') | list }}"

- name: Those whose miner still serves, and whether each miner still holds its box
  neuralinternet.compute.nicompute_allocation_info:
    in_metagraph: true
    check_status: true
  register: live

- name: The password of one box
  neuralinternet.compute.nicompute_allocation_info:
    names: [training-box]
    show_credentials: true
  no_log: true
  register: box
"""

RETURN = r"""
allocations:
  description: The allocations, sorted by miner hotkey.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: The allocation's name; null for one made by the upstream CLI.
      type: str
    hotkey:
      description: The miner's hotkey.
      type: str
    uid:
      description: The miner's uid when known.
      type: int
    ip:
      description: The box's address.
      type: str
    port:
      description: The box's SSH port.
      type: int
    username:
      description: The login user.
      type: str
    password:
      description: The login password; only with O(show_credentials=true).
      type: str
    resource:
      description: The first GPU's name, lower-cased (upstream's C(resource)).
      type: str
    state:
      description:
        - The record's state - V(pending) (being made), V(active), V(unconfirmed) (the miner answered
          "not held"; still published), V(releasing) (unpublished, release not confirmed yet), V(expired).
      type: str
    created_at:
      description: When it was made, seconds since the epoch.
      type: float
    timeline:
      description: Its lifetime in days.
      type: int
    expires_at:
      description: When its timeline ends, seconds since the epoch; null when unknown.
      type: float
    time_left:
      description: Seconds until C(expires_at) (C(0) once past); null when unknown.
      type: int
    ssh_command:
      description: The command that logs in.
      type: str
    error:
      description: The last error recorded for it, or null.
      type: str
    made_here:
      description: Whether this collection made it (it has a name).
      type: bool
    in_metagraph:
      description: Whether its miner is in the metagraph; null unless O(in_metagraph) or O(check_status).
      type: bool
    serving:
      description: Whether its miner serves an axon; null unless O(in_metagraph) or O(check_status).
      type: bool
    status:
      description:
        - With O(check_status) - V(live) (the miner holds the key), V(paused) ("not held" from a box
          M(neuralinternet.compute.nicompute_container) paused, which answers so to everyone),
          V(unconfirmed) ("not held", which proves little until it lasted O(unconfirmed_grace), or for
          an unpublished one a miner sync period), V(released), V(unreachable) (no answer, or not in the
          metagraph). Null for pending and expired records and without O(check_status).
      type: str
    status_reason:
      description: What the status rests on, or why the miner was not asked; null without O(check_status).
      type: str
  sample:
    - {name: training-box, hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX, uid: 3, ip: 203.0.113.7,
       port: 4444, username: root, resource: nvidia h100 80gb hbm3, state: active, created_at: 1764165600.0,
       timeline: 1, expires_at: 1764252000.0, time_left: 86000, ssh_command: ssh -p 4444 root@203.0.113.7,
       error: null, made_here: true, in_metagraph: true, serving: true, status: live, status_reason: null}
absent:
  description: Names in O(names) without an allocation.
  returned: always
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation_info import allocation_info
from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)


def define_module():
    argument_spec = base_argument_spec()
    argument_spec.update(
        names=dict(type="list", elements="str"),
        in_metagraph=dict(type="bool", default=False),
        check_status=dict(type="bool", default=False),
        show_credentials=dict(type="bool", default=False),
        timeout=dict(type="float", default=5),
    )
    return AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)


def main():
    module = define_module()
    params = module.params
    run_module(module, lambda: allocation_info(settings_from(module), params["names"], params["in_metagraph"],
                                               params["check_status"], params["show_credentials"],
                                               params["timeout"]))


if __name__ == "__main__":
    main()
