# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations


class ModuleDocFragment:
    # The options every nicompute module and the inventory plugin share.
    DOCUMENTATION = r"""
options:
  network:
    description:
      - Bittensor network to read the metagraph from (C(finney), C(test), C(local) or a
        C(ws://) / C(wss://) endpoint).
      - Ignored for the metagraph when O(metagraph_file) is set.
      - Falls back to the environment variable E(NICOMPUTE_NETWORK).
    type: str
    default: finney
  netuid:
    description:
      - The subnet's netuid. NI Compute is C(27). From C(0) to C(65535).
      - Falls back to E(NICOMPUTE_NETUID).
    type: int
    default: 27
  wallet_name:
    description:
      - Name of the Bittensor wallet whose hotkey signs requests to miners.
      - Falls back to E(NICOMPUTE_WALLET_NAME).
    type: str
    default: default
  wallet_hotkey:
    description:
      - Hotkey of O(wallet_name) that signs requests. It must be registered on the subnet -
        v1.8.3 miners answer any registered hotkey (their whitelist test is inverted) and fail an
        unregistered caller with HTTP 500. Stake matters afterwards - miners keep an allocation only
        while a validator with more than 1.024e3 stake lists it in its signed W&B run.
      - Falls back to E(NICOMPUTE_WALLET_HOTKEY).
    type: str
    default: default
  wallet_path:
    description:
      - Directory that holds Bittensor wallets.
      - Falls back to E(NICOMPUTE_WALLET_PATH).
    type: path
    default: ~/.bittensor/wallets
  metagraph_file:
    description:
      - A metagraph snapshot (JSON) to read instead of syncing from the chain. localnet
        writes one; see C(docs/metagraph-snapshot.md) for the format. It must exist.
      - Falls back to E(NICOMPUTE_METAGRAPH_FILE).
    type: path
  metagraph_cache_ttl:
    description:
      - Seconds a metagraph synced from the chain is reused from the on-disk cache
        (C(~/.cache/nicompute)), so that consecutive tasks do not resync. C(0) disables the cache;
        at most one week (C(604800)).
      - Falls back to E(NICOMPUTE_METAGRAPH_CACHE_TTL).
    type: int
    default: 300
  db_path:
    description:
      - Path of the validator's SQLite database (upstream C(database.db)). Tables the collection
        does not own are never changed; missing ones are created.
      - A missing file is an error (a typo must not start an empty database) unless
        O(db_create=true).
      - Before a task contacts any miner it checks that the file can be written and passes
        C(PRAGMA quick_check); a read-only or damaged file fails the task with nothing changed.
      - Many runs may share the file, and the validator process may write it at the same time.
      - Falls back to E(NICOMPUTE_DB_PATH), then to upstream's E(SQLITE_DB_PATH).
    type: path
    required: true
  db_create:
    description:
      - Create O(db_path) (mode C(0600), with the validator's tables) when it does not exist.
        In check mode nothing is created; the plan is made against an empty database.
      - Falls back to E(NICOMPUTE_DB_CREATE).
    type: bool
    default: false
  wandb_mode:
    description:
      - How allocations and penalties are published to Weights & Biases.
      - V(online) publishes to the W&B service (needs O(wandb_api_key)); real miners release
        allocations that no validator publishes.
      - V(offline) writes the run locally only; V(disabled) skips W&B.
      - V(auto) is V(online) when an API key is set (O(wandb_api_key)) or C(~/.netrc) holds one for the
        W&B host, as wandb itself reads it, and V(disabled) otherwise. Allocating with V(auto) and no
        key fails - the miner would release the box at its next W&B check; an explicit V(disabled)
        or V(offline) allocates with a warning saying so.
      - A failed publication is a task warning (C(wandb.published=false)) naming the consequence and
        the deadline; the next task of any nicompute module publishes again.
      - Falls back to E(NICOMPUTE_WANDB_MODE).
    type: str
    choices: [auto, online, offline, disabled]
    default: auto
  wandb_api_key:
    description:
      - W&B API key. Falls back to E(NICOMPUTE_WANDB_API_KEY), then E(WANDB_API_KEY).
    type: str
  wandb_entity:
    description:
      - W&B entity that holds the subnet's runs. Miners read only C(neuralinternet); another value
        warns. Falls back to E(NICOMPUTE_WANDB_ENTITY).
    type: str
    default: neuralinternet
  wandb_project:
    description:
      - W&B project that holds the subnet's runs. Miners read only C(opencompute); another value
        warns. Falls back to E(NICOMPUTE_WANDB_PROJECT).
    type: str
    default: opencompute
  wandb_timeout:
    description:
      - Seconds a W&B publication may take before it is abandoned (the allocation itself
        stays recorded, and the next run publishes again). From C(1) to C(3600).
      - Falls back to E(NICOMPUTE_WANDB_TIMEOUT).
    type: int
    default: 30
  wandb_base_url:
    description:
      - Base URL of the W&B service (a self-hosted server, or localnet's stand-in). The public
        service when unset.
      - Falls back to E(NICOMPUTE_WANDB_BASE_URL), then E(WANDB_BASE_URL).
    type: str
  miner_sync_period:
    description:
      - Seconds between two W&B checks of a miner (75 blocks, about 15 minutes, on the real subnet).
        An unpublished allocation whose miner no longer holds its key after this long is taken as
        released. From C(1) to C(86400).
      - Falls back to E(NICOMPUTE_MINER_SYNC_PERIOD).
    type: int
    default: 900
  unconfirmed_grace:
    description:
      - Seconds a miner must keep answering that it does not hold an allocation before the
        allocation is given up. One such answer proves little - a paused or restarting container,
        or a docker error, answers so too - so until then the allocation stays, published, in state
        C(unconfirmed). Upstream's API service waits for 20 misses 180 s apart. From C(0) to C(2592000).
      - Falls back to E(NICOMPUTE_UNCONFIRMED_GRACE).
    type: int
    default: 3600
  wandb_dir:
    description:
      - Directory where the W&B client keeps its run files (created C(0700) when missing), instead
        of the current directory, which may be a playbook's or an installed collection's.
      - Falls back to E(NICOMPUTE_WANDB_DIR).
    type: path
    default: ~/.cache/nicompute/wandb
requirements:
  - bittensor >= 10.5, < 11 (for tasks that contact miners)
  - cryptography
  - wandb (when O(wandb_mode) is not V(disabled))
"""

    ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: What was or would be changed - the allocation made (without secrets), the allocations released, or the penalized hotkeys.
  action_group:
    description: Use C(group/neuralinternet.compute.nicompute) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - neuralinternet.compute.nicompute
"""

    # For the modules that only read: they never change anything.
    INFO_ATTRIBUTES = r"""
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module only reads; check mode changes nothing about what it does.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: N/A
    details: The module changes nothing.
  action_group:
    description: Use C(group/neuralinternet.compute.nicompute) in C(module_defaults) to set defaults for this module.
    support: full
    membership:
      - neuralinternet.compute.nicompute
"""

    # For plugins (the inventory plugin): the same environment fallbacks, read by Ansible's config
    # system; db_path may come from them, so the file need not name it. Kept equal to
    # _settings.ENV_FALLBACKS by a unit test.
    PLUGIN_ENV = r"""
options:
  network:
    env:
      - name: NICOMPUTE_NETWORK
  netuid:
    env:
      - name: NICOMPUTE_NETUID
  wallet_name:
    env:
      - name: NICOMPUTE_WALLET_NAME
  wallet_hotkey:
    env:
      - name: NICOMPUTE_WALLET_HOTKEY
  wallet_path:
    env:
      - name: NICOMPUTE_WALLET_PATH
  metagraph_file:
    env:
      - name: NICOMPUTE_METAGRAPH_FILE
  metagraph_cache_ttl:
    env:
      - name: NICOMPUTE_METAGRAPH_CACHE_TTL
  db_path:
    required: false
    env:
      - name: NICOMPUTE_DB_PATH
      - name: SQLITE_DB_PATH
  db_create:
    env:
      - name: NICOMPUTE_DB_CREATE
  wandb_mode:
    env:
      - name: NICOMPUTE_WANDB_MODE
  wandb_api_key:
    env:
      - name: NICOMPUTE_WANDB_API_KEY
      - name: WANDB_API_KEY
  wandb_entity:
    env:
      - name: NICOMPUTE_WANDB_ENTITY
  wandb_project:
    env:
      - name: NICOMPUTE_WANDB_PROJECT
  wandb_timeout:
    env:
      - name: NICOMPUTE_WANDB_TIMEOUT
  wandb_dir:
    env:
      - name: NICOMPUTE_WANDB_DIR
  wandb_base_url:
    env:
      - name: NICOMPUTE_WANDB_BASE_URL
      - name: WANDB_BASE_URL
  miner_sync_period:
    env:
      - name: NICOMPUTE_MINER_SYNC_PERIOD
  unconfirmed_grace:
    env:
      - name: NICOMPUTE_UNCONFIRMED_GRACE
"""
