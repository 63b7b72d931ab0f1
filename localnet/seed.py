"""Network state that `up` writes: wallets, the metagraph snapshot, the validator database, env."""

import json
import os
import shlex
import sys
import time

from ansible_collections.neuralinternet.compute.plugins.module_utils import _network, _store
from localnet import _collection
from localnet.layout import MINER_HOTKEY, NETUID, NETWORK, OPERATOR_HOTKEY, OPERATOR_WALLET, write_file

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
    return dict((uid, (w.hotkey.ss58_address, w.coldkeypub.ss58_address)) for uid, w in wallets.items())


def spec_kind(uid):
    return SPECS_MIX[(uid - 1) % len(SPECS_MIX)]


def miner_details(uid):
    """The miner's self-reported specs in the upstream shape (JSON text), or malformed text."""
    kind = spec_kind(uid)
    if kind == "malformed":
        return '{"cpu": {"count": 16, "frequency": 2400.0}, "gpu": {"count": 1, "details": [{"name": '
    gpu = {"count": 0, "capacity": 0, "details": []}
    if kind is not None:
        name, mib, count = kind
        gpu = {"count": count, "capacity": float(mib * count),
               "details": [{"name": name, "capacity": float(mib)}] * count}
    cpus = 16 * max(gpu["count"], 1)
    return json.dumps({
        "cpu": {"count": cpus, "frequency": 2450.0},
        "gpu": gpu,
        "hard_disk": {"total": 4 * TIB, "free": 3 * TIB - uid * GIB, "used": TIB + uid * GIB},
        "ram": {"total": cpus * 16 * GIB, "available": cpus * 14 * GIB, "used": cpus * 2 * GIB, "free": cpus * 12 * GIB},
        "has_docker": True,
    })


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
    neurons = [_network.Neuron(uid=0, hotkey=keys[0][0], coldkey=keys[0][1], stake=VALIDATOR_STAKE,
                               incentive=0.0, ip="0.0.0.0", port=0, validator_permit=True)]
    for uid in layout.miner_uids:
        neurons.append(_network.Neuron(uid=uid, hotkey=keys[uid][0], coldkey=keys[uid][1], stake=100.0 + uid,
                                       incentive=score(uid) / max(layout.miners, 1),
                                       ip=layout.ip(uid), port=layout.axon_port))
    _network.write_snapshot(layout.metagraph_file, neurons, NETWORK, NETUID)


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
        "NICOMPUTE_WANDB_MODE": "disabled",
        "NICOMPUTE_LOCALNET_STATE_DIR": layout.state_dir,
        "NICOMPUTE_LOCALNET_CTL": write_control_script(layout),
    }
    write_file(layout.env_file, "".join("%s=%s\n" % (key, shlex.quote(value)) for key, value in settings.items()),
               mode=0o600)
    return settings
