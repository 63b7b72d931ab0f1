#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_penalty
short_description: Penalize or depenalize NI Compute (SN27) miners
version_added: 0.1.0
description:
  - Adds miners to the validator's penalty blacklist (the Registration CLI's C(p_hotkey)) or removes
    them (C(dp_hotkey)), and publishes the list as C(penalized_hotkeys) in the validator's signed W&B run.
  - "What a penalty does, truthfully: a penalized miner is never chosen by
    M(neuralinternet.compute.nicompute_allocate) and shows as penalized in every listing of this
    collection. Upstream SN27 validators do not score from it (v1.8.3 reads only one hard-coded
    validator's checklist), and it does not release an allocation the miner holds."
  - Each penalty keeps its O(reason), who set it (user@host) and when, in the blacklist row's details.
  - A hotkey that is neither in the validator's miner specs nor in the metagraph is an error naming
    it, and nothing is written. Removing works for any blacklisted hotkey, even one that left the subnet.
  - Idempotent - penalizing a penalized miner again changes nothing unless a different O(reason) is
    given, which replaces the old one.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.attributes
options:
  hotkeys:
    description:
      - The miners' hotkeys (ss58). A comma-separated string is accepted, as the CLI did.
    type: list
    elements: str
    required: true
  state:
    description:
      - V(present) penalizes, V(absent) removes the penalty.
    type: str
    choices: [present, absent]
    default: present
  reason:
    description:
      - Why, kept with the penalty (one line, at most 500 characters). Only with O(state=present).
    type: str
seealso:
  - module: neuralinternet.compute.nicompute_penalty_info
"""

EXAMPLES = r"""
- name: Penalize two miners, like the CLI's "p_hotkey hk1,hk2"
  neuralinternet.compute.nicompute_penalty:
    hotkeys: "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX,5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"
    reason: box handed over without a GPU

- name: Lift a penalty
  neuralinternet.compute.nicompute_penalty:
    hotkeys: [5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX]
    state: absent
"""

RETURN = r"""
penalized:
  description: Every blacklisted hotkey after the task (or what it would be, in check mode).
  returned: always
  type: list
  elements: str
  sample: [5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX]
added:
  description: Hotkeys that were (or would be) newly penalized.
  returned: always
  type: list
  elements: str
  sample: [5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX]
updated:
  description: Penalized hotkeys whose reason was (or would be) replaced.
  returned: always
  type: list
  elements: str
  sample: []
removed:
  description: Hotkeys whose penalty was (or would be) lifted.
  returned: always
  type: list
  elements: str
  sample: []
wandb:
  description:
    - Outcome of publishing the allocated and penalized hotkeys to W&B; C(unchanged) is true when W&B
      already had these lists. A failed publication warns, and the next task of any nicompute module
      publishes again.
  returned: when not in check mode
  type: dict
  contains:
    mode:
      description: The effective O(wandb_mode).
      type: str
    published:
      description: Whether the lists reached W&B.
      type: bool
    error:
      description: Why not, or null.
      type: str
    run_id:
      description: The validator's run.
      type: str
    unchanged:
      description: Whether W&B already had these lists.
      type: bool
  sample: {mode: online, published: true, error: null, run_id: a1b2c3d4, unchanged: false}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._penalties import STATES, penalize


def define_module():
    argument_spec = base_argument_spec()
    argument_spec.update(
        hotkeys=dict(type="list", elements="str", required=True, no_log=False),
        state=dict(type="str", default="present", choices=list(STATES)),
        reason=dict(type="str"),
    )
    return AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)


def main():
    module = define_module()
    params = module.params
    run_module(module, lambda: penalize(settings_from(module), params["hotkeys"], params["state"], params["reason"],
                                        module.check_mode))


if __name__ == "__main__":
    main()
