"""The W&B stand-in and the miners that release themselves through it.

The real wandb SDK (its public API) against localnet/wandb_standin.py; real miners (axons)
reached by a real dendrite; the supervisor's W&B read (localnet/wandb_sync.py). Needs root and
OpenSSH like test_localnet.py. Every wait is bounded.
"""

import base64
import hashlib
import json
import os
import shlex
import sqlite3
import stat
import sys
import time
import urllib.error
import urllib.request

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402

_collection.ensure_importable()

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _metagraph, _network, _protocol  # noqa: E402
from localnet import harness, seed, wandb_standin, wandb_sync  # noqa: E402
from localnet.layout import Layout  # noqa: E402

TIMEOUT = 10.0
# Per test run addresses and users (test_localnet.py uses 127.100-254.x, test_concurrency.py 127.50-99.x).
RUN = os.getpid()
WB_IP, WB_USERS = "127.%d.%d" % (10 + RUN // 250 % 40, RUN % 250), "nw%x" % RUN
ONE_IP, ONE_USERS = "127.%d.%d" % (10 + (RUN // 250 + 20) % 40, RUN % 250), "no%x" % RUN
# Six, so that uid 6, the miner with malformed specs, is among them.
MINERS = 6
# Seconds between the miners' W&B reads in these tests (the default is 5).
SYNC = 2.0
# A read of a stopped stand-in fails after max(2, SYNC) s; allow for one read in flight, one more, and slack.
PERIOD_BOUND = SYNC + 2 * max(2.0, SYNC) + 2.0
DEVICE = {"cpu": {"count": 1}, "gpu": {}, "hard_disk": {"capacity": 1 << 30}, "ram": {"capacity": 1 << 30}}
ENTITY, PROJECT = "neuralinternet", "opencompute"
UPSTREAM_FILTERS = {"$and": [{"config.role": "validator"}, {"config.config.netuid": 27},
                             {"config.allocated_hotkeys": {"$exists": True}}]}
# How v1.8.3 validators find the miners' specs runs.
MINER_FILTERS = {"$and": [{"config.role": "miner"}, {"config.config.netuid": 27}, {"state": "running"}]}


def require_environment():  # a missing requirement is a failure, not a skip
    problem = harness.missing_requirements()
    if problem:
        pytest.fail(problem, pytrace=False)


# Run the real CLI, as a user would.
localnet = harness.run_cli


def wait_for(predicate, timeout, what):
    """Poll predicate until it returns something truthy; fail naming what after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("%s: not within %.1fs" % (what, timeout))
        time.sleep(0.1)


class WandbNet:
    """A running localnet with its W&B stand-in, as the tests see it."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        with open(os.path.join(state_dir, "env")) as handle:
            self.env = dict((key, shlex.split(value)[0]) for key, value in
                            (line.split("=", 1) for line in handle.read().splitlines()))
        self.layout, _record = Layout.load(state_dir)
        self.operator = _network.load_hotkey(self.env["NICOMPUTE_WALLET_NAME"], self.env["NICOMPUTE_WALLET_HOTKEY"],
                                             self.env["NICOMPUTE_WALLET_PATH"])
        self.query = _network.MinerQuery(self.operator)
        self.neurons = dict((n.uid, n) for n in _metagraph.read_snapshot(self.env["NICOMPUTE_METAGRAPH_FILE"])[0])
        self.url = self.env["NICOMPUTE_WANDB_BASE_URL"]
        self.key = self.env["NICOMPUTE_WANDB_API_KEY"]

    def status(self):
        return json.loads(localnet("status", "--json", "--state-dir", self.state_dir).stdout)

    def sync(self):
        """What the miners did with the last read (one axon worker serves these MINERS miners)."""
        with open(wandb_sync.sync_file(self.layout, 0)) as handle:
            return json.load(handle)

    def reads_after(self, count, timeout=PERIOD_BOUND):
        """Wait until the miners finished `count` more W&B reads than now; the last sync document."""
        target = self.sync()["reads"] + count
        wait_for(lambda: self.sync()["reads"] >= target, timeout * count, "%d more W&B reads" % count)
        return self.sync()

    def allocate(self, uid):
        _private, public_pem = _crypto.generate_key_pair()
        reply = self.query.allocate(self.neurons[uid], DEVICE, 1, public_pem, _protocol.docker_requirement(),
                                    TIMEOUT)
        assert reply.status is True, reply.describe()
        return public_pem

    def holds(self, uid, public_pem):
        return self.query.still_allocated(self.neurons[uid], public_pem, TIMEOUT).status is True

    def requests(self):
        return wandb_standin.requests_logged(self.layout)


@pytest.fixture(scope="module")
def wnet(tmp_path_factory):
    require_environment()
    state_dir = str(tmp_path_factory.mktemp("wandb-net"))
    localnet("up", "--state-dir", state_dir, "--miners", str(MINERS), "--sync-seconds", str(SYNC),
             "--build-seconds", "0", "--ip-prefix", WB_IP, "--user-prefix", WB_USERS)
    net = WandbNet(state_dir)
    # The miners' first read (it imports wandb and starts its service: about a second).
    wait_for(lambda: os.path.exists(wandb_sync.sync_file(net.layout, 0)), 15, "the miners' first W&B read")
    yield net
    localnet("down", "--state-dir", state_dir, check=False)


@pytest.fixture(scope="module")
def wandb_api(wnet, tmp_path_factory):
    """The real wandb SDK's public API against the stand-in; its files under a temporary dir."""
    directory = str(tmp_path_factory.mktemp("wandb-client"))
    names = ("WANDB_DIR", "WANDB_CONFIG_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_SILENT")
    saved = dict((name, os.environ.get(name)) for name in names)
    os.environ.update(WANDB_DIR=directory, WANDB_CONFIG_DIR=directory, WANDB_CACHE_DIR=directory,
                      WANDB_DATA_DIR=directory, WANDB_SILENT="true")
    import wandb

    yield wandb.Api(api_key=wnet.key, overrides={"base_url": wnet.url}, timeout=10)
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def signature(keypair, run_id):
    return keypair.sign(hashlib.sha256(run_id.encode("utf-8")).digest()).hex()


def publish(api, keypair, run_id, allocated, netuid=27):
    """Publish a validator run as upstream validators' config looks, through the public API."""
    api.create_run(entity=ENTITY, project=PROJECT, run_id=run_id)
    run = api.run("%s/%s/%s" % (ENTITY, PROJECT, run_id))
    run.display_name = "validator-%s" % keypair.ss58_address
    run.config.update({"hotkey": keypair.ss58_address, "role": "validator", "config": {"netuid": netuid},
                       "version": 100, "allocated_hotkeys": list(allocated), "penalized_hotkeys": [],
                       "signature": signature(keypair, run_id)})
    run.update()
    api.flush()
    return run


def set_stake(net, uid, stake):
    """Change one neuron's stake in the metagraph snapshot (the miners re-read it every period)."""
    neurons = _metagraph.read_snapshot(net.env["NICOMPUTE_METAGRAPH_FILE"])[0]
    for neuron in neurons:
        if neuron.uid == uid:
            neuron.stake = stake
    _metagraph.write_snapshot(net.env["NICOMPUTE_METAGRAPH_FILE"], neurons, "local", 27)


# ---------------------------------------------------------------- filters and checks (no network needed)

def _run(config, name="r1"):
    return wandb_standin.new_run(ENTITY, PROJECT, name, "validator-x", config)


def test_filters_match_as_upstream_uses_them():
    run = _run({"role": "validator", "config": {"netuid": 27}, "allocated_hotkeys": ["a", "b"]})
    assert wandb_standin.matches(run, UPSTREAM_FILTERS)
    assert not wandb_standin.matches(run, {"$and": [{"config.role": "miner"}]})
    assert not wandb_standin.matches(run, {"config.config.netuid": 15})
    assert not wandb_standin.matches(run, {"config.penalized_hotkeys": {"$exists": True}})
    assert wandb_standin.matches(run, {"config.penalized_hotkeys": {"$exists": False}})
    assert wandb_standin.matches(run, {"$and": [{"config.config.netuid": 27}, {"display_name": "validator-x"}]})
    assert not wandb_standin.matches(run, {"display_name": "validator-y"})
    assert wandb_standin.matches(run, {"config.allocated_hotkeys": "a"})  # Mongo: a list holds it
    with pytest.raises(wandb_standin.QueryError):
        wandb_standin.matches(run, {"config.role": {"$regex": "val"}})


def test_miner_filter_needs_role_netuid_and_running_state():
    run = _run({"role": "miner", "config": {"netuid": 27}, "specs": {}})
    assert wandb_standin.matches(run, MINER_FILTERS)
    assert not wandb_standin.matches(dict(run, state="finished"), MINER_FILTERS)
    assert not wandb_standin.matches(_run({"role": "miner", "config": {"netuid": 15}}), MINER_FILTERS)
    assert not wandb_standin.matches(_run({"role": "validator", "config": {"netuid": 27}}), MINER_FILTERS)
    assert not wandb_standin.matches(run, {"config.signature": {"$exists": True}})


def test_judge_rejects_low_stake_forged_and_foreign_netuid():
    bt = _network.bittensor()
    honest, poor, forger = (bt.Keypair.create_from_mnemonic(bt.Keypair.generate_mnemonic()) for _index in range(3))
    stakes = {honest.ss58_address: 2e4, poor.ss58_address: 500.0, forger.ss58_address: 2e4}

    def run(keypair, run_id, allocated, signer=None, netuid=27):
        return {"id": run_id, "name": "validator-" + keypair.ss58_address, "config": {
            "hotkey": keypair.ss58_address, "role": "validator", "config": {"netuid": netuid},
            "allocated_hotkeys": allocated, "signature": signature(signer or keypair, run_id)}}

    allocated, reports = wandb_sync.judge([run(honest, "aaaa1111", ["m1"]), run(poor, "bbbb2222", ["m2"]),
                                           run(forger, "cccc3333", ["m3"], signer=honest),
                                           run(honest, "dddd4444", ["m4"], netuid=15)], stakes)
    assert allocated == {"m1"}
    assert [r["reasons"] for r in reports] == [[], ["low stake"], ["bad signature"], ["wrong netuid"]]
    # The signature covers the run id: the same config under another id does not verify.
    moved = run(honest, "aaaa1111", ["m1"])
    moved["id"] = "eeee5555"
    assert wandb_sync.judge([moved], stakes)[1][0]["reasons"] == ["bad signature"]
    # Exactly 1.024e3 is not above the threshold.
    assert wandb_sync.judge([run(poor, "ffff6666", ["m5"])], {poor.ss58_address: 1.024e3})[1][0]["reasons"] \
        == ["low stake"]


# ---------------------------------------------------------------- the stand-in, through the real SDK

def test_env_points_the_sdk_at_the_standin(wnet):
    assert wnet.env["NICOMPUTE_WANDB_MODE"] == "online"
    assert wnet.env["WANDB_BASE_URL"] == wnet.url == "http://%s.2:8080" % WB_IP
    assert len(wnet.key) == 40 and wnet.key not in open(os.path.join(wnet.state_dir, "localnet.json")).read()


def test_sdk_creates_finds_updates_reads_and_deletes_runs(wnet, wandb_api):
    project = "opencompute-sdk-test"
    path = "%s/%s" % (ENTITY, project)
    created = wandb_api.create_run(entity=ENTITY, project=project, run_id="sdkrun01")
    assert created.id == "sdkrun01" and created.state == "running"
    # A run from create_run lacks fields run.update() needs; load it before changing it.
    run = wandb_api.run("%s/sdkrun01" % path)
    run.display_name = "validator-sdk"
    run.config["role"] = "validator"
    run.config["config"] = {"netuid": 27}
    run.config["allocated_hotkeys"] = ["h1", "h2"]
    run.update()
    for index in range(2, 5):
        wandb_api.create_run(entity=ENTITY, project=project, run_id="sdkrun%02d" % index)
    wandb_api.flush()

    read = wandb_api.run("%s/sdkrun01" % path)
    assert (read.id, read.name, read.display_name, read.state) == (
        "sdkrun01", "validator-sdk", "validator-sdk", "running")
    assert read.config == {"role": "validator", "config": {"netuid": 27}, "allocated_hotkeys": ["h1", "h2"]}
    found = wandb_api.runs(path, filters={"$and": [{"config.config.netuid": 27}, {"display_name": "validator-sdk"}]})
    assert [r.id for r in found] == ["sdkrun01"] and found[0].config["allocated_hotkeys"] == ["h1", "h2"]
    assert len(wandb_api.runs(path, filters={"config.allocated_hotkeys": {"$exists": True}})) == 1
    assert len(wandb_api.runs(path, filters={"display_name": "nobody"})) == 0
    # Pages of one: every run once, in creation order.
    paged = wandb_api.runs(path, per_page=1)
    assert len(paged) == 4 and [r.id for r in paged] == ["sdkrun01", "sdkrun02", "sdkrun03", "sdkrun04"]
    newest_first = wandb_api.runs(path, order="-created_at", per_page=2)
    assert [r.id for r in newest_first][0] == "sdkrun04"

    with pytest.raises(Exception, match="Could not find run"):
        wandb_api.run("%s/missing1" % path)
    wandb_api.run("%s/sdkrun02" % path).delete()
    wandb_api.flush()
    with pytest.raises(Exception, match="Could not find run"):
        wandb_api.run("%s/sdkrun02" % path)
    with pytest.raises(Exception, match="Could not find project"):
        len(wandb_api.runs("%s/no-such-project" % ENTITY))

    # Stored as W&B stores config, and every request logged without the key.
    stored = [r for r in wandb_standin.read_runs(wnet.layout) if r["name"] == "sdkrun01"][0]
    assert stored["config"]["allocated_hotkeys"] == {"value": ["h1", "h2"], "desc": None}
    operations = [entry.get("operation") for entry in wnet.requests() if entry.get("project") == project]
    assert {"UpsertBucket", "Run", "Runs", "DeleteRun"} <= set(operations)
    with open(wnet.layout.wandb_path(wandb_standin.REQUESTS_LOG)) as handle:
        assert wnet.key not in handle.read()


def test_wrong_key_is_refused(wnet, wandb_api):
    import wandb

    with pytest.raises(Exception, match="user is not logged in"):
        wandb.Api(api_key="f" * 40, overrides={"base_url": wnet.url}, timeout=10)
    assert wnet.requests()[-1]["status"] == 401 and wnet.requests()[-1]["operation"] == "Viewer"
    body = json.dumps({"operationName": "Viewer", "query": "query Viewer { viewer { id } }"}).encode()
    for headers in ({}, {"Authorization": "Basic " + base64.b64encode(b"api:" + b"0" * 40).decode()}):
        request = urllib.request.Request(wnet.url + "/graphql", data=body, headers=headers)
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=5)
        assert caught.value.code == 401
    good = {"Authorization": "Basic " + base64.b64encode(("api:" + wnet.key).encode()).decode()}
    with urllib.request.urlopen(urllib.request.Request(wnet.url + "/graphql", data=body, headers=good),
                                timeout=5) as answer:
        assert json.load(answer)["data"]["viewer"]["username"] == "localnet"


def test_foreign_validators_and_their_runs_are_seeded(wnet, wandb_api):
    foreign = [wnet.neurons[uid] for uid in range(MINERS + 1, MINERS + 4)]
    assert sorted(wnet.neurons) == list(range(MINERS + 4))
    assert [n.stake for n in foreign] == [20000.0, 500.0, 20000.0] and all(n.validator_permit for n in foreign)
    runs = dict((run.config["hotkey"], run) for run in wandb_api.runs("%s/%s" % (ENTITY, PROJECT),
                                                                      filters=UPSTREAM_FILTERS))
    assert set(runs) == set(n.hotkey for n in foreign)
    miners = [wnet.neurons[uid].hotkey for uid in range(1, MINERS + 1)]
    honest, poor, forged = (runs[n.hotkey] for n in foreign)
    assert honest.display_name == "validator-" + foreign[0].hotkey
    assert honest.config["allocated_hotkeys"] == [miners[-1]] and honest.config["penalized_hotkeys"] == [miners[0]]
    assert poor.config["allocated_hotkeys"] == miners == forged.config["allocated_hotkeys"]
    assert poor.config["penalized_hotkeys"] == miners == forged.config["penalized_hotkeys"]
    verify = [wandb_sync.run_signature_valid(r.config["hotkey"], r.config["signature"], r.id)
              for r in (honest, poor, forged)]
    assert verify == [True, True, False]
    # The honest validator really holds the highest-uid miner, from the start.
    top = dict((row["uid"], row) for row in wnet.status()["miners"])[MINERS]
    assert top["allocated"] is True and top["wandb"]["listed"] is True and top["wandb"]["action"] == "kept"


def seeded(net):
    """STATE/wandb/seeded.json: which seeded runs are which."""
    path = net.layout.wandb_path(seed.SEEDED_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path) as handle:
        return json.load(handle)


def database_details(net):
    """{hotkey: miner_details.details text} from the validator database."""
    connection = sqlite3.connect(net.env["NICOMPUTE_DB_PATH"])
    try:
        return dict(connection.execute("SELECT hotkey, details FROM miner_details"))
    finally:
        connection.close()


def verifies(run):
    """Upstream's check: config.signature is config.hotkey's sr25519 over sha256(run id)."""
    bt = _network.bittensor()
    digest = hashlib.sha256(run.id.encode("utf-8")).digest()
    try:
        keypair = bt.Keypair(ss58_address=run.config["hotkey"])
        return bool(keypair.verify(digest, bytes.fromhex(run.config["signature"])))
    except (KeyError, ValueError):
        return False


def read_specs(runs, registered):
    """A validator's read of the miners' runs: ({hotkey: specs} of verified runs of registered
    hotkeys, run ids skipped)."""
    specs, skipped = {}, []
    for run in runs:
        if run.config.get("hotkey") in registered and verifies(run):
            specs[run.config["hotkey"]] = run.config["specs"]
        else:
            skipped.append(run.id)
    return specs, skipped


def test_miner_specs_runs_are_seeded_as_upstream_publishes_them(wnet, wandb_api):
    document = seeded(wnet)
    assert (document["entity"], document["project"], document["netuid"]) == (ENTITY, PROJECT, 27)
    runs = list(wandb_api.runs("%s/%s" % (ENTITY, PROJECT), filters=MINER_FILTERS))
    by_id = dict((run.id, run) for run in runs)
    decoys = document["decoys"]
    # One run per miner, plus the forged and the unsigned one; no validator run.
    assert len(runs) == MINERS + 2 == len(by_id)
    assert set(by_id) == set(m["run"] for m in document["miners"].values()) | {decoys["forged"]["run"],
                                                                               decoys["unsigned"]["run"]}
    details = database_details(wnet)
    for uid in range(1, MINERS + 1):
        entry, hotkey = document["miners"][str(uid)], wnet.neurons[uid].hotkey
        run = by_id[entry["run"]]
        assert entry["hotkey"] == run.config["hotkey"] == hotkey
        assert (run.display_name, run.state, run.config["role"], run.config["version"]) == (
            "miner-" + hotkey, "running", "miner", 183)
        assert verifies(run), "miner %d's run does not verify" % uid
        if entry["specs"] == "ok":
            assert run.config["specs"] == json.loads(details[hotkey])
        else:
            # The database row is text no parser reads; the run is an object with a nameless GPU.
            with pytest.raises(ValueError):
                json.loads(details[hotkey])
            assert isinstance(run.config["specs"], dict)
            assert any("name" not in gpu for gpu in run.config["specs"]["gpu"]["details"])
    assert [uid for uid, m in document["miners"].items() if m["specs"] == "malformed"] == ["6"]

    forged, unsigned = by_id[decoys["forged"]["run"]], by_id[decoys["unsigned"]["run"]]
    assert decoys["forged"]["uid"] == 1 and decoys["unsigned"]["uid"] == 2
    lowest = wnet.neurons[1].hotkey
    assert forged.config["hotkey"] == lowest and forged.display_name == "miner-" + lowest
    assert forged.config["signature"] and not verifies(forged)
    assert forged.config["specs"]["gpu"]["details"] == [{"name": "NVIDIA H200", "capacity": 143771.0}] * 8
    assert unsigned.config["hotkey"] == wnet.neurons[2].hotkey and "signature" not in unsigned.config
    assert len(wandb_api.runs("%s/%s" % (ENTITY, PROJECT), filters={"$and": [
        MINER_FILTERS, {"config.signature": {"$exists": False}}]})) == 1

    # A reader that verifies and keeps registered hotkeys: every miner once, its own specs; 2 skipped.
    specs, skipped = read_specs(runs, set(n.hotkey for n in wnet.neurons.values()))
    assert sorted(skipped) == sorted([forged.id, unsigned.id])
    assert set(specs) == set(wnet.neurons[uid].hotkey for uid in range(1, MINERS + 1))
    assert specs[wnet.neurons[1].hotkey]["gpu"]["details"][0]["name"] == "NVIDIA H100 80GB HBM3"
    # The same configs come with the one Runs query (lazy=False), and the read is logged.
    eager = wandb_api.runs("%s/%s" % (ENTITY, PROJECT), filters=MINER_FILTERS, lazy=False)
    assert dict((run.id, dict(run.config)) for run in eager) == dict((run.id, dict(run.config)) for run in runs)
    logged = [e for e in wnet.requests() if e.get("operation") == "Runs" and e.get("filters") == MINER_FILTERS]
    assert logged and set(logged[-1]["runs"]) == set(by_id) and logged[-1]["status"] == 200


# ---------------------------------------------------------------- miners that release themselves

def test_status_shows_the_last_read(wnet):
    document = wnet.status()
    assert document["wandb"]["running"] is True and document["wandb"]["sync_seconds"] == SYNC
    now = time.time()
    poor, forged = wnet.neurons[MINERS + 2].hotkey, wnet.neurons[MINERS + 3].hotkey
    for row in document["miners"]:
        report = row["wandb"]
        assert now - report["read_at"] < PERIOD_BOUND and report["read"] == "ok" and report["error"] is None
        assert (report["runs_seen"], report["runs_accepted"]) == (3, 1)
        reasons = dict((r["hotkey"], r["reasons"]) for r in report["rejected"])
        assert reasons[poor] == ["low stake"] and reasons[forged] == ["bad signature"]
        assert report["listed"] is (row["uid"] == MINERS)
        assert report["action"] in ("free", "kept", "released")


def test_unpublished_allocation_is_released_within_one_period(wnet):
    public_pem = wnet.allocate(2)
    allocated_at = time.monotonic()
    wait_for(lambda: not wnet.holds(2, public_pem), PERIOD_BOUND, "miner 2 releasing an allocation no one publishes")
    assert time.monotonic() - allocated_at <= SYNC + 3.0
    report = wnet.status()["miners"][1]["wandb"]
    assert report["listed"] is False and report["last_self_release"]["reason"].startswith("not in the allocated_hotkeys")
    assert wnet.query.check_available([wnet.neurons[2]], TIMEOUT)[0].status is True


def test_allocation_listed_by_a_staked_validator_is_kept(wnet, wandb_api):
    # Published before allocating, as a validator that publishes first would.
    publish(wandb_api, wnet.operator, "oper0001", [wnet.neurons[3].hotkey])
    wait_for(lambda: wnet.sync()["runs_seen"] == 4 and wnet.sync()["miners"]["3"]["listed"], PERIOD_BOUND * 2,
             "the miners seeing the operator's run")
    public_pem = wnet.allocate(3)
    document = wnet.reads_after(3)
    assert wnet.holds(3, public_pem)
    assert document["miners"]["3"] == dict(document["miners"]["3"], listed=True, action="kept")
    assert document["runs_accepted"] == 2
    # Unlisted (the run deleted): released within a period.
    wandb_api.run("%s/%s/oper0001" % (ENTITY, PROJECT)).delete()
    wait_for(lambda: not wnet.holds(3, public_pem), PERIOD_BOUND, "miner 3 releasing once no run lists it")


def test_runs_of_low_stake_or_forged_validators_are_ignored(wnet):
    poor_uid = MINERS + 2
    public_pem = wnet.allocate(1)
    wait_for(lambda: not wnet.holds(1, public_pem), PERIOD_BOUND,
             "miner 1 (listed only by the low-stake and the forged run) releasing")
    # The same low-stake run counts once its validator has the stake: the run itself is sound.
    set_stake(wnet, poor_uid, 2000.0)
    try:
        wait_for(lambda: wnet.sync()["miners"]["1"]["listed"], PERIOD_BOUND * 2, "the staked run listing miner 1")
        public_pem = wnet.allocate(1)
        document = wnet.reads_after(2)
        assert wnet.holds(1, public_pem) and document["miners"]["1"]["action"] == "kept"
        rejected = [r for r in document["runs"] if not r["accepted"]]
        assert [r["reasons"] for r in rejected] == [["bad signature"]]
    finally:
        set_stake(wnet, poor_uid, 500.0)
    wait_for(lambda: not wnet.holds(1, public_pem), PERIOD_BOUND * 2, "miner 1 releasing once the stake is gone")


def test_service_down_keeps_allocations_as_upstream(wnet):
    stopped = json.loads(localnet("wandb", "stop", "--json", "--state-dir", wnet.state_dir).stdout)
    try:
        assert stopped["running"] is False and wnet.status()["wandb"]["running"] is False
        wait_for(lambda: wnet.sync()["ok"] is False, PERIOD_BOUND * 2, "a failed W&B read")
        public_pem = wnet.allocate(2)
        document = wnet.reads_after(2)
        assert document["ok"] is False and document["error"]
        # Upstream's read raises, the miner logs it and keeps its allocation.
        assert wnet.holds(2, public_pem)
        report = dict((row["uid"], row) for row in wnet.status()["miners"])[2]["wandb"]
        assert (report["read"], report["action"], report["listed"]) == ("failed", "read failed", None)
    finally:
        started = json.loads(localnet("wandb", "start", "--json", "--state-dir", wnet.state_dir).stdout)
    assert started["running"] is True and started["runs"] >= 3
    # Back up: the next read finds it listed nowhere valid and releases it.
    wait_for(lambda: not wnet.holds(2, public_pem), PERIOD_BOUND * 2, "miner 2 releasing once W&B answers")
    assert wnet.sync()["ok"] is True


def test_down_stops_the_standin_and_the_sdk_service(wnet):
    record = json.load(open(os.path.join(wnet.state_dir, "localnet.json")))
    from localnet import procs

    every = procs.with_descendants([record["pids"]["supervisor"], record["pids"]["wandb"]])
    assert len(every) >= 3  # supervisor, its wandb-core, the stand-in
    localnet("down", "--state-dir", wnet.state_dir)
    assert [ident["pid"] for ident in every if procs.alive(ident)] == []
    assert not wandb_standin_listening(wnet)


def wandb_standin_listening(net):
    from localnet import probe

    return probe.tcp_open(net.layout.wandb_ip, net.layout.wandb_port, timeout=0.5)


def test_foreign_validators_option(tmp_path_factory):
    require_environment()
    state_dir = str(tmp_path_factory.mktemp("one"))
    localnet("up", "--state-dir", state_dir, "--miners", "2", "--foreign-validators", "1", "--sync-seconds", "0",
             "--build-seconds", "0", "--ip-prefix", ONE_IP, "--user-prefix", ONE_USERS)
    try:
        net = WandbNet(state_dir)
        assert sorted(net.neurons) == [0, 1, 2, 3] and net.neurons[3].stake == 20000.0
        # The honest validator's run, two miners' runs and the two decoys.
        document = seeded(net)
        assert len(wandb_standin.read_runs(net.layout)) == 1 + 2 + 2 and list(document["validators"]) == ["3"]
        assert (document["decoys"]["forged"]["uid"], document["decoys"]["unsigned"]["uid"]) == (1, 2)
        rows = dict((row["uid"], row) for row in net.status()["miners"])
        # Held from the start; with --sync-seconds 0 nobody reads W&B.
        assert rows[2]["allocated"] is True and rows[1]["allocated"] is False
        assert rows[1]["wandb"] is None and rows[2]["wandb"] is None
        public_pem = net.allocate(1)
        time.sleep(1.0)
        assert net.holds(1, public_pem)
    finally:
        localnet("down", "--state-dir", state_dir, check=False)
