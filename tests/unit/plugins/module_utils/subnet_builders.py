# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Builders for the listing and penalty tests: real sr25519 keys, signed W&B run dicts as the
# readers see them, a validator database as upstream makes it, metagraph snapshot files and
# wallet directories. Plain functions, no fixtures: each test file wires its own.

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import sys

from bittensor_wallet import Keypair

from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import Neuron, write_snapshot
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import UPSTREAM_SCHEMA

# What tests/unit/conftest.py puts on sys.path: the collection as ansible_collections.neuralinternet.compute.
BUILD_DIR = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "..", ".build"))
REGKEY = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8A\n-----END PUBLIC KEY-----\n"
CREDENTIALS = {"username": "root", "password": "a1b2c3d4e5", "port": 4444, "version": 183}


def new_keypair():
    return Keypair.create_from_mnemonic(Keypair.generate_mnemonic())


def sign_run_id(keypair, run_id):
    """The signature upstream puts in a run's config: sr25519 over SHA-256 of the run id, hex without 0x."""
    return keypair.sign(hashlib.sha256(run_id.encode("utf-8")).digest()).hex()


def signed_run(keypair, run_id, hotkey=None, role="validator", state="running", signature=None, **config):
    """A run as _wandb_read._plain_run returns it, signed by keypair for hotkey (default: keypair's own)."""
    hotkey = keypair.ss58_address if hotkey is None else hotkey
    body = {"hotkey": hotkey, "role": role, "version": 183,
            "signature": sign_run_id(keypair, run_id) if signature is None else signature}
    body.update(config)
    return {"id": run_id, "name": "%s-%s" % (role, hotkey), "state": state, "config": body}


def specs(name, mib, count, cpus=32, ram=2.1e12, disk=1.5e12):
    """A miner_details.details dict as a miner reports it (GPU memory in MiB, RAM and disk in bytes)."""
    return {
        "cpu": {"count": cpus, "frequency": 2450.0},
        "gpu": {"count": count, "capacity": mib * count,
                "details": [{"name": name, "capacity": mib} for _index in range(count)]},
        "hard_disk": {"total": 2e12, "free": disk, "used": 5e11},
        "ram": {"total": 2.2e12, "available": ram, "used": 1e11},
        "has_docker": True,
    }


def cpu_only_specs(cpus=16):
    return {"cpu": {"count": cpus}, "gpu": {"count": 0, "capacity": 0, "details": []},
            "hard_disk": {"free": 5e11}, "ram": {"available": 6.4e10}, "has_docker": True}


def upstream_database(path, miner_details=(), scores=(), blacklist=(), allocations=()):
    """A database.db as the validator makes it (none of this collection's tables).

    miner_details: (hotkey, details text or dict); scores: (uid, hotkey, score);
    blacklist: (hotkey, details text or None); allocations: (hotkey, details dict).
    """
    connection = sqlite3.connect(str(path), isolation_level=None)
    for statement in UPSTREAM_SCHEMA:
        connection.execute(statement)
    for hotkey, details in miner_details:
        text = json.dumps(details) if isinstance(details, dict) else details
        connection.execute("INSERT INTO miner_details (hotkey, details) VALUES (?, ?)", (hotkey, text))
    for uid, hotkey, score in scores:
        connection.execute("INSERT INTO stats (uid, hotkey, score) VALUES (?, ?, ?)", (uid, hotkey, score))
    for hotkey, details in blacklist:
        connection.execute("INSERT INTO blacklist (hotkey, details) VALUES (?, ?)", (hotkey, details))
    for hotkey, details in allocations:
        connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (hotkey, json.dumps(details)))
    connection.close()
    return str(path)


def table_names(path):
    connection = sqlite3.connect(str(path))
    try:
        return sorted(row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'"))
    finally:
        connection.close()


def file_state(path):
    """The database file's bytes and any journal files beside it: equal before and after means untouched."""
    with open(str(path), "rb") as handle:
        content = handle.read()
    beside = sorted(name for name in os.listdir(os.path.dirname(str(path)))
                    if name.startswith(os.path.basename(str(path)) + "-"))
    return content, beside


def neuron(uid, hotkey, stake=0.0, serving=True, incentive=0.0, validator_permit=False):
    return Neuron(uid=uid, hotkey=hotkey, coldkey="ck-%d" % uid, stake=stake, incentive=incentive,
                  ip="127.0.0.%d" % (10 + uid) if serving else "0.0.0.0", port=8091 if serving else 0,
                  validator_permit=validator_permit)


def snapshot_file(path, neurons, netuid=27):
    write_snapshot(str(path), neurons, "local", netuid)
    return str(path)


def write_wallet(wallet_path, keypair, name="validator", hotkey="default", pub=True, key=True):
    """A wallet's hotkey files as bittensor_wallet writes them: hotkeys/<hotkey> and hotkeys/<hotkey>pub.txt."""
    directory = os.path.join(str(wallet_path), name, "hotkeys")
    os.makedirs(directory, exist_ok=True)
    if key:
        with open(os.path.join(directory, hotkey), "w") as handle:
            json.dump({"accountId": "0x" + keypair.public_key.hex(), "publicKey": "0x" + keypair.public_key.hex(),
                       "secretPhrase": "not a real phrase", "ss58Address": keypair.ss58_address}, handle)
    if pub:
        with open(os.path.join(directory, hotkey + "pub.txt"), "w") as handle:
            json.dump({"accountId": "0x" + keypair.public_key.hex(), "publicKey": "0x" + keypair.public_key.hex(),
                       "ss58Address": keypair.ss58_address}, handle)
    return directory


def subprocess_env(home):
    """Environment for a fresh interpreter that imports the collection as the unit tests do."""
    env = dict(os.environ)
    env["PYTHONPATH"] = BUILD_DIR + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env["HOME"] = str(home)
    for name in ("WANDB_API_KEY", "NICOMPUTE_WANDB_API_KEY", "WANDB_MODE"):
        env.pop(name, None)
    return env


PYTHON = sys.executable

# What a listing with W&B off must not import: the network stack, W&B, cryptography, and the collection's
# client, store writes and W&B reader. Ansible compiles every module_utils a task imports at every run.
HEAVY_IMPORTS = ("bittensor", "bittensor_wallet", "wandb", "cryptography", "aiohttp", "asyncio", "multiprocessing")
HEAVY_MODULE_UTILS = ("_client", "_network", "_dendrite", "_crypto", "_allocation", "_store", "_requirements",
                      "_wandb_read")
# Appended to a probe script: prints which of them its listing imported, as JSON.
HEAVY_PROBE = """
package = "ansible_collections.neuralinternet.compute.plugins.module_utils."
heavy = sorted(m for m in sys.modules if m.split(".")[0] in %r or m in [package + name for name in %r])
print(json.dumps(heavy))
""" % (HEAVY_IMPORTS, HEAVY_MODULE_UTILS)
