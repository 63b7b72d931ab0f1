# -*- coding: utf-8 -*-
# The allocate task's rules that need no miner: what a rerun of a name may ask for, the W&B
# rules, the SSH key as miners write it.

from __future__ import annotations

import os

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation import (
    AllocationRequest,
    _mismatch,
    publication_warnings,
    read_ssh_public_key,
    require_wandb_for_allocation,
    wandb_warnings,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import Settings
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import Allocation

HOTKEY = "5CLkGR5xW6HpbCLFLMy5NWfSrRxohkzBLwkW4c9HvKKvndme"
OTHER = "5DAAnrj7VHTznn2AWBemMuyBwZWs6FNFjdyVXUeYum3PTXFy"


def made_with(**options):
    """An allocation record made by a request with these options, and that request."""
    request = AllocationRequest(name="box", **options)
    identity = request.identity(request.validate())
    return Allocation(hotkey=options.get("hotkey", HOTKEY), state="active", name="box", request=identity), request


def rerun(record, **options):
    request = AllocationRequest(name="box", **options)
    return _mismatch(record, request, request.identity(request.validate()))


def test_the_same_requirements_match_whatever_the_case_of_the_gpu_type():
    record, _request = made_with(requirements={"gpu_type": "H100", "gpu_memory": 80})
    assert rerun(record, requirements={"gpu_type": "h100", "gpu_memory": 80.0}) is None


def test_other_requirements_are_named():
    record, _request = made_with(requirements={"gpu_type": "h100", "gpu_memory": 80})
    assert rerun(record, requirements={"gpu_type": "a100", "gpu_memory": 80}) == \
        "it was made with gpu_type=h100; this task asks for gpu_type=a100"
    assert rerun(record, requirements={"gpu_type": "h100", "gpu_memory": 80, "gpu_count": 2}) == \
        "it was made with gpu_count=1; this task asks for gpu_count=2"


def test_a_hotkey_rerun_of_a_requirements_allocation_is_refused():
    record, _request = made_with(requirements={"gpu_type": "h100"})
    assert rerun(record, hotkey=OTHER) == "it is on miner %s, not %s" % (HOTKEY, OTHER)
    assert rerun(record, hotkey=HOTKEY) == "it was made by requirements; this task asks for miner %s" % HOTKEY


def test_a_requirements_rerun_of_a_hotkey_allocation_is_refused():
    record, _request = made_with(hotkey=HOTKEY)
    assert rerun(record, hotkey=HOTKEY) is None
    assert rerun(record) == "it was made for miner %s; this task asks by requirements" % HOTKEY


def test_a_record_without_its_request_is_compared_by_hotkey_only():
    record = Allocation(hotkey=HOTKEY, state="active", name="box")
    assert rerun(record, requirements={"gpu_type": "h100"}) is None
    assert rerun(record, hotkey=OTHER).startswith("it is on miner")


@pytest.mark.parametrize("option, value", [("timeline", float("nan")), ("check_timeout", float("inf")),
                                           ("allocate_timeout", -1), ("max_attempts", 1.5)])
def test_every_number_is_checked(option, value):
    with pytest.raises(Exception) as caught:
        AllocationRequest(name="box", **{option: value}).validate()
    assert option in str(caught.value)


# -- W&B decides whether an allocation lives -------------------------------------------------

def settings(tmp_path, **values):
    return Settings(db_path=str(tmp_path / "database.db"), **values)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_auto_is_online_with_a_key_or_a_netrc_entry_for_the_wandb_host(home, tmp_path):
    assert settings(tmp_path).effective_wandb_mode == "disabled"
    assert settings(tmp_path, wandb_api_key="k" * 40).effective_wandb_mode == "online"
    (home / ".netrc").write_text("machine api.wandb.ai\n  login user\n  password %s\n" % ("k" * 40))
    os.chmod(home / ".netrc", 0o600)
    assert settings(tmp_path).wandb_credentials() == "~/.netrc"
    assert settings(tmp_path).effective_wandb_mode == "online"
    # An entry for another host does not count for a self-hosted server.
    assert settings(tmp_path, wandb_base_url="http://127.0.0.2:8080").effective_wandb_mode == "disabled"


def test_allocating_with_auto_and_no_credentials_fails_naming_the_consequence(home, tmp_path):
    with pytest.raises(BadInput) as caught:
        require_wandb_for_allocation(settings(tmp_path))
    assert "no W&B credentials" in caught.value.message
    assert "release the box at its next W&B check (about every 15 minutes)" in caught.value.message
    require_wandb_for_allocation(settings(tmp_path, wandb_mode="disabled"))  # explicit: allowed


def test_disabled_offline_and_foreign_projects_warn(home, tmp_path):
    assert "releases the box at its next W&B check" in wandb_warnings(settings(tmp_path, wandb_mode="disabled"))[0]
    assert "wandb_mode=offline" in wandb_warnings(settings(tmp_path, wandb_mode="offline"))[0]
    foreign = settings(tmp_path, wandb_api_key="k" * 40, wandb_project="mine")
    assert wandb_warnings(foreign) == ["miners read runs of neuralinternet/opencompute only; publishing to "
                                       "neuralinternet/mine keeps no allocation alive"]
    assert wandb_warnings(settings(tmp_path, wandb_api_key="k" * 40)) == []


def test_a_failed_publication_warns_with_its_deadline(tmp_path):
    warning = publication_warnings(settings(tmp_path, miner_sync_period=600),
                                   {"mode": "online", "published": False, "error": "ConnectionError: down"})
    assert warning[0].startswith("W&B publication failed (ConnectionError: down): miners that find no staked")
    assert "the next task of any nicompute module publishes again" in warning[0]
    assert publication_warnings(settings(tmp_path), {"mode": "online", "published": True}) == []
    assert publication_warnings(settings(tmp_path), {"mode": "disabled", "published": False}) == []


# -- the SSH key as miners write it ---------------------------------------------------------

def test_a_key_file_contributes_its_first_key(tmp_path):
    keys = tmp_path / "keys.pub"
    keys.write_text("# team keys\nssh-ed25519 AAAAfirst a@x\nssh-ed25519 AAAAsecond b@x\n")
    assert read_ssh_public_key(str(keys)) == "ssh-ed25519 AAAAfirst a@x"


@pytest.mark.parametrize("key", ["ssh-ed25519 AAAA a@x\nssh-rsa BBBB b@x", "ssh-ed25519 AAAA it's"])
def test_a_key_miners_cannot_echo_is_refused(key):
    with pytest.raises(BadInput, match="one key on one line"):
        AllocationRequest(name="box", ssh_public_key=key).validate()


def test_the_stake_threshold_is_a_checked_number():
    with pytest.raises(BadInput, match="min_validator_stake"):
        AllocationRequest(name="box", min_validator_stake=float("nan")).validate()
    assert AllocationRequest(name="box").min_validator_stake == 1024.0
