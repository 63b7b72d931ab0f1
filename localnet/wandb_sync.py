"""Miners that release themselves through W&B, as SN27 v1.8.3 miners do.

Upstream (neuralinternet/compute-subnet v1.8.3), every miner, at start and every 75 blocks
(~15 min) (``neurons/miner.py`` ``__check_alloaction_errors``, called from ``__init__`` and from
the main loop's 75-block branch):

1. reads ``allocated_hotkeys`` from the W&B runs of ``neuralinternet/opencompute`` filtered
   ``config.role == "validator"``, ``config.config.netuid == 27``,
   ``config.allocated_hotkeys $exists`` (``compute/wandb/wandb.py`` ``get_allocated_hotkeys``);
2. keeps a run only when its signature verifies (sr25519 by ``config.hotkey`` over the SHA-256
   digest of the run id, ``verify_run``) and its hotkey has metagraph total stake above
   ``validator_permit_stake`` = 1.024e3 (``get_valid_validator_hotkeys``);
3. when its own hotkey is in none of those lists and its allocation key file holds a key, it
   deregisters the allocation; a running container with an empty key file is killed.

When the read *fails* (W&B down, a wrong key, any exception), ``get_allocated_hotkeys`` raises
(only the per-run checks sit in a try), ``__check_alloaction_errors`` does not catch it, and
the main loop's ``except (RuntimeError, Exception)`` logs it: the allocation is **kept**, and
the next try is 75 blocks later. (At start-up the exception ends the miner process, which
also leaves the allocation alone.) An *empty* answer, by contrast, releases: no run lists it.

Here the supervisor does the read once per period for all miners, through the real wandb
public API against the W&B stand-in, judges it and writes it to STATE/wandb/read.json; each
axon worker's miners act on every new read, in a thread of the worker's own so the axons'
asyncio loop never waits on it. ``python -m localnet status --json`` shows each miner's last
read and what it did (worker K's miners: STATE/wandb/sync-K.json).
"""

import hashlib
import os
import threading
import time
import traceback

from localnet.layout import read_json, write_json

ENTITY = "neuralinternet"
PROJECT = "opencompute"
NETUID = 27
# v1.8.3 validator_permit_stake: a run counts only when its hotkey has more total stake.
VALIDATOR_PERMIT_STAKE = 1.024e3
# get_allocated_hotkeys' filters, as upstream writes them.
ALLOCATED_FILTERS = {"$and": [{"config.role": "validator"},
                              {"config.config.netuid": NETUID},
                              {"config.allocated_hotkeys": {"$exists": True}}]}
# The supervisor's last read, and what worker K's miners did with it (sync-0.json, sync-1.json, ...).
READ_FILE = "read.json"
SYNC_FILE = "sync-%s.json"
# How often a worker looks for a new read.
POLL_SECONDS = 0.2
# Upstream's public API retried a failing request for 20 s before it raised.
MAX_READ_TIMEOUT_S = 20


# ---------------------------------------------------------------- one read

def run_signature_valid(hotkey, signature, run_id):
    """verify_run: the signature is hotkey's sr25519 over sha256(run id); False on anything malformed."""
    from bittensor_wallet import Keypair

    if not hotkey or not signature:
        return False
    try:
        digest = hashlib.sha256(str(run_id).encode("utf-8")).digest()
        return bool(Keypair(ss58_address=hotkey).verify(digest, bytes.fromhex(signature)))
    except Exception:  # noqa: BLE001 - upstream logs and treats the run as unverified
        return False


def judge(runs, stakes):
    """Apply the miners' checks to runs [{"id", "name", "config"}] given {hotkey: total stake}.

    Returns (allocated hotkeys of the accepted runs, one report per run with its reasons).
    """
    allocated, reports = set(), []
    for run in runs:
        config = run.get("config") or {}
        hotkey = config.get("hotkey")
        reasons = []
        try:
            # The server filtered these already; checked again so a wrong filter shows.
            if config.get("role") != "validator":
                reasons.append("not a validator run")
            netuid = (config.get("config") or {}).get("netuid") if isinstance(config.get("config"), dict) else None
            if netuid != NETUID:
                reasons.append("wrong netuid")
            if not run_signature_valid(hotkey, config.get("signature"), run["id"]):
                reasons.append("bad signature")
            if hotkey not in stakes:
                reasons.append("not registered")
            elif not stakes[hotkey] > VALIDATOR_PERMIT_STAKE:
                reasons.append("low stake")
            listed = list(config.get("allocated_hotkeys") or [])
        except Exception as exc:  # noqa: BLE001 - upstream skips a run that fails its checks
            reasons.append("error: %s" % exc)
            listed = []
        if not reasons:
            allocated.update(listed)
        reports.append({"run": run["id"], "display_name": run.get("name"), "hotkey": hotkey,
                        "accepted": not reasons, "reasons": reasons, "allocated_hotkeys": len(listed)})
    return allocated, reports


class Reader:
    """Reads the validator runs through the real wandb public API (imported on first use).

    One wandb.Api for the supervisor's life, as a miner keeps one; flushed before every read.
    """

    def __init__(self, base_url, api_key, timeout, wandb_dir):
        self.base_url = base_url
        self.api_key = api_key
        self.timeout = timeout
        self.wandb_dir = wandb_dir
        self.api = None

    def read(self):
        """[{"id", "name", "config"}] of the runs get_allocated_hotkeys sees; raises when the read fails."""
        if self.api is None:
            os.makedirs(self.wandb_dir, mode=0o700, exist_ok=True)
            # Keep wandb's files (run dirs, settings) out of the home and /tmp.
            for name in ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR"):
                os.environ[name] = self.wandb_dir
            os.environ["WANDB_SILENT"] = "true"
            import wandb

            self.api = wandb.Api(api_key=self.api_key, overrides={"base_url": self.base_url},
                                 timeout=self.timeout)
        self.api.flush()
        # lazy=False: the configs come with the one Runs query instead of one Run query each.
        runs = self.api.runs("%s/%s" % (ENTITY, PROJECT), filters=ALLOCATED_FILTERS, lazy=False)
        if not runs:
            return []
        return [{"id": run.id, "name": run.name, "config": dict(run.config)} for run in runs]


# ---------------------------------------------------------------- the miners' side

def _holds_key(miner):
    """The allocation key file holds a key (upstream reads it to deregister)."""
    if hasattr(miner, "allocation_key"):
        return bool(miner.allocation_key and miner.allocation_key.strip())
    return miner.allocation is not None


def _orphan_container(miner):
    """A running container with an empty key file: upstream kills it whatever W&B says."""
    allocation = miner.allocation
    return (hasattr(miner, "allocation_key") and miner.allocation_key == "" and allocation is not None
            and not getattr(allocation, "paused", False))


def self_release(miner, reason):
    """Release as the miner would by itself; True when it released."""
    method = getattr(miner, "self_release", None)
    if method is not None:
        return bool(method(reason))
    with miner.lock:  # a Miner without self_release: its ordinary release path
        if miner.allocation is None:
            return False
        miner._release()
        return True


def preallocate(miner, entry):
    """Give the miner an allocation it holds from the start (a foreign validator's): a running
    container for entry["public_key"] and that key in its key file. The login gets a random
    password nobody knows."""
    method = getattr(miner, "preallocate", None)
    if method is not None:
        return method(entry["public_key"], entry["expires_at"])
    from localnet.box import new_password
    from localnet.miner import Allocation

    with miner.lock:
        miner.box.grant(new_password(), [])
        miner.allocation = Allocation(entry["public_key"], entry["expires_at"], "")
        if hasattr(miner, "allocation_key"):
            miner.allocation_key = entry["public_key"]
        miner._save()
    return True


class ReadLoop:
    """The supervisor's side: at start and every layout.sync_seconds, one read for every miner,
    judged and written to STATE/wandb/read.json for the axon workers."""

    def __init__(self, layout, stakes_source, reader=None):
        self.layout = layout
        self.stakes_source = stakes_source
        timeout = max(2, min(int(round(layout.sync_seconds)), MAX_READ_TIMEOUT_S))
        from localnet import wandb_standin

        self.reader = reader or Reader(layout.wandb_url, wandb_standin.read_api_key(layout), timeout,
                                       layout.wandb_path("client"))
        self.reads = 0

    def read_once(self):
        started = time.time()
        document = {"read_at": started, "period_seconds": self.layout.sync_seconds, "ok": False, "error": None,
                    "runs_seen": None, "runs_accepted": None, "runs": [], "allocated_hotkeys": []}
        try:
            runs = self.reader.read()
            # The metagraph as of now: re-read every period.
            stakes = self.stakes_source()
        except Exception as exc:  # noqa: BLE001 - any failure is a failed read: keep every allocation
            document["error"] = ("%s: %s" % (type(exc).__name__, exc))[:500]
            runs = None
        document["read_seconds"] = round(time.time() - started, 3)
        if runs is not None:
            allocated, reports = judge(runs, stakes)
            document.update(ok=True, runs_seen=len(runs), runs_accepted=sum(r["accepted"] for r in reports),
                            runs=reports, allocated_hotkeys=sorted(allocated))
        self.reads += 1
        document["reads"] = self.reads
        write_json(self.layout.wandb_path(READ_FILE), document)
        return document

    def run_forever(self):
        period = self.layout.sync_seconds
        while True:
            started = time.monotonic()
            try:
                self.read_once()
            except Exception:  # noqa: BLE001 - the read must never end the supervisor
                traceback.print_exc()
            time.sleep(max(0.0, started + period - time.monotonic()))


class Syncer:
    """An axon worker's side: its miners act on every new read, as each upstream miner acts on its own."""

    def __init__(self, layout, miners, document_file):
        self.layout = layout
        self.miners = miners  # {uid: (hotkey, Miner)}
        self.document_file = document_file
        self.last_release = dict((str(uid), None) for uid in miners)
        self.acted_on = 0

    def act_on(self, read):
        """Every miner acts on read (a read.json document); the worker's sync document."""
        document = dict(read, miners={})
        allocated = set(document.pop("allocated_hotkeys"))
        for uid, (hotkey, miner) in sorted(self.miners.items()):
            row = {"listed": None, "held": _holds_key(miner) or miner.allocation is not None}
            if not read["ok"]:
                row["action"] = "read failed"
            else:
                row["listed"] = hotkey in allocated
                row["action"] = self._act(uid, miner, row["listed"], document)
            row["last_self_release"] = self.last_release[str(uid)]
            document["miners"][str(uid)] = row
        write_json(self.document_file, document)
        return document

    def _act(self, uid, miner, listed, document):
        reason = None
        if _holds_key(miner) and not listed:
            reason = ("not in the allocated_hotkeys of any accepted validator run (W&B read: %d seen, %d accepted)"
                      % (document["runs_seen"], document["runs_accepted"]))
        elif _orphan_container(miner):
            reason = "a container runs with an empty allocation key"
        if reason is None:
            return "kept" if _holds_key(miner) else "free"
        if self_release(miner, reason):
            self.last_release[str(uid)] = {"at": time.time(), "reason": reason}
            return "released"
        return "release failed"

    def run_forever(self):
        while True:
            try:
                read = read_json(self.layout.wandb_path(READ_FILE))
                if read and read["reads"] > self.acted_on:
                    # Once per read, even when acting on it fails: as upstream, the next try is the next read.
                    self.acted_on = read["reads"]
                    self.act_on(read)
            except Exception:  # noqa: BLE001 - the sync must never end the worker
                traceback.print_exc()
            time.sleep(POLL_SECONDS)


def snapshot_stakes(layout):
    """{hotkey: total stake} from the metagraph snapshot, as the miner's metagraph has them now."""
    from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph

    return dict((neuron.hotkey, neuron.stake) for neuron in _metagraph.read_snapshot(layout.metagraph_file)[0])


def sync_file(layout, worker):
    """Where worker (its index) writes what its miners did with the last read."""
    return layout.wandb_path(SYNC_FILE % worker)


def start_reading(layout):
    """For the supervisor: the read thread (none when layout.sync_seconds is 0)."""
    if not layout.sync_seconds or layout.sync_seconds <= 0:
        return None
    loop = ReadLoop(layout, lambda: snapshot_stakes(layout))
    threading.Thread(target=loop.run_forever, name="wandb-read", daemon=True).start()
    return loop


def attach(layout, servers, worker):
    """For axon worker `worker`, before its axons serve: give its miners their preallocations, then
    start the thread that acts on the supervisor's reads (none when layout.sync_seconds is 0).
    servers: objects with uid, wallet, miner."""
    for server in servers:
        entry = layout.preallocation(server.uid)
        if entry:
            preallocate(server.miner, entry)
    if not layout.sync_seconds or layout.sync_seconds <= 0:
        return None
    miners = dict((server.uid, (server.wallet.hotkey.ss58_address, server.miner)) for server in servers)
    syncer = Syncer(layout, miners, sync_file(layout, worker))
    threading.Thread(target=syncer.run_forever, name="wandb-sync", daemon=True).start()
    return syncer


# ---------------------------------------------------------------- status

def miner_report(layout, uid):
    """What miner uid last read from W&B and did about it, for `localnet status`; None before the first read."""
    document = read_json(sync_file(layout, layout.worker_of(uid)))
    if not document or str(uid) not in document.get("miners", {}):
        return None
    row = document["miners"][str(uid)]
    return {
        "read_at": document["read_at"],
        "read": "ok" if document["ok"] else "failed",
        "error": document["error"],
        "runs_seen": document["runs_seen"],
        "runs_accepted": document["runs_accepted"],
        "rejected": [{"run": run["run"], "hotkey": run["hotkey"], "reasons": run["reasons"]}
                     for run in document["runs"] if not run["accepted"]],
        "listed": row["listed"],
        "action": row["action"],
        "last_self_release": row.get("last_self_release"),
    }
