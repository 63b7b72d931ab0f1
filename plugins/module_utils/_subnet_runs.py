# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# What other validators and the miners published on W&B, as a task sees it: read once, judged,
# and summed up for the result. The reading and judging (_wandb_read) is imported only when W&B
# is read: a listing with W&B off is a frequent task, and Ansible compiles every module_utils a
# task imports at every run.

from __future__ import annotations

from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import hotkey_address

# The lists validators publish in their runs.
LIST_KEYS = ("allocated_hotkeys", "penalized_hotkeys")


class SubnetRuns:
    """What other validators and the miners published, read once per task."""

    @classmethod
    def for_subnet(cls, settings, neurons, threshold):
        """Judged against these neurons' stakes; the wallet's own run (read from its public file) is ours."""
        own = hotkey_address(settings.wallet_name, settings.wallet_hotkey, settings.wallet_path)
        return cls(settings, neurons, threshold, own)

    def __init__(self, settings, neurons, threshold, own_hotkey, verify=None):
        """verify(ss58_address, message, signature) checks a run's signature; None: bittensor's sr25519."""
        self.settings = settings
        self.stakes = dict((hotkey, neuron.stake) for hotkey, neuron in neurons.items())
        self.threshold = threshold
        self.own_hotkey = own_hotkey
        self.verify = verify
        self.validators, self.skipped, self.miner_specs = [], [], {}
        self.error = None

    def read(self, lists=LIST_KEYS, miners=False):
        """Read and judge the validators' runs that carry lists, and the miners' specs runs with miners.

        With W&B off nothing is read, and the reading code is not even imported.
        """
        if self.settings.effective_wandb_mode != "online":
            return self
        from ansible_collections.neuralinternet.compute.plugins.module_utils import _wandb_read

        verify = self.verify or _wandb_read.verify_with_bittensor
        queries = [(key, _wandb_read.validator_filters(self.settings.netuid, key)) for key in lists]
        if miners:
            queries.append(("miners", _wandb_read.miner_filters(self.settings.netuid)))
        found, self.error = _wandb_read.fetch_runs(self.settings, queries)
        validator_runs = [run for key in lists for run in found.get(key, [])]
        self.validators, self.skipped = _wandb_read.judge_validator_runs(validator_runs, self.stakes, self.threshold,
                                                                         self.own_hotkey, verify)
        if miners:
            self.miner_specs, skipped = _wandb_read.judge_miner_runs(found.get("miners", []), set(self.stakes), verify)
            self.skipped += skipped
        return self

    def holders(self, key="allocated_hotkeys", honoured_only=True):
        """{miner hotkey: [validator run]} of other validators' lists (ours excluded)."""
        holders = {}
        for run in self.validators:
            if run.own or (honoured_only and not run.honoured):
                continue
            for hotkey in getattr(run, key):
                holders.setdefault(hotkey, []).append(run)
        return holders

    def report(self):
        """The `wandb` part of a listing's result."""
        return {"mode": self.settings.effective_wandb_mode, "read": self.error is None and
                self.settings.effective_wandb_mode == "online", "error": self.error,
                "validator_runs": len(self.validators), "miner_runs": len(self.miner_specs),
                "skipped_runs": self.skipped}
