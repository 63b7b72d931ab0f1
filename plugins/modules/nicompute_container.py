#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: nicompute_container
short_description: Restart, pause, resume or re-key the container of an NI Compute (SN27) allocation
version_added: 0.1.0
description:
  - Sends the SN27 protocol's docker actions to the miner of one of this validator's allocations,
    found by O(name) or O(hotkey) - C(restart), C(pause), C(resume) (sent as upstream's C(unpause)),
    C(exchange_key) - or asks the miner whether it still holds the allocation (C(status)).
  - Every request carries the allocation's stored public key and C(timeline=1) (with C(0) a miner
    clears its public "allocated" marker).
  - SN27 miners (v1.8.3) run docker actions for any caller, so the module refuses, before anything
    is sent, to act on an allocation that is not this validator's - no record in O(db_path) for the
    name or hotkey, a record without a public key, or one that is pending, releasing or expired.
    An allocation the upstream Registration CLI made (same validator database) is this validator's.
  - The miner's real answer is reported in RV(reply). A miner that does not answer (timeout, HTTP
    error, or an answer without a status) fails the task, naming what happened; so does an answer
    of status false to an action.
  - The container's state (C(running) or C(paused)) is kept with the allocation's record. A pause
    of a box recorded paused, or a resume of one recorded running, sends nothing and reports
    C(changed=false); C(restart) and C(exchange_key) always act. When the miner does not answer a
    pause, the box is recorded paused (it may be) until a miner's "held" answer says it runs.
  - A paused container answers "not held" to the status request, as it does for everyone. While
    the record says paused, that answer is no evidence that the allocation is gone - RV(status) is
    V(paused), and M(neuralinternet.compute.nicompute_allocate) reruns keep the allocation.
  - C(exchange_key) first asks whether the container runs (a paused or restarting container
    answers success without changing its keys), then replaces the key; the miner restarts the
    container, which ends running sessions. With O(key_type=user) the record's key becomes the new
    one, so later tasks know which key logs in.
author:
  - neuralinternet.compute contributors (@neuralinternet)
extends_documentation_fragment:
  - neuralinternet.compute.nicompute
  - neuralinternet.compute.nicompute.attributes
attributes:
  check_mode:
    details:
      - Nothing is sent for the actions; the plan - which requests go to which miner - is returned in
        RV(plan).
      - O(action=status) only reads, and asks the miner in check mode too (as
        M(neuralinternet.compute.nicompute_allocation_info) does); nothing is written then.
  diff_mode:
    details: The container state before and after a pause or resume; the key before and after an exchange_key.
options:
  action:
    description:
      - V(status) asks whether the miner still holds the allocation's key, judged by the rules of
        M(neuralinternet.compute.nicompute_allocation_info) (RV(status)); it changes nothing on the miner.
      - V(restart), V(pause), V(resume) act on the container; V(exchange_key) installs O(ssh_key).
    type: str
    required: true
    choices: [status, restart, pause, resume, exchange_key]
  name:
    description:
      - The allocation's name (as given to M(neuralinternet.compute.nicompute_allocate)).
      - Exactly one of O(name) and O(hotkey).
    type: str
  hotkey:
    description:
      - The miner hotkey (ss58) of the allocation; also reaches allocations the upstream CLI made,
        which have no name.
    type: str
  key_type:
    description:
      - Which key O(action=exchange_key) replaces - V(user) (the allocation's login key, the first
        line of the box's C(authorized_keys)) or V(terminal) (the second line). Only with
        O(action=exchange_key), which requires it.
    type: str
    choices: [user, terminal]
  ssh_key:
    description:
      - The new OpenSSH public key for O(action=exchange_key), one line without quotes (miners write
        it with C(echo '<key>')), or the path of a file whose first key is used. Only with
        O(action=exchange_key), which requires it.
    type: str
  timeout:
    description:
      - Seconds the miner has to answer each request. A restart or key exchange stops and starts
        the container first. Greater than C(0), at most C(3600).
    type: float
    default: 60
notes:
  - A v1.8.3 miner cannot remove a paused container (Docker refuses without force), so resume a box
    before releasing it with M(neuralinternet.compute.nicompute_deallocate).
seealso:
  - module: neuralinternet.compute.nicompute_allocate
  - module: neuralinternet.compute.nicompute_allocation_info
  - module: neuralinternet.compute.nicompute_deallocate
"""

EXAMPLES = r"""
- name: Is the box still ours?
  neuralinternet.compute.nicompute_container:
    name: training-box
    action: status
  register: box

- name: Pause it overnight (nothing is sent when it is already paused)
  neuralinternet.compute.nicompute_container:
    name: training-box
    action: pause

- name: Resume it
  neuralinternet.compute.nicompute_container:
    name: training-box
    action: resume

- name: Log in with another key from now on
  neuralinternet.compute.nicompute_container:
    name: training-box
    action: exchange_key
    key_type: user
    ssh_key: ~/.ssh/team.pub

- name: Restart an allocation the upstream CLI made, by its miner
  neuralinternet.compute.nicompute_container:
    hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX
    action: restart
    timeout: 90
"""

RETURN = r"""
action:
  description: The action asked for.
  returned: always
  type: str
  sample: pause
sent:
  description:
    - What was sent to the miner, in order - V(status) for the status request, otherwise the docker
      action as sent (V(resume) goes as V(unpause)). Empty when nothing was sent (check mode, or the
      container was already in the state asked for).
  returned: always
  type: list
  elements: str
  sample: [pause]
allocation:
  description: The allocation acted on, as recorded afterwards (no password).
  returned: always
  type: dict
  contains:
    name:
      description: The allocation's name; null for one made by the upstream CLI.
      type: str
    hotkey:
      description: The miner's hotkey.
      type: str
    uid:
      description: The miner's uid when recorded.
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
    resource:
      description: The first GPU's name, lower-cased.
      type: str
    state:
      description: The record's state (V(active) or V(unconfirmed); V(releasing) for a status check).
      type: str
    created_at:
      description: When it was made, seconds since the epoch; null when unknown.
      type: float
    timeline:
      description: Its lifetime in days; null when unknown.
      type: int
    ssh_command:
      description: The command that logs in.
      type: str
    container:
      description: The recorded container state - V(running), V(paused), or null when unknown.
      type: str
  sample: {name: training-box, hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX, uid: 3,
           ip: 203.0.113.7, port: 4444, username: root, resource: nvidia h100 80gb hbm3, state: active,
           created_at: 1764165600.0, timeline: 1, ssh_command: ssh -p 4444 root@203.0.113.7, container: paused}
container:
  description: The recorded container state afterwards - V(running), V(paused), or null when unknown.
  returned: always
  type: str
  sample: paused
status:
  description:
    - For O(action=status) - V(live) (the miner holds the key), V(paused) (the record says paused and
      the miner answers "not held", as a paused container does), V(unconfirmed) ("not held", which
      proves little until it lasted O(unconfirmed_grace), or for a releasing record a miner sync
      period), V(released). A miner that does not answer fails the task with status V(unreachable).
  returned: when O(action=status)
  type: str
  sample: live
status_reason:
  description: What RV(status) rests on; null for V(live).
  returned: when O(action=status)
  type: str
  sample: null
reply:
  description:
    - The miner's answer to the last request, as it came; null when nothing was sent.
  returned: always
  type: dict
  contains:
    status:
      description: The miner's boolean status; null when it gave none.
      type: bool
    answered:
      description: Whether the miner answered (HTTP 200 with an output).
      type: bool
    output:
      description: The miner's output as sent (C(status), C(port)).
      type: dict
    status_code:
      description: The HTTP status of the answer (C(408) for a timeout, C(0) when none came).
      type: int
    message:
      description: The transport's status message.
      type: str
    elapsed:
      description: Seconds the request took.
      type: float
  sample: {status: true, answered: true, output: {status: true, port: 4444}, status_code: 200,
           message: Success, elapsed: 0.012}
plan:
  description: In check mode, what a real run would send to which miner.
  returned: in check mode, for the actions other than status, when something would be sent
  type: dict
  contains:
    miner:
      description: The miner - C(hotkey), C(uid), axon C(ip) and C(port).
      type: dict
    send:
      description: The requests in order, as RV(sent) names them.
      type: list
      elements: str
    request:
      description:
        - The docker action's fields - C(checking), C(timeline), C(docker_change), C(docker_action) -
          and C(public_key_sha256), the SHA-256 of the allocation's public key that goes with it.
      type: dict
  sample: {miner: {hotkey: 5F3sa2TJAWMqDhXG6jhV4N8ko9SxwGy8TpaNS1repo5EYjQX, uid: 3, ip: 203.0.113.7, port: 8091},
           send: [pause], request: {checking: false, timeline: 1, docker_change: true,
                                    docker_action: {action: pause, ssh_key: '', key_type: ''},
                                    public_key_sha256: 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08}}
wandb:
  description: Outcome of publishing the allocated and penalized hotkeys to W&B, after an action that changed something.
  returned: when an action changed something (not in check mode)
  type: dict
  sample: {mode: online, published: true, error: null, run_id: a1b2c3d4, unchanged: true}
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.neuralinternet.compute.plugins.module_utils._base import (
    base_argument_spec,
    run_module,
    settings_from,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._container import (
    ACTIONS,
    ContainerRequest,
    container_action,
)


def define_module():
    argument_spec = base_argument_spec()
    argument_spec.update(
        action=dict(type="str", required=True, choices=list(ACTIONS)),
        name=dict(type="str"),
        hotkey=dict(type="str", no_log=False),
        key_type=dict(type="str", choices=["user", "terminal"], no_log=False),
        ssh_key=dict(type="str", no_log=False),
        timeout=dict(type="float", default=60),
    )
    return AnsibleModule(
        argument_spec=argument_spec,
        mutually_exclusive=[("name", "hotkey")],
        required_one_of=[("name", "hotkey")],
        required_if=[("action", "exchange_key", ("key_type", "ssh_key"))],
        supports_check_mode=True,
    )


def main():
    module = define_module()
    params = module.params
    request = ContainerRequest(action=params["action"], name=params["name"], hotkey=params["hotkey"],
                               key_type=params["key_type"], ssh_key=params["ssh_key"], timeout=params["timeout"])
    run_module(module, lambda: container_action(settings_from(module), request, module.check_mode))


if __name__ == "__main__":
    main()
