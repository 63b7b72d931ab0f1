# -*- coding: utf-8 -*-
# Bad input to nicompute_container fails with a clear message before anything changes: no database
# is created or modified, no wallet is loaded and no miner is contacted (there is none to contact:
# the metagraph snapshot points at a closed loopback port, and no wallet exists).

from __future__ import annotations

import pytest

from ansible_collections.neuralinternet.compute.plugins.modules import nicompute_container
from ansible_collections.neuralinternet.compute.tests.unit.plugins.modules.quiet_network import MINER_HOTKEY, digest

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInewkeynewkeynewkeynewkeynewkeynewkeynew new@box"


@pytest.mark.parametrize("extra, message", [
    ({"action": "reboot", "name": "box"}, "value of action must be one of: status, restart, pause, resume, "
                                          "exchange_key, got: reboot"),
    ({"name": "box"}, "missing required arguments: action"),
    ({"action": "pause"}, "one of the following is required: name, hotkey"),
    ({"action": "pause", "name": "box", "hotkey": MINER_HOTKEY}, "parameters are mutually exclusive: name|hotkey"),
    ({"action": "pause", "name": ""}, "name must not be empty"),
    ({"action": "pause", "hotkey": "5notanaddress"}, "hotkey '5notanaddress' is not a valid ss58 address"),
    ({"action": "exchange_key", "name": "box"}, "action is exchange_key but all of the following are missing: "
                                                "key_type, ssh_key"),
    ({"action": "exchange_key", "name": "box", "ssh_key": KEY}, "missing: key_type"),
    ({"action": "exchange_key", "name": "box", "key_type": "user"}, "missing: ssh_key"),
    ({"action": "exchange_key", "name": "box", "key_type": "admin", "ssh_key": KEY}, "value of key_type must be one of"),
    ({"action": "exchange_key", "name": "box", "key_type": "user", "ssh_key": ""}, "action exchange_key needs ssh_key"),
    ({"action": "exchange_key", "name": "box", "key_type": "user", "ssh_key": "/nonexistent/key.pub"},
     "ssh_key is neither an OpenSSH public key nor a readable key file"),
    ({"action": "exchange_key", "name": "box", "key_type": "user", "ssh_key": KEY + "\nssh-rsa AAAA x"},
     "ssh_key must be one key on one line without quotes"),
    ({"action": "pause", "name": "box", "ssh_key": KEY}, "ssh_key is only for action exchange_key, not pause"),
    ({"action": "status", "name": "box", "key_type": "terminal"}, "key_type is only for action exchange_key"),
    ({"action": "pause", "name": "box", "timeout": "nan"}, "timeout must be a finite number"),
    ({"action": "pause", "name": "box", "timeout": -1}, "timeout must be greater than 0"),
    ({"action": "pause", "name": "box", "timeout": "soon"}, "timeout"),
])
def test_bad_input_fails_before_any_change(run_module, quiet_network, extra, message):
    before = digest(quiet_network["db_path"])
    result, failed = run_module(nicompute_container, dict(quiet_network, **extra))
    assert failed
    assert message in result["msg"]
    assert digest(quiet_network["db_path"]) == before


def test_an_allocation_that_is_not_ours_is_refused_and_nothing_is_sent(run_module, quiet_network):
    before = digest(quiet_network["db_path"])
    for action in ("status", "pause", "restart"):
        result, failed = run_module(nicompute_container, dict(quiet_network, action=action, hotkey=MINER_HOTKEY))
        assert failed and result["error_type"] == "BadInput"
        assert result["msg"].startswith("miner %s: this validator has no allocation recorded for it" % MINER_HOTKEY)
    result, failed = run_module(nicompute_container, dict(quiet_network, action="resume", name="nobox"))
    assert failed and "allocation 'nobox': this validator has no allocation recorded" in result["msg"]
    assert digest(quiet_network["db_path"]) == before


def test_a_missing_database_is_named_and_not_created(run_module, quiet_network, tmp_path):
    typo = tmp_path / "typo" / "x.db"
    result, failed = run_module(nicompute_container, dict(quiet_network, action="pause", name="box", db_path=str(typo)))
    assert failed
    assert result["msg"].startswith("database %s does not exist" % typo)
    assert not typo.parent.exists()
