#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_penalty_info
short_description: List penalized NI Compute (SN27) miners
version_added: 0.1.0
description:
  - Lists this validator's penalties with their reason, who set them and their age (the
    Registration CLI's C(list_p)), and the penalized lists other validators publish in their signed
    W&B runs, each hotkey with its sources.
  - Other validators' runs are read with upstream's filters. A run whose signature does not verify
    is skipped and reported in RV(wandb.skipped_runs), never trusted; a validator at or below
    O(min_validator_stake) is shown with C(honoured=false).
  - Reads only. An unreachable W&B costs at most O(wandb_timeout) seconds and a warning; this
    validator's own penalties are listed regardless.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.info_attributes
options:
  min_validator_stake:
    description:
      - Another validator's list counts as honoured only when its total stake is above this; miners
        honour runs above C(1.024e3) (v1.8.3). From C(0).
    type: float
    default: 1024
seealso:
  - module: neuralinternet.compute.nicompute_penalty
"""

EXAMPLES = r"""
- name: List penalties
  neuralinternet.compute.nicompute_penalty_info:
  register: penalties

- name: Hotkeys that staked validators penalize
  ansible.builtin.debug:
    msg: "{{ penalties.others | selectattr('honoured') | map(attribute='hotkey') | list }}"
"""

RETURN = r"""
penalties:
  description: This validator's blacklist, sorted by hotkey.
  returned: always
  type: list
  elements: dict
  contains:
    hotkey:
      description: The miner's hotkey.
      type: str
    uid:
      description: Its uid, or null when it is not in the metagraph.
      type: int
    reason:
      description: Why it was penalized, or null.
      type: str
    by:
      description: Who penalized it (user@host), or null for a row made elsewhere.
      type: str
    at:
      description: When, seconds since the epoch, or null.
      type: float
    age:
      description: Seconds since then, or null.
      type: int
  sample: [{hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX, uid: 3, reason: no GPU, by: ops@controller,
            at: 1764165600.0, age: 3600}]
others:
  description: Hotkeys in other validators' signed C(penalized_hotkeys), sorted by hotkey.
  returned: always
  type: list
  elements: dict
  contains:
    hotkey:
      description: The penalized miner's hotkey.
      type: str
    uid:
      description: Its uid, or null.
      type: int
    honoured:
      description: Whether at least one source's validator is above O(min_validator_stake).
      type: bool
    sources:
      description: The validators that list it, each with C(validator), C(run_id), C(stake), C(signature_valid), C(honoured), C(own).
      type: list
      elements: dict
  sample: [{hotkey: 5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy, uid: 1, honoured: true,
            sources: [{validator: 5G93MNhjRspQokf1NfnJXxshN2BuwFhW4JDFGSEuMFH3Ahmn, run_id: wfougd6u, stake: 20000.0,
                       signature_valid: true, honoured: true, own: false}]}]
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
      description: Always C(0) here.
      type: int
    skipped_runs:
      description: Runs that were not trusted, each with C(run_id), C(name), C(hotkey) and C(reason).
      type: list
      elements: dict
  sample: {mode: online, read: true, error: null, validator_runs: 2, miner_runs: 0, skipped_runs: []}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._penalty_info import penalty_info


def define_module():
    argument_spec = base_argument_spec()
    argument_spec.update(min_validator_stake=dict(type="float", default=1024))
    return AnsibleModule(argument_spec=argument_spec, supports_check_mode=True)


def main():
    module = define_module()
    run_module(module, lambda: penalty_info(settings_from(module), module.params["min_validator_stake"]))


if __name__ == "__main__":
    main()
