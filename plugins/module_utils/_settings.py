# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The shared options as one plain value, so modules and the inventory plugin build the
# client the same way.

from __future__ import annotations

import netrc
import os
from dataclasses import dataclass, fields
from urllib.parse import urlparse

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked_int
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput

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
    "db_create": ("NICOMPUTE_DB_CREATE",),
    "wandb_mode": ("NICOMPUTE_WANDB_MODE",),
    "wandb_api_key": ("NICOMPUTE_WANDB_API_KEY", "WANDB_API_KEY"),
    "wandb_entity": ("NICOMPUTE_WANDB_ENTITY",),
    "wandb_project": ("NICOMPUTE_WANDB_PROJECT",),
    "wandb_timeout": ("NICOMPUTE_WANDB_TIMEOUT",),
    "wandb_dir": ("NICOMPUTE_WANDB_DIR",),
    "wandb_base_url": ("NICOMPUTE_WANDB_BASE_URL", "WANDB_BASE_URL"),
    "miner_sync_period": ("NICOMPUTE_MINER_SYNC_PERIOD",),
    "unconfirmed_grace": ("NICOMPUTE_UNCONFIRMED_GRACE",),
}
DEFAULT_WANDB_DIR = "~/.cache/nicompute/wandb"
DEFAULT_WANDB_HOST = "api.wandb.ai"
# Where SN27 miners read the validators' runs (hard-coded in v1.8.3, compute/wandb/wandb.py).
MINERS_WANDB_ENTITY = "neuralinternet"
MINERS_WANDB_PROJECT = "opencompute"


@dataclass
class Settings:
    db_path: str
    db_create: bool = False
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
    wandb_dir: str = DEFAULT_WANDB_DIR
    wandb_base_url: str = None
    # Seconds between two W&B checks of a miner: 75 blocks of 12 s on the real subnet.
    miner_sync_period: int = 900
    # Seconds a miner must answer "not held" before an allocation is given up (upstream's API: 20 x 180 s).
    unconfirmed_grace: int = 3600

    @classmethod
    def option_names(cls):
        return tuple(f.name for f in fields(cls))

    @classmethod
    def from_params(cls, params):
        """Build from module or plugin parameters, ignoring the ones that are not shared."""
        return cls(**dict((f.name, params[f.name]) for f in fields(cls) if params.get(f.name) is not None))

    def __post_init__(self):
        # Defaults too: an unexpanded "~/.cache" would become a directory named "~" under the cwd.
        for key in ("db_path", "wallet_path", "metagraph_file", "wandb_dir"):
            if getattr(self, key):
                setattr(self, key, os.path.expanduser(getattr(self, key)))

    def validate(self, require_db=True):
        """BadInput naming the option when a setting cannot work; checks files, changes nothing."""
        if not self.db_path or not str(self.db_path).strip():
            if require_db:
                raise BadInput("db_path must name the validator's database file", option="db_path")
        elif os.path.isdir(self.db_path):
            raise BadInput("db_path %s is a directory, not a database file" % self.db_path, option="db_path")
        for option in ("netuid", "metagraph_cache_ttl", "wandb_timeout", "miner_sync_period", "unconfirmed_grace"):
            checked_int(option, getattr(self, option))
        if self.metagraph_file:
            if not os.path.exists(self.metagraph_file):
                raise BadInput("metagraph_file %s does not exist" % self.metagraph_file, option="metagraph_file")
            if not os.path.isfile(self.metagraph_file):
                raise BadInput("metagraph_file %s is not a regular file" % self.metagraph_file,
                               option="metagraph_file")
        return self

    @property
    def wandb_host(self):
        return urlparse(self.wandb_base_url).hostname if self.wandb_base_url else DEFAULT_WANDB_HOST

    def wandb_credentials(self):
        """Where a W&B API key comes from (the option, or ~/.netrc for the W&B host, as wandb reads it), or None."""
        if self.wandb_api_key:
            return "wandb_api_key"
        try:
            if netrc.netrc().authenticators(self.wandb_host):
                return "~/.netrc"
        except (OSError, netrc.NetrcParseError):
            pass
        return None

    @property
    def effective_wandb_mode(self):
        if self.wandb_mode == "auto":
            return "online" if self.wandb_credentials() else "disabled"
        return self.wandb_mode

    @property
    def miner_sync_text(self):
        """The miners' W&B check period in words, for messages."""
        period = self.miner_sync_period
        return "about every %d minutes" % round(period / 60.0) if period >= 120 else "about every %d s" % period

    @property
    def miners_read_these_runs(self):
        return (self.wandb_entity, self.wandb_project) == (MINERS_WANDB_ENTITY, MINERS_WANDB_PROJECT)
