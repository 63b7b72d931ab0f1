# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""A network for tests of module input: one registered miner whose axon is a closed loopback port,
an empty database and no wallet - a module that got past its input checks could contact nobody
and load nothing."""

from __future__ import annotations

import hashlib

from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import Neuron, write_snapshot
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore

MINER_HOTKEY = "5CLkGR5xW6HpbCLFLMy5NWfSrRxohkzBLwkW4c9HvKKvndme"


def quiet_network_options(tmp_path):
    """The shared options pointing at that network, built under tmp_path."""
    db = tmp_path / "database.db"
    AllocationStore(str(db), create=True).close()
    snapshot = tmp_path / "metagraph.json"
    write_snapshot(str(snapshot), [Neuron(1, MINER_HOTKEY, "ck", 0.0, 0.0, "127.0.0.9", 8091)], "local", 27)
    return {"db_path": str(db), "metagraph_file": str(snapshot), "wallet_path": str(tmp_path / "wallets"),
            "wandb_mode": "disabled"}


def digest(path):
    """sha256 of a file's bytes: equal before and after means the task changed nothing."""
    with open(path, "rb") as handle:
        return hashlib.sha256(handle.read()).hexdigest()
