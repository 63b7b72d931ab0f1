# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. Device requirements: user-facing options, the upstream wire dict,
# and the rule that matches them against a miner's self-reported specs.

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import (
    GB,
    normalize_gpu_type,
    parse_specs,
    required_mib,
)
# The client imports gpu_summary from here, as before the specs parsing moved to _specs.
from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import gpu_summary  # noqa: F401 pylint: disable=unused-import

# What upstream's CLI sends for RAM and disk when the user gives none (1 GiB).
UPSTREAM_DEFAULT_BYTES = 2 ** 30


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
