#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_deallocate
short_description: Release NI Compute (SN27) allocations
version_added: 0.1.0
description:
  - Unpublishes each allocation at once (it leaves the validator's C(allocation) table and the
    published C(allocated_hotkeys)), then asks its miner to release it with the allocation's stored
    public key (the Registration CLI's C(d)). SN27 miners release what no staked validator
    publishes at their next W&B check, so an unpublished allocation ends even when its miner never
    answers.
  - The record is removed when the miner confirms the release, or when, one O(miner_sync_period)
    after unpublishing, the miner no longer holds the key. Until then it is kept in state
    C(releasing), outside the published list, and later tasks retry the direct release.
  - A miner's "not released" proves little (a failed kill or an earlier self-release answers so
    too), so it is never taken as released on its own.
  - The task fails when a release could not start, or when a miner did not confirm and the
    unpublished list did not reach W&B (then nothing makes the miner let go yet).
  - An allocation still being made by another run (a pending record whose run is alive) is not
    touched; it is reported as failed.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.attributes
options:
  hotkeys:
    description:
      - Miner hotkeys whose allocations to release. A comma-separated string is accepted, as
        the CLI did.
      - A hotkey that is neither allocated nor on the subnet is reported in RV(unknown); the task
        fails only when every hotkey is unknown.
      - An empty entry (V(''), V(',,')) is an error, and so is giving no hotkey and no name.
    type: list
    elements: str
  names:
    description:
      - Names of allocations to release (as given to M(neuralinternet.compute.nicompute_allocate)).
        Names without an allocation are reported in RV(absent).
    type: list
    elements: str
  force:
    description:
      - Remove the local record even when the miner does not confirm the release. The allocation
        is unpublished first, so the miner releases the box at its next W&B check once the new list
        reached W&B; when it did not (or W&B is off), only the end of its timeline does. Nothing is
        left to retry the direct release.
    type: bool
    default: false
  timeout:
    description:
      - Seconds each miner has to answer (upstream waits 60 s). Greater than C(0), at most C(3600).
    type: float
    default: 60
"""

EXAMPLES = r"""
- name: Release one allocation by name
  neuralinternet.compute.nicompute_deallocate:
    names: [training-box]

- name: Release several miners at once, like the CLI's "d hk1,hk2"
  neuralinternet.compute.nicompute_deallocate:
    hotkeys: "5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX,5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"

- name: Drop a record whose miner is gone for good
  neuralinternet.compute.nicompute_deallocate:
    names: [old-box]
    force: true
"""

RETURN = r"""
deallocations:
  description:
    - One entry per allocation found, with C(result) - V(released) (the miner confirmed, or no longer
      held the key a sync period after unpublishing), V(unpublished) (kept as releasing; the miner lets
      go at its next W&B check; with a C(warning)), V(forgotten) (O(force)), V(expired; record removed),
      V(failed) (with C(error)), or V(would release) in check mode.
  returned: always
  type: list
  elements: dict
  sample: [{hotkey: 5F3..., name: training-box, result: released}]
unknown:
  description: Hotkeys that are neither allocated nor registered on the subnet.
  returned: always
  type: list
  elements: str
  sample: []
absent:
  description: Hotkeys on the subnet and names that have no allocation (nothing to release).
  returned: always
  type: list
  elements: str
  sample: [old-box]
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

from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation import deallocate
from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)


def define_module():
    argument_spec = base_argument_spec()
    argument_spec.update(
        hotkeys=dict(type="list", elements="str", no_log=False),
        names=dict(type="list", elements="str"),
        force=dict(type="bool", default=False),
        timeout=dict(type="float", default=60),
    )
    return AnsibleModule(
        argument_spec=argument_spec,
        required_one_of=[("hotkeys", "names")],
        supports_check_mode=True,
    )


def main():
    module = define_module()
    params = module.params
    run_module(module, lambda: deallocate(settings_from(module), params["hotkeys"], params["names"], params["force"],
                                          params["timeout"], module.check_mode))


if __name__ == "__main__":
    main()
