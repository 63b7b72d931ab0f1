# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput

PUBLIC_KEY = "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n"

# PROTOCOL.md, "The Allocate synapse": name, type, default, in upstream declaration order.
FIELD_TABLE = [
    ("timeline", int, 0),
    ("device_requirement", dict, {}),
    ("checking", bool, True),
    ("output", dict, {}),
    ("public_key", str, ""),
    ("docker_requirement", dict, {"base_image": "ubuntu", "ssh_key": "", "ssh_port": 4444,
                                  "volume_path": "/tmp", "dockerfile": ""}),
    ("docker_change", bool, False),
    ("docker_action", dict, {"action": "", "ssh_key": "", "key_type": ""}),
]
DOCKER_REQUIREMENT_KEYS = {"base_image", "ssh_key", "ssh_port", "volume_path", "dockerfile"}
DOCKER_ACTION_KEYS = {"action", "ssh_key", "key_type"}
DEVICE = {"cpu": {"count": 1}, "gpu": {}, "hard_disk": {"capacity": 1}, "ram": {"capacity": 1}}


def test_field_table_is_pinned():
    assert list(_protocol.ALLOCATE_FIELDS) == FIELD_TABLE
    assert _protocol.SYNAPSE_NAME == "Allocate"
    assert _protocol.DEFAULT_SSH_PORT == 4444


def test_default_fields_are_fresh_copies():
    first = _protocol.default_fields()
    assert list(first) == [name for name, _kind, _default in FIELD_TABLE]
    first["docker_requirement"]["ssh_key"] = "changed"
    first["device_requirement"]["cpu"] = 1
    second = _protocol.default_fields()
    assert second["docker_requirement"]["ssh_key"] == ""
    assert second["device_requirement"] == {}


def all_requests():
    requirement = _protocol.docker_requirement(ssh_key="ssh-ed25519 AAAA")
    return {
        "availability": _protocol.availability_request(),
        "status": _protocol.status_request(PUBLIC_KEY),
        "allocate": _protocol.allocate_request(DEVICE, 3, PUBLIC_KEY, requirement),
        "deallocate": _protocol.deallocate_request(PUBLIC_KEY),
        "restart": _protocol.docker_action_request(PUBLIC_KEY, "restart"),
        "exchange_key": _protocol.docker_action_request(PUBLIC_KEY, "exchange_key", "ssh-rsa AAAA", "user"),
    }


@pytest.mark.parametrize("kind", sorted(all_requests()))
def test_every_request_sends_every_field_and_key(kind):
    fields = all_requests()[kind]
    assert list(fields) == [name for name, _kind, _default in FIELD_TABLE]
    assert set(fields["docker_requirement"]) == DOCKER_REQUIREMENT_KEYS
    assert set(fields["docker_action"]) == DOCKER_ACTION_KEYS
    assert isinstance(fields["device_requirement"], dict)
    for name, kind_, _default in FIELD_TABLE:
        assert isinstance(fields[name], kind_)


def test_request_combinations_match_the_miner_table():
    requests = all_requests()
    assert (requests["availability"]["checking"], requests["availability"]["timeline"]) == (True, 1)
    assert (requests["status"]["checking"], requests["status"]["timeline"]) == (True, 0)
    assert requests["status"]["public_key"] == PUBLIC_KEY
    allocate = requests["allocate"]
    assert (allocate["checking"], allocate["timeline"], allocate["docker_change"]) == (False, 3, False)
    assert allocate["device_requirement"] == DEVICE
    assert allocate["docker_requirement"]["ssh_key"] == "ssh-ed25519 AAAA"
    deallocate = requests["deallocate"]
    assert (deallocate["checking"], deallocate["timeline"], deallocate["docker_change"]) == (False, 0, False)
    assert deallocate["public_key"] == PUBLIC_KEY


def test_deallocate_device_requirement_is_a_dict():
    # Upstream's CLI sent "" here: the request failed validation and the release was lost.
    assert _protocol.deallocate_request(PUBLIC_KEY)["device_requirement"] == {}


def test_exchange_key_carries_key_and_type_with_timeline_one():
    fields = _protocol.docker_action_request(PUBLIC_KEY, "exchange_key", "ssh-rsa AAAA", "terminal")
    assert fields["timeline"] == 1
    assert fields["checking"] is False
    assert fields["docker_change"] is True
    assert fields["docker_action"] == {"action": "exchange_key", "ssh_key": "ssh-rsa AAAA", "key_type": "terminal"}
    assert fields["public_key"] == PUBLIC_KEY


@pytest.mark.parametrize("action", ["restart", "pause", "unpause", "resume"])
def test_docker_actions_use_timeline_one(action):
    fields = _protocol.docker_action_request(PUBLIC_KEY, action)
    assert fields["timeline"] == 1
    assert fields["docker_change"] is True
    assert fields["docker_action"] == {"action": action, "ssh_key": "", "key_type": ""}


def test_only_exchange_key_takes_a_key():
    with pytest.raises(BadInput, match="only exchange_key"):
        _protocol.docker_action_request(PUBLIC_KEY, "restart", "ssh-rsa AAAA", "user")


def _restart_request(key):
    return _protocol.docker_action_request(key, "restart")


@pytest.mark.parametrize("build", [_protocol.status_request, _protocol.deallocate_request, _restart_request])
@pytest.mark.parametrize("key", ["", "   "])
def test_requests_that_prove_ownership_need_a_public_key(build, key):
    with pytest.raises(BadInput, match="public key is empty"):
        build(key)


@pytest.mark.parametrize("output, status", [
    ({"status": True}, True), ({"status": False}, False), ({"status": "false"}, None), ({}, None), (None, None),
])
def test_reply_status_takes_only_a_real_bool(output, status):
    assert _protocol.reply_status(output) is status


@pytest.mark.parametrize("action", ["", "stop", "Restart", "delete"])
def test_unknown_docker_action_is_refused(action):
    with pytest.raises(BadInput, match="unknown docker action"):
        _protocol.docker_action_request(PUBLIC_KEY, action)


@pytest.mark.parametrize("key_type", ["", "root", "USER", None])
def test_exchange_key_needs_a_known_key_type(key_type):
    with pytest.raises(BadInput, match="key_type"):
        _protocol.docker_action_request(PUBLIC_KEY, "exchange_key", "ssh-rsa AAAA", key_type)


@pytest.mark.parametrize("name, value", [
    ("device_requirement", ""),
    ("device_requirement", None),
    ("timeline", True),
    ("timeline", "1"),
    ("timeline", 1.0),
    ("checking", 1),
    ("public_key", None),
    ("public_key", b"pem"),
    ("docker_change", "no"),
    ("output", []),
    ("docker_requirement", ""),
    ("docker_action", None),
])
def test_validate_fields_rejects_wrong_types(name, value):
    fields = _protocol.default_fields()
    fields[name] = value
    with pytest.raises(BadInput) as caught:
        _protocol.validate_fields(fields)
    assert name in caught.value.message


def test_validate_fields_accepts_the_defaults():
    _protocol.validate_fields(_protocol.default_fields())


@pytest.mark.parametrize("name, template", [
    ("docker_requirement", _protocol.DOCKER_REQUIREMENT_DEFAULT),
    ("docker_action", _protocol.DOCKER_ACTION_DEFAULT),
])
def test_a_partial_dict_is_refused(name, template):
    fields = _protocol.default_fields()
    missing = sorted(template)[0]
    fields[name] = dict((key, value) for key, value in template.items() if key != missing)
    with pytest.raises(BadInput, match=missing):
        _protocol.validate_fields(fields)


def test_allocate_request_needs_a_positive_timeline():
    with pytest.raises(BadInput, match="timeline"):
        _protocol.allocate_request(DEVICE, 0, PUBLIC_KEY, _protocol.docker_requirement())


def test_allocate_request_refuses_a_partial_docker_requirement():
    with pytest.raises(BadInput, match="volume_path"):
        _protocol.allocate_request(DEVICE, 1, PUBLIC_KEY, {"base_image": "ubuntu", "ssh_key": "", "ssh_port": 4444,
                                                           "dockerfile": ""})


def test_unknown_field_is_refused():
    with pytest.raises(BadInput, match="unknown Allocate field"):
        _protocol._build(timeout=3)


def test_docker_requirement_has_every_key():
    assert _protocol.docker_requirement() == _protocol.DOCKER_REQUIREMENT_DEFAULT
    assert _protocol.docker_requirement(ssh_key="k", base_image="debian")["base_image"] == "debian"


@pytest.mark.parametrize("output, status", [
    ({"status": True, "info": "x"}, True),
    ({"status": False}, False),
    ({"port": 4444}, None),
    (None, None),
    ("status", None),
])
def test_reply_status(output, status):
    assert _protocol.reply_status(output) is status


@pytest.mark.parametrize("output, port", [
    ({"port": 2222}, 2222),
    ({"port": "2200"}, 2200),
    ({}, 4444),
    ({"port": "x"}, 4444),
    (None, 4444),
])
def test_reply_port(output, port):
    assert _protocol.reply_port(output) == port
