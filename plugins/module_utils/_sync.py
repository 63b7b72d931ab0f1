# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# Publishes the validator's allocated (and penalized) hotkeys to its signed W&B run.
# What is published is derived from the database each time, so a failed sync is simply
# redone by the next run. wandb is imported only in the child process that publishes,
# which is killed when it overruns: a task never hangs on W&B.

from __future__ import annotations

import hashlib
import multiprocessing
import os
import uuid

RUN_NAME = "validator-%s"
ROLE = "validator"
CLIENT_VERSION = 100  # 100*major + 10*minor + patch of the subnet protocol this speaks (v1.0.0)


def run_signature(sign, run_id):
    """Hex sr25519 signature (no 0x) over the 32-byte SHA-256 digest of the run id."""
    return sign(hashlib.sha256(run_id.encode("utf-8")).digest()).hex()


def run_config(hotkey, netuid, run_id, sign, allocated, penalized):
    return {
        "hotkey": hotkey,
        "role": ROLE,
        "config": {"netuid": netuid},
        "version": CLIENT_VERSION,
        "allocated_hotkeys": list(allocated),
        "penalized_hotkeys": list(penalized),
        "signature": run_signature(sign, run_id),
    }


def _publish_in_child(mode, entity, project, run_id, name, config, api_key, wandb_dir, queue):
    try:
        os.environ["WANDB_SILENT"] = "true"
        if api_key:
            os.environ["WANDB_API_KEY"] = api_key
        import wandb

        # wandb writes under ./wandb unless told: that would be the playbook's (or an installed
        # collection's) directory.
        os.makedirs(wandb_dir, mode=0o700, exist_ok=True)
        run = wandb.init(entity=entity, project=project, id=run_id, name=name, mode=mode, dir=wandb_dir,
                         resume="allow", config=config, reinit=True)
        run.config.update(config, allow_val_change=True)
        run.finish()
        # A multiprocessing child skips atexit, where wandb would stop its service process: without
        # this the service still writes (and outlives us) after we report success.
        wandb.teardown()
        queue.put(None)
    except BaseException as exc:  # reported to the parent, which decides
        queue.put("%s: %s" % (type(exc).__name__, exc))


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

    def publish(self):
        """Publish the store's allocated and penalized hotkeys; returns a result dict, never raises."""
        result = {"mode": self.mode, "published": False, "error": None}
        if self.mode == "disabled":
            return result
        run_id = self.store.wandb_run_id(self.hotkey)
        if not run_id:
            run_id = uuid.uuid4().hex[:8]
            self.store.set_wandb_run_id(self.hotkey, run_id)
        config = run_config(self.hotkey, self.settings.netuid, run_id, self.sign,
                            self.store.allocated_hotkeys(), sorted(self.store.penalized()))
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        child = context.Process(target=_publish_in_child, args=(
            self.mode, self.settings.wandb_entity, self.settings.wandb_project, run_id,
            RUN_NAME % self.hotkey, config, self.settings.wandb_api_key, self.settings.wandb_dir, queue))
        child.start()
        child.join(self.settings.wandb_timeout)
        if child.is_alive():
            child.kill()
            child.join()
            result["error"] = "W&B did not answer within %s s" % self.settings.wandb_timeout
            return result
        error = queue.get() if not queue.empty() else "the W&B publisher exited with %s" % child.exitcode
        result.update(published=error is None, error=error, run_id=run_id,
                      allocated_hotkeys=config["allocated_hotkeys"])
        return result
