# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. A miner's self-reported specs: parsing and checking a miner_details row, and
# the GPU memory sizes printed on cards. Apart from _requirements (device requirements and the
# rule that matches them) because listings read every miner's specs but match none, and Ansible
# compiles every module_utils a task imports at every run.

from __future__ import annotations

import json
import math
import re
from decimal import ROUND_CEILING, Decimal

MIB = 2 ** 20
GB = 10 ** 9
NO_DETAILS = "No details available"
INVALID_DETAILS = "Invalid details"

_TYPE_NOISE = re.compile(r"[\s\-_]+")


def normalize_gpu_type(text):
    return _TYPE_NOISE.sub("", text).lower()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# Memory sizes printed on GPU cards and in their model names, decimal GB.
PRINTED_SIZES_GB = (1, 2, 3, 4, 6, 8, 10, 11, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 141, 180, 192, 256, 288)
_SIZE_IN_NAME = re.compile(r"(\d+)\s*GB\b", re.IGNORECASE)


def required_mib(gb):
    """MiB a card must report to match a printed size of gb decimal GB: ceil(gb * 10^9 / 2^20)."""
    return int((Decimal(repr(gb)) * GB / MIB).to_integral_value(rounding=ROUND_CEILING))


# (size, required_mib(size)) of every printed size, worked out once: a listing asks for every miner.
_PRINTED_SIZES_MIB = tuple((size, required_mib(size)) for size in PRINTED_SIZES_GB)


def printed_gb(name, memory_mib):
    """The size printed on a card that reports memory_mib (as its driver does), in decimal GB.

    The size in the model name wins ("NVIDIA A100-SXM4-80GB"); otherwise the largest printed
    size that a request would match by the collection's rule, so a request for the size shown
    always matches the card. None without a memory figure.
    """
    if isinstance(name, str):
        named = _SIZE_IN_NAME.search(name)
        if named:
            return int(named.group(1))
    if not _is_number(memory_mib) or not math.isfinite(memory_mib) or memory_mib <= 0:
        return None
    fitting = [size for size, needed_mib in _PRINTED_SIZES_MIB if needed_mib <= memory_mib]
    return fitting[-1] if fitting else int(memory_mib * MIB // GB)


class InvalidSpecs(ValueError):
    """A malformed miner_details row; reason is short text without the "invalid specs" prefix."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _invalid(reason):
    return InvalidSpecs(reason)


def _section(specs, key, required):
    value = specs.get(key)
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise _invalid("%s is %s, not an object" % (key, "missing" if value is None else type(value).__name__))
    return value


def _field(section_name, section, key, default=None):
    value = section.get(key, default)
    if value is None:
        return None
    if not _is_number(value) or (isinstance(value, float) and not math.isfinite(value)):
        raise _invalid("%s.%s is not a number" % (section_name, key))
    if value < 0:
        raise _invalid("%s.%s is negative" % (section_name, key))
    return value


def _validate_specs(specs):
    """Check the shape a miner_details row must have; returns a normalized copy."""
    if not isinstance(specs, dict):
        raise _invalid("not a JSON object")
    cpu = _section(specs, "cpu", True)
    gpu = _section(specs, "gpu", True)
    cpu_count = _field("cpu", cpu, "count")
    if cpu_count is None:
        raise _invalid("cpu.count is missing")
    details = gpu.get("details", [])
    if details is None:
        details = []
    if not isinstance(details, list):
        raise _invalid("gpu.details is not a list")
    gpus = []
    for index, item in enumerate(details):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise _invalid("gpu.details[%d] has no name" % index)
        capacity = _field("gpu.details[%d]" % index, item, "capacity", 0)
        gpus.append({"name": item["name"], "capacity": capacity})
    gpu_count = _field("gpu", gpu, "count", len(gpus))
    gpu_capacity = _field("gpu", gpu, "capacity", sum(item["capacity"] for item in gpus))
    result = dict(specs)
    result["cpu"] = dict(cpu, count=cpu_count)
    result["gpu"] = dict(gpu, count=gpu_count, capacity=gpu_capacity, details=gpus)
    for name, key in (("hard_disk", "free"), ("ram", "available")):
        section = _section(specs, name, False)
        value = _field(name, section, key)
        result[name] = dict(section)
        if value is None:
            result[name].pop(key, None)
    return result


def _load_specs(details_text):
    if isinstance(details_text, (bytes, bytearray)):
        try:
            details_text = details_text.decode("utf-8")
        except UnicodeDecodeError:
            raise _invalid("not UTF-8 text")
    if not isinstance(details_text, str):
        raise _invalid("not text but %s" % type(details_text).__name__)
    try:
        specs = json.loads(details_text)
    except ValueError:
        raise _invalid("not JSON")
    return _validate_specs(specs)


def parse_specs(details_text):
    """Parse and check a miner_details.details text (or an already parsed dict).

    Returns (specs, None) with a normalized specs dict, or (None, reason) for a
    malformed row, e.g. (None, "not JSON"); never raises for bad data.
    """
    try:
        if isinstance(details_text, dict):
            return _validate_specs(details_text), None
        return _load_specs(details_text), None
    except InvalidSpecs as exc:
        return None, exc.reason


def gpu_summary(specs):
    """{'name', 'resource', 'count', 'memory_mib'} of a miner's GPUs (specs: dict or raw text).

    name (and its alias resource, upstream's allocation `resource`) is the lower-cased
    first GPU name, "No details available" when there are no specs or no GPU listed,
    "Invalid details" when the specs are malformed; memory_mib (of the first GPU) is 0 then.
    """
    if specs is None or specs == "":
        return _summary(NO_DETAILS, 0, 0)
    specs, invalid = parse_specs(specs)
    if invalid is not None:
        return _summary(INVALID_DETAILS, 0, 0)
    gpus = specs["gpu"]["details"]
    if not gpus:
        return _summary(NO_DETAILS, int(specs["gpu"]["count"]), 0)
    return _summary(gpus[0]["name"].lower(), int(specs["gpu"]["count"]), int(gpus[0]["capacity"]))


def _summary(name, count, memory_mib):
    return {"name": name, "resource": name, "count": count, "memory_mib": memory_mib}
