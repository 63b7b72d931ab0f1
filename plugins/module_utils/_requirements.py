# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. Device requirements: user-facing options, the upstream wire dict,
# and the rule that matches them against a miner's self-reported specs.

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from decimal import ROUND_CEILING, Decimal

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput

MIB = 2 ** 20
GB = 10 ** 9
# What upstream's CLI sends for RAM and disk when the user gives none (1 GiB).
UPSTREAM_DEFAULT_BYTES = 2 ** 30
NO_DETAILS = "No details available"
INVALID_DETAILS = "Invalid details"

_TYPE_NOISE = re.compile(r"[\s\-_]+")


def normalize_gpu_type(text):
    return _TYPE_NOISE.sub("", text).lower()


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _gb_to_bytes(gb):
    return int((gb * GB).to_integral_value())


def _plain(number):
    """A Decimal back to int when whole, else float, for results and wire dicts."""
    if number is None:
        return None
    return int(number) if number == number.to_integral_value() else float(number)


@dataclass(frozen=True)
class MatchResult:
    """Whether a miner's specs meet a requirement; reason is empty when ok is True."""

    ok: bool
    reason: str = ""

    def __bool__(self):
        return self.ok


@dataclass(frozen=True)
class DeviceRequirement:
    """A validated device requirement.

    Units: gpu_memory, ram and disk are decimal GB (10^9 bytes) as printed on the card
    or the plan; gpu_count is 0 when no GPU is required. ram and disk are None when the
    user gave none: then they are no matching constraint and the miner gets upstream's
    CLI default of 1 GiB.
    """

    gpu_type: str | None = None
    gpu_memory: float | int | None = None
    gpu_count: int = 0
    cpu_count: int = 1
    ram: float | int | None = None
    disk: float | int | None = None

    @classmethod
    def from_options(cls, gpu_type=None, gpu_memory=None, gpu_count=None, cpu_count=None, ram=None, disk=None):
        """Validate user-facing options; raises BadInput naming the option, before anything changes."""
        if gpu_type is not None:
            if not isinstance(gpu_type, str):
                raise BadInput("gpu_type must be a string, got %s" % type(gpu_type).__name__, option="gpu_type")
            gpu_type = gpu_type.strip() or None
            if gpu_type is not None and not normalize_gpu_type(gpu_type):
                raise BadInput("gpu_type %r names no GPU" % gpu_type, option="gpu_type")
        memory = None if gpu_memory is None else checked("gpu_memory", gpu_memory)
        if gpu_count is not None:
            count = int(checked("gpu_count", gpu_count))
        elif gpu_type is not None or memory is not None:
            count = 1
        else:
            count = 0
        cpus = 1 if cpu_count is None else int(checked("cpu_count", cpu_count))
        ram_gb = None if ram is None else checked("ram", ram)
        disk_gb = None if disk is None else checked("disk", disk)
        return cls(gpu_type=gpu_type, gpu_memory=_plain(memory), gpu_count=count, cpu_count=cpus,
                   ram=_plain(ram_gb), disk=_plain(disk_gb))

    @property
    def wants_gpu(self):
        return self.gpu_count > 0

    @property
    def ram_bytes(self):
        return UPSTREAM_DEFAULT_BYTES if self.ram is None else _gb_to_bytes(Decimal(repr(self.ram)))

    @property
    def disk_bytes(self):
        return UPSTREAM_DEFAULT_BYTES if self.disk is None else _gb_to_bytes(Decimal(repr(self.disk)))

    @property
    def gpu_memory_mib(self):
        """MiB a card must report to match the printed size: ceil(gb * 10^9 / 2^20); 0 when not required."""
        return 0 if self.gpu_memory is None else required_mib(self.gpu_memory)

    def to_wire(self):
        """The upstream `device_requirement` dict sent in the Allocate synapse.

        cpu.count: CPUs. gpu: {} when no GPU is required, else count, capacity in MiB
        per GPU as upstream's CLI prompt computes it (GB * 1024; 0 when no memory was
        given) and type ("" when none was given). hard_disk.capacity and ram.capacity:
        bytes (GB * 10^9; 1 GiB when not given, as upstream's CLI sends).
        """
        gpu = {}
        if self.wants_gpu:
            capacity = 0
            if self.gpu_memory is not None:
                capacity = int((Decimal(repr(self.gpu_memory)) * 1024).to_integral_value())
            gpu = {"count": self.gpu_count, "capacity": capacity, "type": self.gpu_type or ""}
        return {
            "cpu": {"count": self.cpu_count},
            "gpu": gpu,
            "hard_disk": {"capacity": self.disk_bytes},
            "ram": {"capacity": self.ram_bytes},
        }

    def describe(self):
        """Short human text, e.g. '2 x h100 >= 80 GB, 4 CPUs'."""
        parts = []
        if self.wants_gpu:
            gpu = "%d x %s" % (self.gpu_count, self.gpu_type or "any GPU")
            if self.gpu_memory is not None:
                gpu += " >= %s GB" % self.gpu_memory
            parts.append(gpu)
        else:
            parts.append("no GPU")
        parts.append("%d CPU%s" % (self.cpu_count, "" if self.cpu_count == 1 else "s"))
        if self.ram is not None:
            parts.append("RAM >= %s GB" % self.ram)
        if self.disk is not None:
            parts.append("disk >= %s GB" % self.disk)
        return ", ".join(parts)

    def match(self, specs):
        """Match a miner's specs (a parsed dict or the raw miner_details text).

        Rules, fixing upstream's faults: GPU memory is per GPU and an equal value
        matches; a card matches a printed size when its reported MiB >= ceil(gb *
        10^9 / 2^20). At least gpu_count of the listed GPUs must match both type and
        memory. When details lists fewer GPUs than gpu.count and every listed GPU is the
        same model, the unlisted ones count as that model; when details is empty,
        memory falls back to gpu.capacity / gpu.count and a required type cannot match.
        A malformed specs row gives ok=False with an "invalid specs: ..." reason.
        """
        specs, invalid = parse_specs(specs)
        if invalid is not None:
            return MatchResult(False, "invalid specs: %s" % invalid)
        reasons = []
        cpus = specs["cpu"]["count"]
        if cpus < self.cpu_count:
            reasons.append("%g CPUs offered, %d required" % (cpus, self.cpu_count))
        if self.wants_gpu:
            reasons.extend(self._gpu_reasons(specs["gpu"]))
        if self.disk is not None:
            free = specs.get("hard_disk", {}).get("free")
            if free is None:
                reasons.append("free disk unknown, %d bytes required" % self.disk_bytes)
            elif free < self.disk_bytes:
                reasons.append("free disk %d bytes < %d bytes required" % (free, self.disk_bytes))
        if self.ram is not None:
            available = specs.get("ram", {}).get("available")
            if available is None:
                reasons.append("available RAM unknown, %d bytes required" % self.ram_bytes)
            elif available < self.ram_bytes:
                reasons.append("available RAM %d bytes < %d bytes required" % (available, self.ram_bytes))
        if reasons:
            return MatchResult(False, "; ".join(reasons))
        return MatchResult(True, "")

    def _gpu_reasons(self, gpu):
        offered = int(gpu["count"])
        listed = [(item["name"], item["capacity"]) for item in gpu["details"]]
        if offered <= 0:
            return ["no GPU offered, %d required" % self.gpu_count]
        if offered < self.gpu_count:
            return ["%d GPU%s offered, %d required" % (offered, "" if offered == 1 else "s", self.gpu_count)]
        required_mib = self.gpu_memory_mib
        if not listed:
            if self.gpu_type is not None:
                return ["GPU type %s not verifiable (no GPU details)" % self.gpu_type]
            per_gpu = gpu["capacity"] / offered
            if per_gpu < required_mib:
                return ["GPU memory %d MiB < %d MiB required" % (per_gpu, required_mib)]
            return []
        if len(listed) < offered and len(set(listed)) == 1:
            listed = listed + [listed[0]] * (offered - len(listed))
        wanted = normalize_gpu_type(self.gpu_type) if self.gpu_type is not None else None
        of_type = [item for item in listed if wanted is None or wanted in normalize_gpu_type(item[0])]
        if not of_type:
            names = ", ".join(sorted(set(name for name, _capacity in listed)))
            return ["GPU type %s not offered (%s)" % (self.gpu_type, names)]
        fitting = [item for item in of_type if item[1] >= required_mib]
        if not fitting:
            best = max(capacity for _name, capacity in of_type)
            return ["GPU memory %d MiB < %d MiB required" % (best, required_mib)]
        if len(fitting) < self.gpu_count:
            return ["%d of %d listed GPUs match, %d required" % (len(fitting), len(listed), self.gpu_count)]
        return []


# Memory sizes printed on GPU cards and in their model names, decimal GB.
PRINTED_SIZES_GB = (1, 2, 3, 4, 6, 8, 10, 11, 12, 16, 20, 24, 32, 40, 48, 64, 80, 94, 96, 141, 180, 192, 256, 288)
_SIZE_IN_NAME = re.compile(r"(\d+)\s*GB\b", re.IGNORECASE)


def required_mib(gb):
    """MiB a card must report to match a printed size of gb decimal GB: ceil(gb * 10^9 / 2^20)."""
    return int((Decimal(repr(gb)) * GB / MIB).to_integral_value(rounding=ROUND_CEILING))


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
    fitting = [size for size in PRINTED_SIZES_GB if required_mib(size) <= memory_mib]
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
