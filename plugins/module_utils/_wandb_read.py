# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# Reads the subnet's W&B runs as upstream validators read them (same filters), and judges
# them: a run counts only when its sr25519 signature over the run id verifies for the hotkey
# it names; a validator's lists are honoured only above the stake miners require. Reading
# happens in a child process killed at wandb_timeout, so W&B never hangs a listing. Imported
# by _subnet_runs only when W&B is read.

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

from ansible_collections.neuralinternet.compute.plugins.module_utils._subnet_runs import LIST_KEYS

# What upstream validators put in `role`; the publisher (_sync) writes it too. The publisher and
# the child process machinery are imported only when W&B is read: a listing with W&B off is a
# frequent task, and Ansible compiles every module_utils it ships at every run.
VALIDATOR_ROLE = "validator"

MINER_ROLE = "miner"
# The run config keys a reader needs; the rest (a validator's stats, whole config) stays on W&B.
RUN_KEYS = ("hotkey", "role", "signature", "version", "specs") + LIST_KEYS


def validator_filters(netuid, key):
    """Upstream's filter for the validators' runs that carry list `key` (compute/wandb/wandb.py)."""
    return {"$and": [{"config.role": VALIDATOR_ROLE}, {"config.config.netuid": netuid},
                     {"config.%s" % key: {"$exists": True}}]}


def miner_filters(netuid):
    """Upstream's filter for the miners' specs runs."""
    return {"$and": [{"config.role": MINER_ROLE}, {"config.config.netuid": netuid}, {"state": "running"}]}


def _plain_run(run):
    config = run.config
    kept = dict((key, config[key]) for key in RUN_KEYS if key in config)
    # Only plain JSON crosses back to the parent.
    return {"id": run.id, "name": run.name, "state": run.state, "config": json.loads(json.dumps(kept, default=str))}


def _fetch(settings, queries):
    """In the child: {label: [plain run]} for each (label, filters)."""
    from ansible_collections.neuralinternet.compute.plugins.module_utils._sync import prepare_child

    prepare_child(settings)
    import wandb

    overrides = {"base_url": settings.wandb_base_url} if settings.wandb_base_url else {}
    api = wandb.Api(api_key=settings.wandb_api_key, overrides=overrides, timeout=settings.wandb_timeout)
    path = "%s/%s" % (settings.wandb_entity, settings.wandb_project)
    found = {}
    for label, filters in queries:
        try:
            found[label] = [_plain_run(run) for run in api.runs(path, filters=filters)]
        except ValueError:  # "Could not find project": nobody published there
            found[label] = []
    return found


def fetch_runs(settings, queries):
    """({label: [run]}, error): the runs each query finds, or ({}, why) when W&B could not be read in time."""
    if settings.effective_wandb_mode != "online":
        return {}, None
    from ansible_collections.neuralinternet.compute.plugins.module_utils._child import (
        ChildFailed,
        ChildTimeout,
        call_in_child,
    )

    try:
        return call_in_child(_fetch, (settings, tuple(queries)), settings.wandb_timeout), None
    except ChildTimeout:
        return {}, "W&B did not answer within %s s" % settings.wandb_timeout
    except ChildFailed as exc:
        return {}, "W&B could not be read: %s" % exc


def signature_problem(run, verify):
    """Why the run's signature does not prove its hotkey wrote it, or None when it verifies."""
    config = run["config"]
    hotkey, signature = config.get("hotkey"), config.get("signature")
    if not isinstance(hotkey, str) or not hotkey:
        return "no hotkey"
    if not isinstance(signature, str) or not signature:
        return "unsigned"
    try:
        signed = bytes.fromhex(signature[2:] if signature.startswith("0x") else signature)
    except ValueError:
        return "the signature is not hex"
    if not verify(hotkey, hashlib.sha256(run["id"].encode("utf-8")).digest(), signed):
        return "the signature does not verify for %s" % hotkey
    return None


@dataclass
class ValidatorRun:
    """One validator's signed run: its lists, and whether miners would honour them."""

    run_id: str
    validator: str
    stake: float | None
    honoured: bool
    own: bool
    allocated_hotkeys: list = field(default_factory=list)
    penalized_hotkeys: list = field(default_factory=list)

    def source(self):
        return {"validator": self.validator, "run_id": self.run_id, "stake": self.stake,
                "signature_valid": True, "honoured": self.honoured, "own": self.own}


def _hotkey_list(value):
    return sorted(set(item for item in value if isinstance(item, str))) if isinstance(value, list) else []


def skipped_entry(run, why):
    return {"run_id": run["id"], "name": run.get("name"), "hotkey": run["config"].get("hotkey"), "reason": why}


def judge_validator_runs(runs, stakes, threshold, own_hotkey, verify):
    """(validator runs whose signature verifies, skipped runs with their reason).

    stakes: {hotkey: total stake} from the metagraph; a run is honoured when its validator's
    stake is above threshold, as miners require. Runs found by several queries count once.
    """
    judged, skipped, seen = [], [], set()
    for run in runs:
        if run["id"] in seen:
            continue
        seen.add(run["id"])
        problem = signature_problem(run, verify)
        if problem:
            skipped.append(skipped_entry(run, problem))
            continue
        config = run["config"]
        stake = stakes.get(config["hotkey"])
        judged.append(ValidatorRun(run_id=run["id"], validator=config["hotkey"], stake=stake,
                                   honoured=stake is not None and stake > threshold,
                                   own=config["hotkey"] == own_hotkey,
                                   allocated_hotkeys=_hotkey_list(config.get("allocated_hotkeys")),
                                   penalized_hotkeys=_hotkey_list(config.get("penalized_hotkeys"))))
    return judged, skipped


def judge_miner_runs(runs, registered, verify):
    """({hotkey: specs} of signed runs of registered miners, skipped runs with their reason).

    As upstream: a run counts when its signature verifies and its hotkey is in the metagraph;
    when a miner has several, the first one W&B lists wins.
    """
    specs, skipped = {}, []
    for run in runs:
        problem = signature_problem(run, verify)
        hotkey = run["config"].get("hotkey")
        if problem is None and hotkey not in registered:
            problem = "hotkey %s is not in the metagraph" % hotkey
        if problem is None and "specs" not in run["config"]:
            problem = "no specs"
        if problem:
            skipped.append(skipped_entry(run, problem))
        elif hotkey not in specs:
            specs[hotkey] = run["config"]["specs"]
    return specs, skipped


def verify_with_bittensor(ss58_address, message, signature):
    """sr25519 verification, loaded only when a run is judged (W&B on)."""
    from ansible_collections.neuralinternet.compute.plugins.module_utils._network import verify_signature

    return verify_signature(ss58_address, message, signature)
