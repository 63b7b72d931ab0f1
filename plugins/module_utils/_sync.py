# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# Publishes the validator's allocated (and penalized) hotkeys to its signed W&B run, which
# is what SN27 miners read to decide whether an allocation lives.
#
# Online, the run is changed through W&B's public API (GraphQL), never through
# wandb.init(): the validator process owns its run, and a second "session" on it would mark
# it finished. Only allocated_hotkeys, penalized_hotkeys and the signature are changed on an
# existing run; the validator's config stays as it is. Offline (no service at hand) writes a
# local run with wandb.init. wandb is imported only in the child process that publishes,
# which is killed when it overruns: a task never hangs on W&B.

from __future__ import annotations

import hashlib
import os
import uuid

from ansible_collections.neuralinternet.compute.plugins.module_utils._child import (
    ChildFailed,
    ChildTimeout,
    PreparedCall,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._wandb_read import VALIDATOR_ROLE

RUN_NAME = "validator-%s"
# 100*major + 10*minor + patch of the subnet release whose validator config this mirrors (v1.8.3).
SUBNET_VERSION = 183
OWNED_KEYS = ("allocated_hotkeys", "penalized_hotkeys", "signature")


def run_signature(sign, run_id):
    """Hex sr25519 signature (no 0x) over the 32-byte SHA-256 digest of the run id."""
    return sign(hashlib.sha256(run_id.encode("utf-8")).digest()).hex()


def new_run_config(hotkey, netuid):
    """The config of a run this collection creates (what upstream's validator writes, minus its own settings)."""
    return {"hotkey": hotkey, "role": VALIDATOR_ROLE, "config": {"netuid": netuid}, "version": SUBNET_VERSION}


def owned_values(sign, run_id, lists):
    return {"allocated_hotkeys": list(lists["allocated_hotkeys"]),
            "penalized_hotkeys": list(lists["penalized_hotkeys"]),
            "signature": run_signature(sign, run_id)}


def _find_run(api, path, run_id, name, netuid):
    """The validator's run: by its stored id, else by display name and netuid (as upstream finds it)."""
    import wandb

    if run_id:
        try:
            return api.run("%s/%s" % (path, run_id))
        except (wandb.errors.CommError, ValueError):
            pass
    try:
        for run in api.runs(path, filters={"display_name": name, "config.config.netuid": netuid}):
            return run
    except ValueError:  # "Could not find project": nothing was ever published there
        pass
    return None


def _prepare_online(settings, hotkey, sign, run_id):
    """Import wandb and find the validator's run now; the returned call writes the lists."""
    import wandb

    overrides = {"base_url": settings.wandb_base_url} if settings.wandb_base_url else {}
    api = wandb.Api(api_key=settings.wandb_api_key, overrides=overrides, timeout=settings.wandb_timeout)
    path = "%s/%s" % (settings.wandb_entity, settings.wandb_project)
    found = _find_run(api, path, run_id, RUN_NAME % hotkey, settings.netuid)

    def write(lists):
        run = found
        if run is None:
            created = api.create_run(entity=settings.wandb_entity, project=settings.wandb_project,
                                     run_id=run_id or uuid.uuid4().hex[:8])
            # The object create_run returns cannot be updated (wandb 0.31): read the run back.
            run = api.run("%s/%s" % (path, created.id))
            run.display_name = RUN_NAME % hotkey
            run.config.update(new_run_config(hotkey, settings.netuid))
        run.config.update(owned_values(sign, run.id, lists))
        run.update()
        return run.id
    return write


def _prepare_offline(settings, hotkey, sign, run_id):
    import wandb

    def write(lists):
        run_id_now = run_id or uuid.uuid4().hex[:8]
        config = dict(new_run_config(hotkey, settings.netuid), **owned_values(sign, run_id_now, lists))
        run = wandb.init(entity=settings.wandb_entity, project=settings.wandb_project, id=run_id_now,
                         name=RUN_NAME % hotkey, mode="offline", dir=settings.wandb_dir, resume="allow",
                         config=config, reinit=True)
        run.finish()
        # A multiprocessing child skips atexit, where wandb would stop its service process: without
        # this the service still writes (and outlives us) after we report success.
        wandb.teardown()
        return run_id_now
    return write


def prepare_child(settings):
    """What a W&B child process sets before it imports wandb."""
    os.environ["WANDB_SILENT"] = "true"
    if settings.wandb_api_key:
        os.environ["WANDB_API_KEY"] = settings.wandb_api_key
    # wandb writes under ./wandb unless told: that would be the playbook's (or an installed
    # collection's) directory.
    os.makedirs(settings.wandb_dir, mode=0o700, exist_ok=True)
    os.chdir(settings.wandb_dir)


def _prepare_publication(settings, hotkey, sign, run_id):
    prepare_child(settings)
    prepare = _prepare_online if settings.effective_wandb_mode == "online" else _prepare_offline
    return prepare(settings, hotkey, sign, run_id)


class WandbPublisher:
    """Publishes to the run `validator-<hotkey>`; the run id is kept in upstream's wandb_runs table."""

    def __init__(self, settings, hotkey, sign, store):
        self.settings = settings
        self.hotkey = hotkey
        self.sign = sign
        self.store = store

    @property
    def mode(self):
        return self.settings.effective_wandb_mode

    def publish(self, lists=None):
        """Publish the lists (default: the store's); returns a result dict, never raises."""
        result = {"mode": self.mode, "published": False, "error": None}
        if self.mode == "disabled":
            return result
        if lists is None:
            lists = {"allocated_hotkeys": self.store.allocated_hotkeys(),
                     "penalized_hotkeys": sorted(self.store.penalized())}
        result.update(lists)
        child = PreparedCall(_prepare_publication, (self.settings, self.hotkey, self.sign,
                                                    self.store.wandb_run_id(self.hotkey)))
        try:
            value = child.run((lists,), self.settings.wandb_timeout)
        except ChildTimeout:
            result["error"] = "W&B did not answer within %s s" % self.settings.wandb_timeout
            return result
        except ChildFailed as exc:
            result["error"] = str(exc)
            return result
        if value != self.store.wandb_run_id(self.hotkey):
            self.store.set_wandb_run_id(self.hotkey, value)
        result.update(published=True, run_id=value)
        return result
