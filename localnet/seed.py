"""Network state that `up` writes: wallets, the metagraph snapshot, the validator database, env."""

import glob
import hashlib
import json
import math
import os
import shlex
import sys
import time

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _metagraph, _network, _store
from localnet import _collection, wandb_standin, wandb_sync
from localnet.layout import (MINER_HOTKEY, NETUID, NETWORK, OPERATOR_HOTKEY, OPERATOR_WALLET, write_file,
                             write_json)

GIB = 1024 ** 3
TIB = 1024 ** 4
# Above v1.9's validator_permit_stake of 1.0e4.
VALIDATOR_STAKE = 20000.0
# (GPU name as the driver reports it, MiB per card, cards); None: a CPU-only box.
# MiB figures from shared/data/gpus.json. Cycled over the miners.
SPECS_MIX = (
    ("NVIDIA H100 80GB HBM3", 81559, 8),
    ("NVIDIA A100-SXM4-80GB", 81920, 4),
    ("NVIDIA GeForce RTX 4090", 24564, 1),
    ("NVIDIA L40S", 46068, 2),
    None,
    "malformed",
    ("NVIDIA H200", 143771, 1),
    ("NVIDIA A100-PCIE-40GB", 40960, 2),
)
# Validators besides the operator's, at uids N+1.. (`up --foreign-validators K` takes the first K),
# each with a signed run on the W&B stand-in that exercises one of the miners' filters:
# (wallet name, stake, kind). Miners count a run only when its hotkey has more than
# VALID_VALIDATOR_STAKE and its signature verifies.
FOREIGN_VALIDATORS = (
    ("foreign-honest", 20000.0, "honest"),      # holds the highest-uid miner, publishes it, penalizes one
    ("foreign-lowstake", 500.0, "low stake"),   # signed, lists and penalizes every miner, but 500 < 1.024e3
    ("foreign-forged", 20000.0, "forged"),      # staked, lists and penalizes every miner, signed by another key
)
FOREIGN_HOTKEY = "validator"
# v1.8.3 validator_permit_stake: miners trust W&B runs of hotkeys above it.
VALID_VALIDATOR_STAKE = 1.024e3
# The allocation the honest foreign validator holds: timeline in days.
PREALLOCATION_DAYS = 30
WANDB_ENTITY = "neuralinternet"
WANDB_PROJECT = "opencompute"
# What v1.8.3 validators and miners put in `version`.
VALIDATOR_VERSION = 183
MINER_VERSION = 183
# What both decoy miner runs claim, no real miner has it: a reader that believes one shows it.
DECOY_SPECS = ("NVIDIA H200", 143771, 8)
# STATE/wandb/seeded.json: which seeded runs are which, for tests and readers' checks.
SEEDED_FILE = "seeded.json"


def _wallet(bt, path, name, hotkey):
    wallet = bt.Wallet(name=name, hotkey=hotkey, path=path)
    # Reuse keys of an earlier run, so hotkeys stay stable across `up`s.
    if not os.path.exists(os.path.join(path, name, "hotkeys", hotkey)):
        wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    return wallet


def create_wallets(layout):
    """The operator's wallet and one per miner under STATE_DIR/wallets: {uid: (hotkey, coldkey)}."""
    bt = _network.bittensor()
    os.makedirs(layout.wallet_path, mode=0o700, exist_ok=True)
    wallets = {0: _wallet(bt, layout.wallet_path, OPERATOR_WALLET, OPERATOR_HOTKEY)}
    for uid in layout.miner_uids:
        wallets[uid] = _wallet(bt, layout.wallet_path, layout.miner_wallet(uid), MINER_HOTKEY)
    for uid, (name, _stake, _kind) in zip(layout.foreign_uids, FOREIGN_VALIDATORS):
        wallets[uid] = _wallet(bt, layout.wallet_path, name, FOREIGN_HOTKEY)
    return dict((uid, (w.hotkey.ss58_address, w.coldkeypub.ss58_address)) for uid, w in wallets.items())


def spec_kind(uid):
    return SPECS_MIX[(uid - 1) % len(SPECS_MIX)]


def miner_details(uid):
    """The miner's self-reported specs in the upstream shape (JSON text), or malformed text."""
    kind = spec_kind(uid)
    if kind == "malformed":
        return '{"cpu": {"count": 16, "frequency": 2400.0}, "gpu": {"count": 1, "details": [{"name": '
    return json.dumps(_specs(uid, kind))


def wandb_specs(uid):
    """The `specs` of the miner's W&B run: miner_details parsed; for the malformed miner a JSON
    object a parser must reject (its one GPU has no name), as the database row is text it must reject."""
    if spec_kind(uid) != "malformed":
        return json.loads(miner_details(uid))
    specs = _specs(uid, ("unnamed", 81920, 1))
    specs["gpu"]["details"] = [{"capacity": 81920.0}]
    return specs


def _specs(uid, kind):
    """Upstream's specs dict for a box with kind's GPUs (None: CPU only)."""
    gpu = {"count": 0, "capacity": 0, "details": []}
    if kind is not None:
        name, mib, count = kind
        gpu = {"count": count, "capacity": float(mib * count),
               "details": [{"name": name, "capacity": float(mib)}] * count}
    cpus = 16 * max(gpu["count"], 1)
    return {
        "cpu": {"count": cpus, "frequency": 2450.0},
        "gpu": gpu,
        "hard_disk": {"total": 4 * TIB, "free": 3 * TIB - uid * GIB, "used": TIB + uid * GIB},
        "ram": {"total": cpus * 16 * GIB, "available": cpus * 14 * GIB, "used": cpus * 2 * GIB, "free": cpus * 12 * GIB},
        "has_docker": True,
    }


def gpu_summary(uid):
    kind = spec_kind(uid)
    if kind == "malformed":
        return "malformed specs"
    if kind is None:
        return "cpu only"
    return "%dx %s" % (kind[2], kind[0])


def score(uid):
    """Distinct per miner, so ordering by score is observable."""
    return round(1.0 - ((uid * 37) % 100) / 100.0, 2)


def write_metagraph(layout, keys):
    neurons = [_metagraph.Neuron(uid=0, hotkey=keys[0][0], coldkey=keys[0][1], stake=VALIDATOR_STAKE,
                                 incentive=0.0, ip="0.0.0.0", port=0, validator_permit=True)]
    for uid in layout.miner_uids:
        neurons.append(_metagraph.Neuron(uid=uid, hotkey=keys[uid][0], coldkey=keys[uid][1], stake=100.0 + uid,
                                         incentive=score(uid) / max(layout.miners, 1),
                                         ip=layout.ip(uid), port=layout.axon_port))
    for uid, (_name, stake, _kind) in zip(layout.foreign_uids, FOREIGN_VALIDATORS):
        neurons.append(_metagraph.Neuron(uid=uid, hotkey=keys[uid][0], coldkey=keys[uid][1], stake=stake,
                                         incentive=0.0, ip="0.0.0.0", port=0, validator_permit=True))
    _metagraph.write_snapshot(layout.metagraph_file, neurons, NETWORK, NETUID)


def seed_database(layout, keys):
    """Play the validator: its miner, miner_details and stats rows for this network's miners."""
    connection = _store.connect(layout.db_path, create=True)
    try:
        _store.ensure_upstream_schema(connection)
        hotkeys = [keys[uid][0] for uid in layout.miner_uids]
        marks = ",".join("?" * len(hotkeys))
        connection.execute("BEGIN IMMEDIATE")
        # Miners of an earlier, different network are no longer registered.
        for table, column in (("miner_details", "hotkey"), ("stats", "hotkey"), ("miner", "ss58_address")):
            connection.execute("DELETE FROM %s WHERE %s NOT IN (%s)" % (table, column, marks), hotkeys)
        # Every miner starts free, so no allocation of an earlier run is still held.
        for table in ("allocation", "nicompute_allocation"):
            if connection.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name=?", (table,)).fetchone():
                connection.execute("DELETE FROM %s" % table)
        now = time.strftime("%Y-%m-%d %H:%M:%S")
        for uid in layout.miner_uids:
            hotkey = keys[uid][0]
            kind = spec_kind(uid)
            gpu_specs = json.dumps({"gpu_name": kind[0], "num_gpus": kind[2]}) if isinstance(kind, tuple) else None
            connection.execute("INSERT OR REPLACE INTO miner (uid, ss58_address) VALUES (?, ?)", (uid, hotkey))
            connection.execute("INSERT INTO miner_details (hotkey, details, no_specs_count) VALUES (?, ?, 0) "
                               "ON CONFLICT(hotkey) DO UPDATE SET details = excluded.details, no_specs_count = 0",
                               (hotkey, miner_details(uid)))
            connection.execute("INSERT OR REPLACE INTO stats (uid, hotkey, gpu_specs, score, allocated, own_score, "
                               "reliability_score, created_at) VALUES (?, ?, ?, ?, 0, 1, ?, ?)",
                               (uid, hotkey, gpu_specs, score(uid), round(0.5 + score(uid) / 2, 3), now))
        connection.execute("COMMIT")
    finally:
        connection.close()
    os.chmod(layout.db_path, 0o600)


def run_signature(keypair, run_id):
    """What upstream validators put in `signature`: hex sr25519 over the SHA-256 digest of the run id, no 0x."""
    return keypair.sign(hashlib.sha256(run_id.encode("utf-8")).digest()).hex()


def seed_wandb(layout, keys):
    """Fresh W&B state for this network: the foreign validators' signed runs, the miners' signed
    specs runs with two decoys after them, and the allocation the honest validator holds
    (STATE/preallocated.json, for the supervisor).

    Like the validator database's allocation table, the stand-in's runs start over at every `up`.
    Returns what STATE/wandb/seeded.json holds (see docs/localnet.md).
    """
    bt = _network.bittensor()
    wandb_standin.ensure_api_key(layout)
    runs, validators, preallocated = _validator_runs(bt, layout, keys)
    miner_runs, miners = _miner_runs(bt, layout, keys)
    decoy_runs, decoys = _decoy_runs(bt, layout, keys)
    # Decoys last: a reader that keys runs by hotkey without verifying ends up with the lie.
    wandb_standin.write_runs(layout, runs + miner_runs + decoy_runs, projects=[(WANDB_ENTITY, WANDB_PROJECT)])
    seeded = {"entity": WANDB_ENTITY, "project": WANDB_PROJECT, "netuid": NETUID,
              "validators": validators, "miners": miners, "decoys": decoys}
    write_json(layout.wandb_path(SEEDED_FILE), seeded, mode=0o600)
    # Each `up` starts a fresh request log, and no miner has read anything yet.
    write_file(layout.wandb_path(wandb_standin.REQUESTS_LOG), "", mode=0o600)
    for pattern in (wandb_sync.READ_FILE, wandb_sync.SYNC_FILE % "*"):
        for path in glob.glob(layout.wandb_path(pattern)):
            os.unlink(path)
    write_json(layout.preallocated_file, preallocated, mode=0o600)
    return seeded


def _validator_runs(bt, layout, keys):
    """The foreign validators' runs: (runs, {uid: {"run", "hotkey", "kind"}}, preallocated)."""
    miners = [keys[uid][0] for uid in layout.miner_uids]
    held_uid = max(layout.miner_uids)
    penalized = [keys[min(layout.miner_uids)][0]]
    runs, seeded, preallocated = [], {}, {}
    for uid, (name, _stake, kind) in zip(layout.foreign_uids, FOREIGN_VALIDATORS):
        hotkey = keys[uid][0]
        run_id = wandb_standin.new_run_id()
        signer = bt.Wallet(name=name, hotkey=FOREIGN_HOTKEY, path=layout.wallet_path).hotkey
        if kind == "forged":
            # Signed by a key that is not config.hotkey's: miners must not believe it.
            signer = _stranger(bt)
        allocated = [keys[held_uid][0]] if kind == "honest" else list(miners)
        runs.append(wandb_standin.new_run(WANDB_ENTITY, WANDB_PROJECT, run_id, "validator-%s" % hotkey, {
            "hotkey": hotkey,
            "role": "validator",
            "config": {"netuid": NETUID, "network": NETWORK},
            "version": VALIDATOR_VERSION,
            "allocated_hotkeys": allocated,
            "penalized_hotkeys": penalized if kind == "honest" else list(miners),
            "stats": {},
            "signature": run_signature(signer, run_id),
        }))
        seeded[str(uid)] = {"run": run_id, "hotkey": hotkey, "kind": kind}
        if kind == "honest":
            _private, public_pem = _crypto.generate_key_pair()
            preallocated[str(held_uid)] = {"public_key": public_pem, "validator": hotkey,
                                           "expires_at": time.time() + PREALLOCATION_DAYS * layout.day_seconds}
    return runs, seeded, preallocated


def _stranger(bt):
    """A fresh keypair no wallet holds: what a forger signs with."""
    return bt.Keypair.create_from_mnemonic(bt.Keypair.generate_mnemonic())


def _miner_run(run_id, hotkey, specs, signer):
    """A miner's run as v1.8.3 miners publish it; signer None: no `signature` key at all."""
    config = {"hotkey": hotkey, "role": "miner", "config": {"netuid": NETUID, "network": NETWORK},
              "version": MINER_VERSION, "specs": specs}
    if signer is not None:
        config["signature"] = run_signature(signer, run_id)
    return wandb_standin.new_run(WANDB_ENTITY, WANDB_PROJECT, run_id, "miner-%s" % hotkey, config)


def _miner_runs(bt, layout, keys):
    """One signed specs run per miner: (runs, {uid: {"run", "hotkey", "specs": "ok"|"malformed"}})."""
    runs, seeded = [], {}
    for uid in layout.miner_uids:
        run_id = wandb_standin.new_run_id()
        signer = bt.Wallet(name=layout.miner_wallet(uid), hotkey=MINER_HOTKEY, path=layout.wallet_path).hotkey
        runs.append(_miner_run(run_id, keys[uid][0], wandb_specs(uid), signer))
        seeded[str(uid)] = {"run": run_id, "hotkey": keys[uid][0],
                            "specs": "malformed" if spec_kind(uid) == "malformed" else "ok"}
    return runs, seeded


def _decoy_runs(bt, layout, keys):
    """Two runs a reader must skip, both claiming DECOY_SPECS: a forged one for the lowest-uid miner
    (signed by a stranger) and an unsigned one for the next miner (the same one when it is alone).
    (runs, {"forged"|"unsigned": {"run", "hotkey", "uid", "display_name"}})."""
    uids = sorted(layout.miner_uids)
    forged_uid, unsigned_uid = uids[0], uids[1] if len(uids) > 1 else uids[0]
    runs, seeded = [], {}
    for kind, uid, signer in (("forged", forged_uid, _stranger(bt)), ("unsigned", unsigned_uid, None)):
        run_id = wandb_standin.new_run_id()
        runs.append(_miner_run(run_id, keys[uid][0], _specs(uid, DECOY_SPECS), signer))
        seeded[kind] = {"run": run_id, "hotkey": keys[uid][0], "uid": uid, "display_name": "miner-%s" % keys[uid][0]}
    return runs, seeded


def write_control_script(layout):
    """STATE_DIR/localnet: `localnet status|fault|down` for this network from anywhere (tests use it)."""
    path = os.path.join(layout.state_dir, "localnet")
    write_file(path, "#!/bin/sh\n# Drives the localnet in this directory.\ncd %s && exec %s -m localnet \"$@\" --state-dir %s\n"
               % (shlex.quote(_collection.REPO_ROOT), shlex.quote(sys.executable), shlex.quote(layout.state_dir)),
               mode=0o755)
    return path


def write_env(layout):
    settings = {
        "NICOMPUTE_NETWORK": NETWORK,
        "NICOMPUTE_NETUID": str(NETUID),
        "NICOMPUTE_WALLET_NAME": OPERATOR_WALLET,
        "NICOMPUTE_WALLET_HOTKEY": OPERATOR_HOTKEY,
        "NICOMPUTE_WALLET_PATH": layout.wallet_path,
        "NICOMPUTE_METAGRAPH_FILE": layout.metagraph_file,
        "NICOMPUTE_DB_PATH": layout.db_path,
        # The W&B stand-in (localnet/wandb_standin.py): WANDB_BASE_URL for the wandb SDK itself.
        "NICOMPUTE_WANDB_MODE": "online",
        "NICOMPUTE_WANDB_BASE_URL": layout.wandb_url,
        "NICOMPUTE_WANDB_API_KEY": wandb_standin.ensure_api_key(layout),
        "WANDB_BASE_URL": layout.wandb_url,
        # How often this network's miners read W&B (the real subnet: 900 s).
        "NICOMPUTE_MINER_SYNC_PERIOD": str(max(1, int(math.ceil(layout.sync_seconds)))),
        "NICOMPUTE_LOCALNET_STATE_DIR": layout.state_dir,
        "NICOMPUTE_LOCALNET_CTL": write_control_script(layout),
    }
    write_file(layout.env_file, "".join("%s=%s\n" % (key, shlex.quote(value)) for key, value in settings.items()),
               mode=0o600)
    return settings
