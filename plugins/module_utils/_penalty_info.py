# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The Registration CLI's list_p: this validator's penalties, and the penalized lists other
# validators sign on W&B. Apart from _penalties (which writes, and so imports the client and its
# cryptography): Ansible compiles every module_utils a task imports at every run.

from __future__ import annotations

import time

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked
from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import neurons_by_hotkey
from ansible_collections.neuralinternet.compute.plugins.module_utils._store_read import StoreReader
from ansible_collections.neuralinternet.compute.plugins.module_utils._subnet_runs import SubnetRuns


def our_penalties(store, neurons, now):
    rows = []
    for hotkey, details in store.penalties().items():
        at = details.get("at") if isinstance(details.get("at"), (int, float)) else None
        neuron = neurons.get(hotkey)
        rows.append({"hotkey": hotkey, "uid": getattr(neuron, "uid", None), "reason": details.get("reason"),
                     "by": details.get("by"), "at": at, "age": None if at is None else max(0, int(now - at))})
    return rows


def published_penalties(runs, neurons):
    """Each hotkey in other validators' signed penalized lists, with its sources."""
    rows = {}
    for run in runs.validators:
        if run.own:
            continue
        for hotkey in run.penalized_hotkeys:
            row = rows.setdefault(hotkey, {"hotkey": hotkey, "uid": getattr(neurons.get(hotkey), "uid", None),
                                           "honoured": False, "sources": []})
            row["sources"].append(run.source())
            row["honoured"] = row["honoured"] or run.honoured
    return [rows[hotkey] for hotkey in sorted(rows)]


def penalty_info(settings, min_validator_stake=1024.0):
    """Run the penalty listing (list_p, read only); returns the module result or raises NiComputeError."""
    threshold = float(checked("min_validator_stake", min_validator_stake))
    settings.validate()
    with StoreReader(settings.db_path) as store:
        neurons = neurons_by_hotkey(settings)
        ours = our_penalties(store, neurons, time.time())
    runs = SubnetRuns.for_subnet(settings, neurons, threshold).read(lists=("penalized_hotkeys",))
    result = {"changed": False, "penalties": ours, "others": published_penalties(runs, neurons),
              "wandb": runs.report()}
    if runs.error:
        result["warnings"] = ["%s: other validators' penalized lists are not shown" % runs.error]
    return result
