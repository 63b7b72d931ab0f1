# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The Registration CLI's list_r: one row per miner with its specs and a status, the CLI's two
# summaries, and the task that builds them from the validator database or the miners' signed
# W&B runs. Reads only: nothing is written, and with the database source and W&B off neither
# bittensor nor wandb is imported.

from __future__ import annotations

from dataclasses import dataclass

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked, checked_float
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import neurons_by_hotkey
from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import (
    GB,
    normalize_gpu_type,
    parse_specs,
    printed_gb,
    required_mib,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._store_read import StoreReader
from ansible_collections.neuralinternet.compute.plugins.module_utils._subnet_runs import SubnetRuns

# In the order a status wins when several apply.
STATUSES = ("allocated", "penalized", "offline", "reserved", "invalid", "available")
SOURCES = ("database", "wandb")
# Our records that keep a miner from being offered: all but expired.
HELD_STATES = ("pending", "active", "unconfirmed", "releasing")


def _gb(value):
    return None if value is None else round(value / float(GB), 1)


def specs_columns(specs):
    """The row's hardware columns from parsed specs (None: unknown)."""
    empty = dict(gpu_name=None, gpu_memory_gb=None, gpu_memory_mib=None, gpu_count=None, cpu_count=None,
                 ram_gb=None, disk_gb=None)
    if specs is None:
        return empty
    gpu = specs["gpu"]
    count = int(gpu["count"])
    listed = gpu["details"]
    name = listed[0]["name"].strip() if listed else None
    mib = listed[0]["capacity"] if listed else (gpu["capacity"] / count if count else None)
    mib = int(mib) if mib else None
    return dict(empty, gpu_name=name, gpu_memory_mib=mib, gpu_memory_gb=printed_gb(name, mib) if count else None,
                gpu_count=count, cpu_count=int(specs["cpu"]["count"]), ram_gb=_gb(specs["ram"].get("available")),
                disk_gb=_gb(specs["hard_disk"].get("free")))


@dataclass
class MinerFacts:
    """What is known about one miner, from every source, before its row is built."""

    hotkey: str
    neuron: object = None
    raw_specs: object = None
    score: float = None
    penalty: dict = None
    ours: object = None
    reserved_by: tuple = ()
    specs_unknown_why: str = "no specs reported"

    def row(self):
        specs, invalid = (None, None) if self.raw_specs is None else parse_specs(self.raw_specs)
        row = dict(hotkey=self.hotkey, uid=getattr(self.neuron, "uid", None),
                   score=self.score, incentive=getattr(self.neuron, "incentive", None),
                   reserved_by=sorted(run.validator for run in self.reserved_by),
                   allocation=self.ours.name if self.ours is not None else None)
        row.update(specs_columns(specs))
        row["status"], row["reason"] = self._status(specs, invalid)
        return row

    def _status(self, specs, invalid):
        if self.ours is not None:
            return "allocated", "allocated by this validator as %s (%s)" % (
                self.ours.name or "an upstream CLI allocation", self.ours.state)
        if self.penalty is not None:
            why = self.penalty.get("reason")
            return "penalized", "penalized by this validator" + (": %s" % why if why else "")
        if self.neuron is None:
            return "offline", "not in the metagraph"
        if not self.neuron.serving:
            return "offline", "axon not serving"
        if self.reserved_by:
            count = len(self.reserved_by)
            # The hotkeys are in reserved_by; the reason stays short enough for a table.
            return "reserved", "held by %s in %s signed W&B run%s (stake %s)" % (
                "another validator" if count == 1 else "%d other validators" % count,
                "its" if count == 1 else "their", "" if count == 1 else "s",
                ", ".join("%g" % run.stake for run in self.reserved_by))
        if invalid is not None:
            return "invalid", "invalid specs: %s" % invalid
        if specs is None:
            return "invalid", self.specs_unknown_why
        return "available", None


def gather(neurons, specs, scores=None, penalties=None, ours=None, reserved=None, specs_unknown_why=None):
    """MinerFacts for every miner worth a row: serving, reporting specs, or held by us.

    Neurons that neither serve nor report specs (validators, departed miners) are left out.
    """
    hotkeys = set(specs) | set(ours or {}) | set(h for h, n in neurons.items() if n.serving)
    facts = []
    for hotkey in hotkeys:
        item = MinerFacts(hotkey, neurons.get(hotkey), specs.get(hotkey), (scores or {}).get(hotkey),
                          (penalties or {}).get(hotkey), (ours or {}).get(hotkey),
                          tuple((reserved or {}).get(hotkey, ())))
        if specs_unknown_why:
            item.specs_unknown_why = specs_unknown_why
        facts.append(item)
    return facts


def _row_order(row):
    return (row["uid"] is None, row["uid"] if row["uid"] is not None else 0, row["hotkey"])


@dataclass
class ResourceFilter:
    gpu_type: str = None
    gpu_memory: float = None
    status: tuple = ()

    def validate(self):
        if self.gpu_type is not None:
            if not isinstance(self.gpu_type, str) or not normalize_gpu_type(self.gpu_type):
                raise BadInput("gpu_type %r names no GPU" % (self.gpu_type,), option="gpu_type")
        if self.gpu_memory is not None:
            self.gpu_memory = checked_float("gpu_memory", self.gpu_memory)
        unknown = sorted(set(self.status or ()) - set(STATUSES))
        if unknown:
            raise BadInput("status %s is not one of %s" % (", ".join(unknown), ", ".join(STATUSES)), option="status")
        return self

    def keeps(self, row):
        if self.status and row["status"] not in self.status:
            return False
        if self.gpu_type is not None and (
                not row["gpu_name"] or normalize_gpu_type(self.gpu_type) not in normalize_gpu_type(row["gpu_name"])):
            return False
        if self.gpu_memory is not None and (row["gpu_memory_mib"] or 0) < required_mib(self.gpu_memory):
            return False
        return True


def summarize(rows):
    """The CLI's two summaries: instances per (GPU name, GPU count), and GPUs per GPU name; with counts by status."""
    by_status = dict((status, 0) for status in STATUSES)
    instances, gpus = {}, {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + 1
        if not row["gpu_name"] or not row["gpu_count"]:
            continue
        free = row["status"] == "available"
        entry = instances.setdefault((row["gpu_name"], row["gpu_count"]), {"instances": 0, "available": 0})
        entry["instances"] += 1
        entry["available"] += int(free)
        total = gpus.setdefault(row["gpu_name"], {"total": 0, "available": 0})
        total["total"] += row["gpu_count"]
        total["available"] += row["gpu_count"] if free else 0
    return {
        "miners": len(rows),
        "by_status": by_status,
        "instances": [dict(gpu_name=name, gpu_count=count, **entry) for (name, count), entry in sorted(instances.items())],
        "gpus": [dict(gpu_name=name, **entry) for name, entry in sorted(gpus.items())],
    }


def status_by_hotkey(rows):
    """The fact: each row's status by hotkey. Not the rows again: Ansible walks a result's every value,
    facts again on the controller, and then copies the host's facts for every later task."""
    return dict((row["hotkey"], row["status"]) for row in rows)


def resource_rows(facts, row_filter):
    rows = [item.row() for item in facts]
    return sorted((row for row in rows if row_filter.keeps(row)), key=_row_order)


def list_resources(settings, source="database", row_filter=None, min_validator_stake=1024.0):
    """Run the resources task (read only); returns the module result or raises NiComputeError."""
    if source not in SOURCES:
        raise BadInput("source must be one of %s, got %r" % (", ".join(SOURCES), source), option="source")
    row_filter = (row_filter or ResourceFilter()).validate()
    threshold = float(checked("min_validator_stake", min_validator_stake))
    settings.validate(require_db=source == "database")
    if source == "wandb" and settings.effective_wandb_mode != "online":
        raise BadInput("source wandb reads the miners' signed runs from the W&B service: set wandb_api_key (or "
                       "~/.netrc), or wandb_mode: online; wandb_mode is %s" % settings.wandb_mode, option="source")
    neurons = neurons_by_hotkey(settings)
    database = _database_facts(settings.db_path) if settings.db_path else {}
    runs = SubnetRuns.for_subnet(settings, neurons, threshold).read(lists=("allocated_hotkeys",), miners=source == "wandb")
    if source == "wandb":
        specs = runs.miner_specs
        unknown_why = "specs unknown: %s" % runs.error if runs.error else "no signed specs run on W&B"
    else:
        specs, unknown_why = database.get("specs", {}), None
    facts = gather(neurons, specs, scores=database.get("scores"), penalties=database.get("penalties"),
                   ours=database.get("ours"), reserved=runs.holders(), specs_unknown_why=unknown_why)
    rows = resource_rows(facts, row_filter)
    result = {"changed": False, "source": source, "resources": rows, "summary": summarize(rows),
              "wandb": runs.report(), "ansible_facts": {"nicompute_resources": status_by_hotkey(rows)}}
    if runs.error:
        result["warnings"] = ["%s: other validators' reservations are not shown%s" % (
            runs.error, "; miners' specs are unknown" if source == "wandb" else "")]
    return result


def _database_facts(db_path):
    """What the validator database says about the miners, read without writing."""
    with StoreReader(db_path) as store:
        return {"specs": store.miner_specs(), "scores": store.scores(), "penalties": store.penalties(),
                "ours": dict((record.hotkey, record) for record in store.allocations()
                             if record.state in HELD_STATES)}
