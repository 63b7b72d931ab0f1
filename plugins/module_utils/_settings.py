# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The shared options as one plain value, so modules and the inventory plugin build the
# client the same way.

from __future__ import annotations

import os
from dataclasses import dataclass, fields

# option name -> environment variables consulted, in order, when the option is not set.
ENV_FALLBACKS = {
    "network": ("NICOMPUTE_NETWORK",),
    "netuid": ("NICOMPUTE_NETUID",),
    "wallet_name": ("NICOMPUTE_WALLET_NAME",),
    "wallet_hotkey": ("NICOMPUTE_WALLET_HOTKEY",),
    "wallet_path": ("NICOMPUTE_WALLET_PATH",),
    "metagraph_file": ("NICOMPUTE_METAGRAPH_FILE",),
    "metagraph_cache_ttl": ("NICOMPUTE_METAGRAPH_CACHE_TTL",),
    "db_path": ("NICOMPUTE_DB_PATH", "SQLITE_DB_PATH"),
    "wandb_mode": ("NICOMPUTE_WANDB_MODE",),
    "wandb_api_key": ("NICOMPUTE_WANDB_API_KEY", "WANDB_API_KEY"),
    "wandb_entity": ("NICOMPUTE_WANDB_ENTITY",),
    "wandb_project": ("NICOMPUTE_WANDB_PROJECT",),
    "wandb_timeout": ("NICOMPUTE_WANDB_TIMEOUT",),
}


@dataclass
class Settings:
    db_path: str
    network: str = "finney"
    netuid: int = 27
    wallet_name: str = "default"
    wallet_hotkey: str = "default"
    wallet_path: str = "~/.bittensor/wallets"
    metagraph_file: str = None
    metagraph_cache_ttl: int = 300
    wandb_mode: str = "auto"
    wandb_api_key: str = None
    wandb_entity: str = "neuralinternet"
    wandb_project: str = "opencompute"
    wandb_timeout: int = 30

    @classmethod
    def from_params(cls, params):
        """Build from module or plugin parameters, ignoring the ones that are not shared."""
        known = dict((f.name, params[f.name]) for f in fields(cls) if params.get(f.name) is not None)
        for key in ("db_path", "wallet_path", "metagraph_file"):
            if known.get(key):
                known[key] = os.path.expanduser(known[key])
        return cls(**known)

    @property
    def effective_wandb_mode(self):
        if self.wandb_mode == "auto":
            return "online" if self.wandb_api_key else "disabled"
        return self.wandb_mode
