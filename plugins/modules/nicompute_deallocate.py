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
  - Asks each allocation's miner to release it with the allocation's stored public key (the
    Registration CLI's C(d)), then removes the record and publishes the new allocated list.
  - When a miner does not answer, the record is kept in state C(releasing) with the error and
    the task fails, so that a later run can retry; nothing is silently forgotten.
  - A miner that answers that it no longer holds the key (the timeline ended) counts as released.
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
      - Remove the local record even when the miner does not confirm the release. The miner then
        keeps the box until its timeline ends.
    type: bool
    default: false
  timeout:
    description:
      - Seconds each miner has to answer. Greater than C(0), at most C(3600).
    type: float
    default: 12
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
  description: One entry per allocation found, with C(result) (released, forgotten, failed, would release).
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
  description: Outcome of publishing the allocated hotkeys to W&B.
  returned: when changed
  type: dict
  sample: {mode: disabled, published: false, error: null}
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
        timeout=dict(type="float", default=12),
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
