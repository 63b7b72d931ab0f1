# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The SN27 Allocate synapse as plain data: field names, types and defaults exactly as
# neuralinternet/compute-subnet miners expect them. No bittensor import here; the
# bittensor class is built from this table in _network.py.

from __future__ import annotations

import copy

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput

SYNAPSE_NAME = "Allocate"
DEFAULT_SSH_PORT = 4444

DOCKER_REQUIREMENT_DEFAULT = {
    "base_image": "ubuntu",
    "ssh_key": "",
    "ssh_port": DEFAULT_SSH_PORT,
    "volume_path": "/tmp",
    "dockerfile": "",
}
DOCKER_ACTION_DEFAULT = {"action": "", "ssh_key": "", "key_type": ""}
DOCKER_ACTIONS = ("exchange_key", "restart", "pause", "unpause", "resume")
KEY_TYPES = ("user", "terminal")

# (name, type, default) in upstream declaration order.
ALLOCATE_FIELDS = (
    ("timeline", int, 0),
    ("device_requirement", dict, {}),
    ("checking", bool, True),
    ("output", dict, {}),
    ("public_key", str, ""),
    ("docker_requirement", dict, DOCKER_REQUIREMENT_DEFAULT),
    ("docker_change", bool, False),
    ("docker_action", dict, DOCKER_ACTION_DEFAULT),
)
FIELD_TYPES = dict((name, kind) for name, kind, _default in ALLOCATE_FIELDS)


def default_fields():
    """A fresh copy of every field at its upstream default."""
    return dict((name, copy.deepcopy(default)) for name, _kind, default in ALLOCATE_FIELDS)


def _build(**values):
    fields = default_fields()
    for name, value in values.items():
        if name not in fields:
            raise BadInput("unknown Allocate field %r" % name)
        fields[name] = value
    validate_fields(fields)
    return fields


def validate_fields(fields):
    """Reject wrong types before sending: a miner would drop the whole request."""
    for name, kind, _default in ALLOCATE_FIELDS:
        value = fields.get(name)
        # bool is an int subclass; a bool timeline is a caller bug.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise BadInput(
                "Allocate field %s must be %s, got %s" % (name, kind.__name__, type(value).__name__)
            )
    for name, template in (("docker_requirement", DOCKER_REQUIREMENT_DEFAULT),
                           ("docker_action", DOCKER_ACTION_DEFAULT)):
        missing = sorted(set(template) - set(fields[name]))
        if missing:
            # A sent dict replaces the miner's default whole: every key must be present.
            raise BadInput("Allocate field %s lacks keys: %s" % (name, ", ".join(missing)))


def docker_requirement(ssh_key="", base_image="ubuntu", dockerfile="", volume_path="/tmp",
                       ssh_port=DEFAULT_SSH_PORT):
    return {
        "base_image": base_image,
        "ssh_key": ssh_key,
        "ssh_port": ssh_port,
        "volume_path": volume_path,
        "dockerfile": dockerfile,
    }


def availability_request(timeline=1):
    """Is the miner free? (checking, timeline > 0; the miner ignores device_requirement)."""
    return _build(checking=True, timeline=max(int(timeline), 1))


def _require_key(public_key):
    # The public key is the only proof of ownership; an empty one would match nothing.
    if not isinstance(public_key, str) or not public_key.strip():
        raise BadInput("the allocation's public key is empty")


def status_request(public_key):
    """Is the miner still allocated to public_key? (checking, timeline 0)."""
    _require_key(public_key)
    return _build(checking=True, timeline=0, public_key=public_key)


def allocate_request(device_requirement, timeline, public_key, docker_req):
    if timeline <= 0:
        raise BadInput("timeline must be a positive number of days, got %s" % timeline)
    return _build(checking=False, timeline=timeline, device_requirement=device_requirement,
                  public_key=public_key, docker_requirement=docker_req)


def deallocate_request(public_key):
    _require_key(public_key)
    # device_requirement stays a dict: upstream's "" here failed validation and lost the release.
    return _build(checking=False, timeline=0, public_key=public_key)


def docker_action_request(public_key, action, ssh_key="", key_type=""):
    _require_key(public_key)
    if action not in DOCKER_ACTIONS:
        raise BadInput("unknown docker action %r; expected one of %s" % (action, ", ".join(DOCKER_ACTIONS)))
    if action == "exchange_key" and key_type not in KEY_TYPES:
        raise BadInput("exchange_key needs key_type user or terminal, got %r" % key_type)
    if action != "exchange_key" and (key_type or ssh_key):
        raise BadInput("only exchange_key takes ssh_key and key_type")
    # timeline=1: with 0 the miner clears its public "allocated" marker.
    return _build(checking=False, timeline=1, public_key=public_key, docker_change=True,
                  docker_action={"action": action, "ssh_key": ssh_key, "key_type": key_type})


def reply_status(output):
    """The miner's boolean status, or None when the reply carries none."""
    if not isinstance(output, dict) or not isinstance(output.get("status"), bool):
        return None
    return output["status"]


def reply_port(output, default=DEFAULT_SSH_PORT):
    try:
        return int(output.get("port", default))
    except (AttributeError, TypeError, ValueError):
        return default
