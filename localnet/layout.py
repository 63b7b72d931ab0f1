"""Where a localnet keeps its state, and how miners are addressed.

STATE_DIR/
  localnet.json        the running network: settings, PIDs, users (written by `up`)
  env                  KEY=value settings for the collection (0600)
  metagraph.json       the metagraph snapshot the client reads instead of the chain
  database.db          the validator database (miner_details, stats)
  wallets/             operator (validator) and miner wallets
  supervisor.log       the output of the supervisor and its axon workers
  workers.json         the axon workers the supervisor started (PIDs, uids), read by `up`
  miners/<uid>/        per miner: sshd config, host key, log, authorized_keys,
                       fault (set by `fault`), allocation.json (kept by the miner's worker)
  preallocated.json    allocations miners hold from the start (a foreign validator's)
  wandb/               the W&B stand-in: api_key (0600), runs.json, requests.log,
                       standin.log, read.json (the supervisor's last W&B read),
                       sync-<K>.json (what worker K's miners did with it)
"""

import json
import os
import tempfile

NETUID = 27
NETWORK = "local"
OPERATOR_WALLET = "operator"
OPERATOR_HOTKEY = "validator"
MINER_HOTKEY = "default"
# Marks the users localnet creates (followed by the owning state dir), so leftovers of a
# crashed run can be told from real users and from another running localnet's users.
USER_COMMENT = "nicompute-localnet"
# The W&B stand-in listens on PREFIX.2 (miners are PREFIX.11 and up).
WANDB_HOST = 2


class Layout:
    """Paths and addressing of one localnet, derived from its state dir and settings."""

    def __init__(self, state_dir, miners=0, ip_prefix="127.0.0", user_prefix="nicm",
                 axon_port=8091, ssh_port=4444, day_seconds=86400.0, build_seconds=1.0, miner_version=183,
                 foreign_validators=0, sync_seconds=0.0, wandb_port=8080, workers=1):
        self.state_dir = os.path.abspath(state_dir)
        self.miners = miners
        self.ip_prefix = ip_prefix
        self.user_prefix = user_prefix
        self.axon_port = axon_port
        self.ssh_port = ssh_port
        self.day_seconds = day_seconds
        # How long a miner "builds" a container before it grants; which upstream miner it imitates.
        self.build_seconds = build_seconds
        self.miner_version = miner_version
        # Validators other than the operator's (uids after the miners) with runs on the W&B stand-in;
        # miners read W&B at start and every sync_seconds (0: never, they keep any allocation).
        self.foreign_validators = foreign_validators
        self.sync_seconds = sync_seconds
        self.wandb_port = wandb_port
        # Axon worker processes; each serves a contiguous block of miners (see worker_uids).
        self.workers = workers

    # ---- settings persisted in localnet.json

    def settings(self):
        return {"miners": self.miners, "ip_prefix": self.ip_prefix, "user_prefix": self.user_prefix,
                "axon_port": self.axon_port, "ssh_port": self.ssh_port, "day_seconds": self.day_seconds,
                "build_seconds": self.build_seconds, "miner_version": self.miner_version,
                "foreign_validators": self.foreign_validators, "sync_seconds": self.sync_seconds,
                "wandb_port": self.wandb_port, "workers": self.workers}

    @classmethod
    def load(cls, state_dir):
        """The layout of the network recorded in state_dir, with its run record (or None)."""
        record = read_json(os.path.join(os.path.abspath(state_dir), "localnet.json"))
        if record is None:
            return None, None
        return cls(state_dir, **record["settings"]), record

    # ---- paths

    def path(self, *parts):
        return os.path.join(self.state_dir, *parts)

    @property
    def record_file(self):
        return self.path("localnet.json")

    @property
    def wallet_path(self):
        return self.path("wallets")

    @property
    def metagraph_file(self):
        return self.path("metagraph.json")

    @property
    def db_path(self):
        return self.path("database.db")

    @property
    def env_file(self):
        return self.path("env")

    @property
    def supervisor_log(self):
        return self.path("supervisor.log")

    @property
    def workers_file(self):
        return self.path("workers.json")

    @property
    def preallocated_file(self):
        return self.path("preallocated.json")

    def preallocation(self, uid):
        """The allocation miner uid holds from the start, or None: {"public_key", "expires_at", "validator"}.

        `up` writes them (the honest foreign validator holds the highest-uid miner); the supervisor
        gives them to the miners before their axons serve.
        """
        return (read_json(self.preallocated_file) or {}).get(str(uid))

    # ---- the W&B stand-in (localnet/wandb_standin.py)

    def wandb_path(self, name):
        return self.path("wandb", name)

    @property
    def wandb_ip(self):
        return "%s.%d" % (self.ip_prefix, WANDB_HOST)

    @property
    def wandb_url(self):
        return "http://%s:%d" % (self.wandb_ip, self.wandb_port)

    def miner_dir(self, uid):
        return self.path("miners", str(uid))

    def miner_file(self, uid, name):
        return os.path.join(self.miner_dir(uid), name)

    # ---- addressing: uid 0 is the operator's validator, miners are 1..N

    @property
    def miner_uids(self):
        return range(1, self.miners + 1)

    def worker_uids(self, index):
        """The miners worker index (0-based) serves: blocks as even as they come, lower uids first."""
        size, extra = divmod(self.miners, self.workers)
        first = 1 + index * size + min(index, extra)
        return range(first, first + size + (1 if index < extra else 0))

    def worker_of(self, uid):
        return next(index for index in range(self.workers) if uid in self.worker_uids(index))

    def ip(self, uid):
        return "%s.%d" % (self.ip_prefix, 10 + uid)

    def user(self, uid):
        return "%s%d" % (self.user_prefix, uid)

    @property
    def user_comment(self):
        return "%s %s" % (USER_COMMENT, self.state_dir)

    def miner_wallet(self, uid):
        return "miner%d" % uid

    # ---- foreign validators: uids N+1.. after the N miners

    @property
    def foreign_uids(self):
        return range(self.miners + 1, self.miners + 1 + self.foreign_validators)


def read_json(path):
    try:
        with open(path) as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None


def write_file(path, text, mode=0o644):
    """Write atomically with the given mode (0600 for secrets), so readers never see half a file."""
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_json(path, document, mode=0o644):
    write_file(path, json.dumps(document, indent=1, sort_keys=True) + "\n", mode)
