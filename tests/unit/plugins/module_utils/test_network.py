# -*- coding: utf-8 -*-
# Wallet loading and the Allocate synapse class, offline.

from __future__ import annotations

import os

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import NotFound


def test_load_hotkey_errors_say_what_is_missing(tmp_path):
    with pytest.raises(NotFound, match="wallet 'nobody' does not exist"):
        _network.load_hotkey("nobody", "default", str(tmp_path))
    bt = _network.bittensor()
    bt.Wallet(name="op", hotkey="hot", path=str(tmp_path)).create_if_non_existent(
        coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    with pytest.raises(NotFound, match="hotkey 'cold' of wallet 'op' does not exist"):
        _network.load_hotkey("op", "cold", str(tmp_path))
    keypair = _network.load_hotkey("op", "hot", str(tmp_path))
    assert keypair.ss58_address.startswith("5")
    assert oct(os.stat(os.path.join(str(tmp_path), "op", "hotkeys", "hot")).st_mode & 0o777) == "0o600"


def test_allocate_synapse_is_named_allocate_with_the_protocol_defaults():
    synapse = _network.allocate_synapse_class()()
    assert type(synapse).__name__ == "Allocate"
    assert synapse.timeline == 0 and synapse.checking is True and synapse.output == {}
    assert synapse.docker_requirement["ssh_port"] == 4444
    # Each instance gets its own copy of a mutable default.
    synapse.output["status"] = True
    assert _network.allocate_synapse_class()().output == {}
    assert synapse.deserialize() == {"status": True}


def test_allocate_synapse_headers_are_bittensors_without_rebuilding_the_schema(monkeypatch):
    allocate_class = _network.allocate_synapse_class()
    synapse = allocate_class(timeline=2)
    expected = _network.bittensor().Synapse.get_required_fields(synapse)

    def no_schema(*_args, **_kwargs):
        raise AssertionError("the JSON schema was rebuilt")

    monkeypatch.setattr(allocate_class, "model_json_schema", no_schema)
    assert synapse.get_required_fields() == expected
    assert synapse.to_headers()["name"] == "Allocate"
