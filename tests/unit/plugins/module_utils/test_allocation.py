# -*- coding: utf-8 -*-
# The allocate task's rules that need no miner: what a rerun of a name may ask for.

from __future__ import annotations

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation import (
    AllocationRequest,
    _mismatch,
)
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
