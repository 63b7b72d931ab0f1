# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# printed_gb and required_mib against real GPU models (as drivers report them, gpu_models.py):
# the size a listing shows is the size printed on the card, and asking for that size finds the card.

from __future__ import annotations

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import PRINTED_SIZES_GB, printed_gb, required_mib
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.gpu_models import GPU_MODELS

GPUS = GPU_MODELS


def one_gpu(name, mib, count=1):
    return {"cpu": {"count": 8}, "gpu": {"count": count, "capacity": mib * count,
                                         "details": [{"name": name, "capacity": mib}] * count}}


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=[item[0] for item in GPUS])
def test_printed_size_of_every_known_card(name, mib, printed):
    assert printed_gb(name, mib) == printed


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=[item[0] for item in GPUS])
def test_a_request_for_the_printed_size_matches_the_card(name, mib, printed):
    shown = printed_gb(name, mib)
    requirement = DeviceRequirement.from_options(gpu_type=name, gpu_memory=shown)
    assert requirement.match(one_gpu(name, mib)).ok, requirement.match(one_gpu(name, mib)).reason
    # By the type a user would type, too.
    short = name.split()[-1]
    assert DeviceRequirement.from_options(gpu_type=short, gpu_memory=shown).match(one_gpu(name, mib)).ok


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=[item[0] for item in GPUS])
def test_without_a_size_in_the_name_the_memory_decides(name, mib, printed):
    # The name's "80GB" is not needed: the reported MiB alone give the printed size.
    assert printed_gb(None, mib) == printed
    assert printed_gb("Some GPU", mib) == printed


@pytest.mark.parametrize("name, mib, printed", GPUS, ids=[item[0] for item in GPUS])
def test_the_next_printed_size_up_does_not_match(name, mib, printed):
    bigger = [size for size in PRINTED_SIZES_GB if size > printed]
    assert not DeviceRequirement.from_options(gpu_type=name, gpu_memory=bigger[0]).match(one_gpu(name, mib)).ok


@pytest.mark.parametrize("memory", [None, 0, -1, "81559", True, float("nan"), float("inf")])
def test_no_memory_figure_gives_none(memory):
    # NaN once raised ValueError here (int(nan)), and inf gave 288.
    assert printed_gb("NVIDIA H100 PCIe", memory) is None
    assert printed_gb(None, memory) is None


def test_the_size_in_the_name_wins():
    assert printed_gb("NVIDIA A100-SXM4-80GB", 40960) == 80
    assert printed_gb("NVIDIA H100 80GB HBM3", None) == 80
    assert printed_gb("NVIDIA A100 40gb", 81920) == 40
    assert printed_gb("Tesla V100-SXM2-16GB", 16160) == 16


def test_a_size_that_is_no_printed_size_rounds_down_to_whole_gb():
    # Smaller than the smallest printed size: decimal GB, rounded down.
    assert printed_gb(None, 512) == 0
    assert printed_gb(None, required_mib(1)) == 1
    assert printed_gb(None, required_mib(1) - 1) == 0


def test_a_card_exactly_at_a_printed_size_shows_that_size():
    for size in (24, 48, 80, 141):
        assert printed_gb(None, required_mib(size)) == size
        assert printed_gb(None, required_mib(size) - 1) < size


@pytest.mark.parametrize("gb, mib", [(80, 76294), (81, 77248), (24, 22889), (0.5, 477), (141, 134469)])
def test_required_mib_is_the_ceiling_of_decimal_gb_in_mib(gb, mib):
    assert required_mib(gb) == mib
    assert (required_mib(gb) - 1) * 2 ** 20 < gb * 10 ** 9 <= required_mib(gb) * 2 ** 20


def test_required_mib_takes_the_decimal_the_user_wrote():
    # 0.1 is not exact in binary; the rule uses the number as written.
    assert required_mib(0.1) == 96
    assert required_mib(80.0) == required_mib(80)
