"""localnet end to end: real axons, a real dendrite, real sshd logins, strict v1.8.3 miner semantics
(eviction, slow grants, key file, no ownership on docker actions), faults, expiry, down.

Needs root and OpenSSH (the harness installs openssh-server openssh-client sshpass).
"""

import base64
import json
import os
import shlex
import sqlite3
import stat
import subprocess
import sys
import threading
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402

_collection.ensure_importable()

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _metagraph, _network, _protocol  # noqa: E402
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import CryptoError  # noqa: E402
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import (  # noqa: E402
    DeviceRequirement)
from localnet import box, cli, harness, procs  # noqa: E402
from localnet.faults import Fault  # noqa: E402
from localnet.miner import Miner, key_fingerprint  # noqa: E402

TIMEOUT = 10.0
# Per test run addresses and users, so concurrent runs and a developer's localnet never collide.
RUN = os.getpid()
NET_IP, NET_USERS = "127.%d.%d" % (100 + RUN // 250 % 100, RUN % 250), "nt%x" % RUN
DAYS_IP, DAYS_USERS = "127.%d.%d" % (200 + RUN // 250 % 50, RUN % 250), "nd%x" % RUN
V190_IP, V190_USERS = "127.%d.%d" % (250 + RUN // 250 % 5, RUN % 250), "nv%x" % RUN
SUDO_IP, SUDO_USERS = "127.%d.%d" % (50 + RUN // 250 % 50, RUN % 250), "ns%x" % RUN
# The net fixture's build time: long enough to look at a miner while it builds.
BUILD = 2.0
# What the collection sends; register_allocation reads every key of it.
DEVICE = DeviceRequirement.from_options().to_wire()
SSH_OPTIONS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ConnectTimeout=5",
               "-o", "LogLevel=ERROR"]


def require_environment():  # a missing requirement is a failure, not a skip
    problem = harness.missing_requirements()
    if problem:
        pytest.fail(problem, pytrace=False)


# Run the real CLI, as a user would.
localnet = harness.run_cli


class Net:
    """A running localnet as the tests see it: its status, and a dendrite with the operator's hotkey."""

    def __init__(self, state_dir):
        self.state_dir = state_dir
        with open(os.path.join(state_dir, "env")) as handle:
            self.env = dict((key, shlex.split(value)[0]) for key, value in
                            (line.split("=", 1) for line in handle.read().splitlines()))
        self.query = _network.MinerQuery(_network.load_hotkey(self.env["NICOMPUTE_WALLET_NAME"],
                                                              self.env["NICOMPUTE_WALLET_HOTKEY"],
                                                              self.env["NICOMPUTE_WALLET_PATH"]))
        self.neurons = dict((n.uid, n) for n in _metagraph.read_snapshot(self.env["NICOMPUTE_METAGRAPH_FILE"])[0])

    def status(self):
        return json.loads(localnet("status", "--json", "--state-dir", self.state_dir).stdout)

    def miner(self, uid):
        return dict((row["uid"], row) for row in self.status()["miners"])[uid]

    def fault(self, uid, *mode):
        localnet("fault", str(uid), *mode, "--state-dir", self.state_dir)

    def record(self):
        with open(os.path.join(self.state_dir, "localnet.json")) as handle:
            return json.load(handle)


def start(tmp_path_factory, name, *options):
    require_environment()
    state_dir = str(tmp_path_factory.mktemp(name))
    # Without W&B self-release and foreign validators: these tests hold allocations published nowhere
    # (tests/localnet/test_wandb_standin.py covers both).
    localnet("up", "--state-dir", state_dir, "--no-foreign-validators", "--sync-seconds", "0", *options)
    return state_dir


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    state_dir = start(tmp_path_factory, "net", "--miners", "8", "--build-seconds", str(BUILD),
                      "--ip-prefix", NET_IP, "--user-prefix", NET_USERS)
    yield Net(state_dir)
    localnet("down", "--state-dir", state_dir, check=False)


@pytest.fixture(scope="module")
def short_days(tmp_path_factory):
    """A one-miner localnet whose day lasts 2 seconds, to watch an allocation expire."""
    state_dir = start(tmp_path_factory, "days", "--miners", "1", "--day-seconds", "2",
                      "--ip-prefix", DAYS_IP, "--user-prefix", DAYS_USERS)
    yield Net(state_dir)
    localnet("down", "--state-dir", state_dir, check=False)


@pytest.fixture(scope="module")
def v190(tmp_path_factory):
    """A one-miner localnet of v1.9.0 miners (docker actions check the key; unregistered callers get 403)."""
    state_dir = start(tmp_path_factory, "v190", "--miners", "1", "--miner-version", "190", "--build-seconds", "0",
                      "--ip-prefix", V190_IP, "--user-prefix", V190_USERS)
    yield Net(state_dir)
    localnet("down", "--state-dir", state_dir, check=False)


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory):
    """An ed25519 key pair as the client would send it: (private key file, public key line)."""
    return make_ssh_key(tmp_path_factory.mktemp("keys"), "client")


def make_ssh_key(directory, name):
    path = os.path.join(str(directory), name)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", path], check=True)
    with open(path + ".pub") as handle:
        return path, handle.read().strip()


def ssh_with_key(host, port, user, key_file):
    return subprocess.run(["ssh"] + SSH_OPTIONS + [
        "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey",
        "-i", key_file, "-p", str(port), "%s@%s" % (user, host), "id -un"],
        capture_output=True, text=True, timeout=30, check=False)


def ssh_with_password(host, port, user, password):
    return subprocess.run(["sshpass", "-p", password, "ssh"] + SSH_OPTIONS + [
        "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
        "-o", "NumberOfPasswordPrompts=1", "-p", str(port), "%s@%s" % (user, host), "id -un"],
        capture_output=True, text=True, timeout=30, check=False)


def allocate(net, uid, ssh_public_key, timeline=1, timeout=TIMEOUT, device_requirement=None, **docker):
    private_pem, public_pem = _crypto.generate_key_pair()
    reply = net.query.allocate(net.neurons[uid], DEVICE if device_requirement is None else device_requirement,
                               timeline, public_pem, _protocol.docker_requirement(ssh_key=ssh_public_key, **docker),
                               timeout)
    return private_pem, public_pem, reply


class Background:
    """An allocation sent from another thread (its own dendrite), to look at the miner meanwhile."""

    def __init__(self, net, uid, ssh_public_key, **docker):
        self.private_pem, self.public_pem = _crypto.generate_key_pair()
        self.started = time.monotonic()
        self.reply = None
        query = _network.MinerQuery(net.query.keypair)
        fields = (net.neurons[uid], DEVICE, 1, self.public_pem, _protocol.docker_requirement(ssh_key=ssh_public_key,
                                                                                             **docker), TIMEOUT)
        self.thread = threading.Thread(target=self._run, args=(query, fields))
        self.thread.start()

    def _run(self, query, fields):
        self.reply = query.allocate(*fields)
        self.elapsed = time.monotonic() - self.started

    def wait(self):
        self.thread.join(TIMEOUT + 5)
        return self.reply


def wait_until(predicate, seconds=TIMEOUT):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def raw_credentials(private_pem, info):
    """The decrypted credentials JSON as the miner wrote it (no checks of the collection's)."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding

    key = serialization.load_pem_private_key(private_pem.encode("ascii") if isinstance(private_pem, str)
                                             else private_pem, password=None)
    oaep = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)
    return json.loads(key.decrypt(base64.b64decode(info), oaep))


def password_of(private_pem, reply):
    return _crypto.decrypt_credentials(private_pem, reply.output["info"])["password"]


def logins(net, uid, key_file, password):
    ip, user = net.neurons[uid].ip, net.miner(uid)["ssh_user"]
    return ssh_with_key(ip, 4444, user, key_file), ssh_with_password(ip, 4444, user, password)


# ---------------------------------------------------------------- network state

def test_refuses_when_not_root(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert cli.main(["up", "--state-dir", str(tmp_path)]) == 1
    assert "must run as root" in capsys.readouterr().err
    assert not os.listdir(str(tmp_path))


def test_env_file_points_at_the_network(net):
    env_file = os.path.join(net.state_dir, "env")
    assert stat.S_IMODE(os.stat(env_file).st_mode) == 0o600
    sourced = subprocess.run(["bash", "-c", 'set -a; . "$1"; env', "-", env_file],
                             capture_output=True, text=True, check=True).stdout.splitlines()
    env = dict(line.split("=", 1) for line in sourced if line.startswith("NICOMPUTE_"))
    assert env["NICOMPUTE_NETWORK"] == "local" and env["NICOMPUTE_NETUID"] == "27"
    assert env["NICOMPUTE_WANDB_MODE"] == "online"
    assert env["NICOMPUTE_WANDB_BASE_URL"] == "http://%s.2:8080" % NET_IP and len(env["NICOMPUTE_WANDB_API_KEY"]) == 40
    assert env["NICOMPUTE_LOCALNET_STATE_DIR"] == net.state_dir
    for key in ("NICOMPUTE_WALLET_PATH", "NICOMPUTE_METAGRAPH_FILE", "NICOMPUTE_DB_PATH"):
        assert os.path.isabs(env[key]) and env[key].startswith(net.state_dir) and os.path.exists(env[key])
    hotkey_file = os.path.join(env["NICOMPUTE_WALLET_PATH"], env["NICOMPUTE_WALLET_NAME"], "hotkeys",
                               env["NICOMPUTE_WALLET_HOTKEY"])
    assert stat.S_IMODE(os.stat(hotkey_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(env["NICOMPUTE_DB_PATH"]).st_mode) == 0o600


def test_metagraph_has_a_validator_and_the_miners(net):
    validator = net.neurons[0]
    assert validator.stake >= 1e4 and validator.validator_permit and not validator.serving
    assert sorted(net.neurons) == list(range(9))
    assert len(set(n.hotkey for n in net.neurons.values())) == 9
    assert [net.neurons[uid].ip for uid in range(1, 9)] == ["%s.%d" % (NET_IP, 10 + uid) for uid in range(1, 9)]


def test_validator_database_has_realistic_specs(net):
    connection = sqlite3.connect(net.env["NICOMPUTE_DB_PATH"])
    details = dict(connection.execute("SELECT hotkey, details FROM miner_details").fetchall())
    assert len(details) == 8
    parsed, malformed = {}, []
    for hotkey, text in details.items():
        try:
            parsed[hotkey] = json.loads(text)
        except ValueError:
            malformed.append(hotkey)
    assert len(malformed) == 1
    h100 = parsed[net.neurons[1].hotkey]["gpu"]
    assert h100["count"] == 8 and h100["details"][0] == {"name": "NVIDIA H100 80GB HBM3", "capacity": 81559.0}
    assert h100["capacity"] == 8 * 81559.0
    assert parsed[net.neurons[5].hotkey]["gpu"]["count"] == 0
    scores = [row[0] for row in connection.execute("SELECT score FROM stats")]
    assert len(scores) == 8 and len(set(scores)) == 8


def test_status_lists_every_miner(net):
    document = net.status()
    assert document["running"] is True
    assert (document["build_seconds"], document["miner_version"]) == (BUILD, 183)
    rows = document["miners"]
    assert [row["uid"] for row in rows] == list(range(1, 9))
    for row in rows:
        assert row["hotkey"] == net.neurons[row["uid"]].hotkey
        assert (row["axon_port"], row["ssh_port"], row["fault"], row["allocated"]) == (8091, 4444, "healthy", False)
        assert (row["building"], row["paused"], row["key_fingerprint"]) == (False, False, None)
        assert row["ssh_user"] == NET_USERS + str(row["uid"])
    assert rows[0]["gpu"] == "8x NVIDIA H100 80GB HBM3" and rows[4]["gpu"] == "cpu only"


def test_up_defaults_are_strict_v183_miners(short_days):
    document = short_days.status()
    assert (document["build_seconds"], document["miner_version"]) == (1.0, 183)


# ---------------------------------------------------------------- protocol

def test_every_miner_answers_a_real_dendrite(net):
    replies = net.query.check_available([net.neurons[uid] for uid in range(1, 9)], TIMEOUT)
    assert [(r.status_code, r.status, r.output["port"]) for r in replies] == [(200, True, 4444)] * 8


def test_unregistered_caller_fails_in_the_priority_function(net, tmp_path):
    # v1.8.3 lets every caller past its (inverted) whitelist; looking up an unregistered
    # hotkey's stake then raises, and the axon answers 500.
    bt = _network.bittensor()
    stranger = bt.Wallet(name="stranger", hotkey="default", path=str(tmp_path))
    stranger.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    reply = _network.MinerQuery(stranger.hotkey).check_available([net.neurons[1]], TIMEOUT)[0]
    assert not reply.answered and reply.status_code == 500


def test_any_registered_hotkey_is_served_whatever_its_stake(net):
    # Miner 2's hotkey has a stake of 102, far below any validator permit.
    assert net.neurons[2].stake < 1.024e3
    low_stake = _network.load_hotkey("miner2", "default", net.env["NICOMPUTE_WALLET_PATH"])
    reply = _network.MinerQuery(low_stake).check_available([net.neurons[1]], TIMEOUT)[0]
    assert (reply.status_code, reply.status) == (200, True)


def test_allocate_login_and_deallocate(net, ssh_key, tmp_path):
    key_file, public_line = ssh_key
    private_pem, public_pem, reply = allocate(net, 1, public_line)
    assert reply.status is True and reply.output["port"] == 4444
    assert reply.elapsed >= BUILD
    credentials = _crypto.decrypt_credentials(private_pem, reply.output["info"])
    assert credentials["username"] == NET_USERS + "1" and credentials["port"] == 4444 and credentials["version"] == 183
    assert len(credentials["password"]) == 10 and credentials["password"].isalnum()
    row = net.miner(1)
    assert (row["allocated"], row["building"], row["key_fingerprint"]) == (True, False, key_fingerprint(public_pem))

    by_key, by_password = logins(net, 1, key_file, credentials["password"])
    assert (by_key.returncode, by_key.stdout.strip()) == (0, NET_USERS + "1"), by_key.stderr
    assert (by_password.returncode, by_password.stdout.strip()) == (0, NET_USERS + "1"), by_password.stderr

    _other_private, other_public = _crypto.generate_key_pair()
    assert net.query.still_allocated(net.neurons[1], public_pem, TIMEOUT).status is True
    assert net.query.still_allocated(net.neurons[1], other_public, TIMEOUT).status is False
    assert net.query.check_available([net.neurons[1]], TIMEOUT)[0].status is False

    assert net.query.deallocate(net.neurons[1], other_public, TIMEOUT).status is False
    assert net.query.still_allocated(net.neurons[1], public_pem, TIMEOUT).status is True
    assert net.query.deallocate(net.neurons[1], public_pem, TIMEOUT).status is True
    assert net.query.check_available([net.neurons[1]], TIMEOUT)[0].status is True
    assert net.miner(1)["allocated"] is False and net.miner(1)["key_fingerprint"] is None
    # The key file is empty now: a second release is refused.
    assert net.query.deallocate(net.neurons[1], public_pem, TIMEOUT).status is False

    by_key, by_password = logins(net, 1, key_file, credentials["password"])
    assert by_key.returncode == 255 and by_password.returncode != 0
    assert "Permission denied" in by_key.stderr


def test_allocate_on_a_busy_miner_evicts_and_grants_slowly(net, ssh_key, tmp_path):
    key_file, public_line = ssh_key
    other_key_file, other_line = make_ssh_key(tmp_path, "evictor")
    neuron = net.neurons[1]
    first_private, first_public, first = allocate(net, 1, public_line)
    first_password = password_of(first_private, first)
    assert logins(net, 1, key_file, first_password)[1].returncode == 0

    # No availability check on the miner's side: a second allocation kills the first at once.
    evictor = Background(net, 1, other_line)
    assert wait_until(lambda: net.miner(1)["building"], BUILD)
    row = net.miner(1)
    # While it builds: the old container is gone, the key file still holds the old key.
    assert row["allocated"] is False
    assert (row["key_fingerprint"], row["building_key_fingerprint"]) == (key_fingerprint(first_public),
                                                                         key_fingerprint(evictor.public_pem))
    by_key, by_password = logins(net, 1, key_file, first_password)
    assert by_key.returncode != 0 and by_password.returncode != 0
    assert net.query.still_allocated(neuron, first_public, TIMEOUT).status is False
    # The new key is stored only at the end of the build: not held yet, not releasable yet.
    assert net.query.still_allocated(neuron, evictor.public_pem, TIMEOUT).status is False
    assert net.query.deallocate(neuron, evictor.public_pem, TIMEOUT).status is False
    # No container runs yet: the miner reads as free.
    assert net.query.check_available([neuron], TIMEOUT)[0].status is True
    # One allocation at a time: another one during the build is refused, untouched.
    _p, _q, during = allocate(net, 1, other_line)
    assert during.answered and during.status is False and during.elapsed < BUILD
    assert net.miner(1)["building"] is True

    reply = evictor.wait()
    assert reply.status is True and evictor.elapsed >= BUILD
    assert net.miner(1)["key_fingerprint"] == key_fingerprint(evictor.public_pem)
    assert net.query.still_allocated(neuron, evictor.public_pem, TIMEOUT).status is True
    # The release sent during the build did not count, and the evicted key can no longer release.
    assert net.query.still_allocated(neuron, first_public, TIMEOUT).status is False
    assert net.query.deallocate(neuron, first_public, TIMEOUT).status is False
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "1", other_key_file).returncode == 0
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "1", key_file).returncode != 0
    assert net.query.deallocate(neuron, evictor.public_pem, TIMEOUT).status is True


def test_builds_do_not_block_other_miners(net, ssh_key):
    # More builds at once than the supervisor has box threads (4).
    uids = [2, 5, 6, 7, 8]
    builds = [Background(net, uid, ssh_key[1]) for uid in uids]
    assert wait_until(lambda: all(net.miner(uid)["building"] for uid in uids), BUILD)
    quick = net.query.check_available([net.neurons[3]], TIMEOUT)[0]
    assert quick.status is True and quick.elapsed < BUILD / 2
    replies = [build.wait() for build in builds]
    assert [reply.status for reply in replies] == [True] * len(uids)
    # Side by side, not one after the other.
    assert max(build.elapsed for build in builds) < 2 * BUILD
    for uid, build in zip(uids, builds):
        assert net.query.deallocate(net.neurons[uid], build.public_pem, TIMEOUT).status is True


def test_a_device_requirement_the_miner_cannot_read_fails_after_the_kill(net, ssh_key):
    key_file, public_line = ssh_key
    neuron = net.neurons[1]
    private_pem, public_pem, reply = allocate(net, 1, public_line)
    password = password_of(private_pem, reply)
    # register_allocation reads cpu.count, ram.capacity, hard_disk.capacity and gpu.
    _p, _q, failed = allocate(net, 1, public_line, device_requirement={"cpu": {"count": 1}})
    assert failed.answered and failed.status is False and "info" not in failed.output
    # ... after it killed the current container.
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is False
    assert net.query.check_available([neuron], TIMEOUT)[0].status is True
    assert logins(net, 1, key_file, password)[1].returncode != 0
    # The key file still holds the old key: its release answers True (and kills nothing).
    assert net.miner(1)["key_fingerprint"] == key_fingerprint(public_pem)
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is True
    assert net.miner(1)["key_fingerprint"] is None


def test_container_options_as_upstream_reads_them(net, ssh_key):
    key_file, public_line = ssh_key
    neuron = net.neurons[1]
    allocation_file = os.path.join(net.state_dir, "miners", "1", "allocation.json")
    # base_image is ignored; dockerfile becomes one RUN line (recorded, not run).
    private_pem, public_pem, reply = allocate(net, 1, public_line, base_image="no-such/image:ever",
                                              dockerfile="pip install numpy")
    assert reply.status is True
    with open(allocation_file) as handle:
        dockerfile = json.load(handle)["dockerfile"]
    assert dockerfile.startswith("FROM ssh-image-base:latest\n") and "\nRUN pip install numpy\n" in dockerfile
    assert "no-such/image" not in dockerfile and "echo '%s'" % public_line in dockerfile
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "1", key_file).returncode == 0

    # The key is written with echo '<key>': a newline (even a trailing one, as in a .pub file)
    # or a lone single quote breaks the build, after the kill.
    for broken in (public_line + "\n", "ssh-ed25519 it's-broken"):
        _p, _q, failed = allocate(net, 1, broken)
        assert failed.answered and failed.status is False and "info" not in failed.output
        assert failed.elapsed >= BUILD
        with open(allocation_file) as handle:
            state = json.load(handle)
        assert state["allocated"] is False and state["last_build_error"]
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is False
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "1", key_file).returncode != 0
    # The failed builds stored no key: the first key still releases.
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is True


def test_docker_actions_check_no_ownership(net, ssh_key, tmp_path):
    key_file, public_line = ssh_key
    new_key_file, new_public_line = make_ssh_key(tmp_path, "exchanged")
    private_pem, public_pem, reply = allocate(net, 2, public_line)
    password = password_of(private_pem, reply)
    neuron = net.neurons[2]
    # Not the allocation's key: v1.8.3 acts all the same.
    _other_private, stranger = _crypto.generate_key_pair()

    paused = net.query.docker_action(neuron, stranger, "pause", TIMEOUT)
    assert paused.status is True and paused.output["port"] == 4444
    by_key, by_password = logins(net, 2, key_file, password)
    assert by_key.returncode != 0 and by_password.returncode != 0
    assert net.miner(2)["paused"] is True
    # A paused container is not running: the miner reads as free and not held.
    assert net.query.check_available([neuron], TIMEOUT)[0].status is True
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is False
    assert net.query.docker_action(neuron, stranger, "pause", TIMEOUT).status is False  # already paused
    # Docker does not remove a paused container: even the allocation's own key cannot release it.
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is False
    assert net.miner(2)["allocated"] is True

    assert net.query.docker_action(neuron, stranger, "resume", TIMEOUT).status is True
    assert net.query.docker_action(neuron, stranger, "unpause", TIMEOUT).status is False  # not paused
    by_key, by_password = logins(net, 2, key_file, password)
    assert by_key.returncode == 0 and by_password.returncode == 0, by_key.stderr + by_password.stderr
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is True

    assert net.query.docker_action(neuron, stranger, "exchange_key", TIMEOUT, new_public_line, "user").status
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "2", key_file).returncode != 0
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "2", new_key_file).returncode == 0
    assert net.query.docker_action(neuron, stranger, "restart", TIMEOUT).status is True

    unknown = _protocol.docker_action_request(public_pem, "pause")
    unknown["docker_action"]["action"] = "explode"
    answer = net.query.send([(neuron, unknown)], TIMEOUT)[0]
    assert answer.answered and "status" not in answer.output and answer.output["port"] == 4444

    # The release still needs the key.
    assert net.query.deallocate(neuron, stranger, TIMEOUT).status is False
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is True
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "2", new_key_file).returncode != 0
    # No container: every action fails.
    assert net.query.docker_action(neuron, public_pem, "restart", TIMEOUT).status is False


def test_v190_docker_actions_need_the_key(v190, ssh_key):
    neuron = v190.neurons[1]
    private_pem, public_pem, reply = allocate(v190, 1, ssh_key[1])
    assert _crypto.decrypt_credentials(private_pem, reply.output["info"])["version"] == 190
    _other_private, stranger = _crypto.generate_key_pair()
    assert v190.query.docker_action(neuron, stranger, "restart", TIMEOUT).status is False
    # v1.9.0 answers a refused pause with a misspelt "status:" key: no status at all.
    refused = v190.query.docker_action(neuron, stranger, "pause", TIMEOUT)
    assert refused.answered and refused.status is None and refused.output.get("status:") is False
    assert v190.miner(1)["paused"] is False
    assert v190.query.docker_action(neuron, public_pem, "pause", TIMEOUT).status is True
    assert v190.query.docker_action(neuron, public_pem, "unpause", TIMEOUT).status is True
    # v1.9.0 blacklists low-stake callers (403) instead of serving them.
    low_stake = _network.load_hotkey("miner1", "default", v190.env["NICOMPUTE_WALLET_PATH"])
    assert _network.MinerQuery(low_stake).check_available([neuron], TIMEOUT)[0].status_code == 403
    assert v190.query.deallocate(neuron, public_pem, TIMEOUT).status is True


class MemoryBox:
    user, port = "box", 4444

    def __init__(self):
        self.password, self.keys = None, []

    def grant(self, password, keys):
        self.password, self.keys = password, list(keys)

    def set_keys(self, keys):
        self.keys = list(keys)

    def revoke(self):
        self.password, self.keys = None, []

    def pause(self):
        self.keys = []

    def resume(self, keys):
        self.keys = list(keys)

    def restart(self):
        pass


def test_self_release_then_a_late_release_is_refused(tmp_path):
    # The trigger (a validator's W&B allocated_hotkeys) lives elsewhere; the miner side is this.
    fault = [Fault()]
    miner = Miner(1, MemoryBox(), 86400.0, str(tmp_path / "allocation.json"), fault_source=lambda: fault[0])
    private_pem, public_pem = _crypto.generate_key_pair()
    request = dict(_protocol.allocate_request(DEVICE, 1, public_pem, _protocol.docker_requirement(ssh_key="k")))
    assert miner.handle(request, Fault())["status"] is True
    status = _protocol.status_request(public_pem)
    assert miner.handle(status, Fault())["status"] is True

    fault[0] = Fault("release-fails")
    assert miner.self_release("not in any validator's allocated_hotkeys") is False
    assert miner.handle(status, Fault())["status"] is True
    fault[0] = Fault()
    assert miner.self_release("not in any validator's allocated_hotkeys") is True
    assert miner.box.password is None and miner.allocation is None
    assert miner.handle(status, Fault())["status"] is False
    assert miner.handle(_protocol.deallocate_request(public_pem), Fault())["status"] is False
    with open(str(tmp_path / "allocation.json")) as handle:
        state = json.load(handle)
    assert state["last_release"]["by"] == "self" and state["key_fingerprint"] is None
    assert miner.self_release("again") is False


# ---------------------------------------------------------------- faults

def test_fault_cli_lists_every_mode(net):
    text = " ".join(localnet("fault", "--help").stdout.split())
    for mode in ("healthy", "unresponsive", "slow", "late", "refuse", "garbage", "offline",
                 "refuse-busy", "old", "paused", "release-fails"):
        assert " %s: " % mode in text, mode


def test_fault_unresponsive_times_out(net):
    net.fault(3, "unresponsive")
    assert net.miner(3)["fault"] == "unresponsive"
    reply = net.query.check_available([net.neurons[3]], 1.5)[0]
    assert not reply.answered and reply.elapsed >= 1.4 and reply.status_code == 408
    net.fault(3, "healthy")
    assert net.query.check_available([net.neurons[3]], TIMEOUT)[0].status is True


def test_fault_slow_answers_late(net):
    net.fault(4, "slow", "2")
    reply = net.query.check_available([net.neurons[4]], TIMEOUT)[0]
    assert reply.status is True and reply.elapsed >= 2.0
    net.fault(4, "healthy")
    assert net.query.check_available([net.neurons[4]], TIMEOUT)[0].elapsed < 2.0


def test_fault_late_grants_then_answers_after_the_timeout(net, ssh_key):
    net.fault(4, "late", "3")
    _private, public_pem, reply = allocate(net, 4, ssh_key[1], timeout=1.0)
    # The client heard nothing, yet the miner grants (once its build is done) for the client's key.
    assert not reply.answered and reply.status_code == 408
    assert wait_until(lambda: net.miner(4)["allocated"], BUILD + 2)
    # Only the allocate answer is late: the status check and the release answer at once.
    assert net.query.still_allocated(net.neurons[4], public_pem, TIMEOUT).status is True
    assert net.query.deallocate(net.neurons[4], public_pem, TIMEOUT).status is True
    net.fault(4, "healthy")


def test_fault_refuse_says_available_then_refuses(net, ssh_key):
    net.fault(5, "refuse")
    assert net.query.check_available([net.neurons[5]], TIMEOUT)[0].status is True
    _private, public_pem, reply = allocate(net, 5, ssh_key[1])
    assert reply.answered and reply.status is False and "info" not in reply.output
    assert net.query.still_allocated(net.neurons[5], public_pem, TIMEOUT).status is False
    net.fault(5, "healthy")


def test_fault_refuse_busy_keeps_the_current_allocation(net, ssh_key):
    key_file, public_line = ssh_key
    private_pem, public_pem, reply = allocate(net, 5, public_line)
    net.fault(5, "refuse-busy")
    _p, _q, second = allocate(net, 5, public_line)
    assert second.answered and second.status is False and second.elapsed < BUILD
    assert net.query.still_allocated(net.neurons[5], public_pem, TIMEOUT).status is True
    assert logins(net, 5, key_file, password_of(private_pem, reply))[1].returncode == 0
    net.fault(5, "healthy")
    assert net.query.deallocate(net.neurons[5], public_pem, TIMEOUT).status is True


def test_fault_garbage_credentials_do_not_decrypt(net, ssh_key):
    net.fault(6, "garbage")
    messages = []
    for _attempt in range(2):
        private_pem, public_pem, reply = allocate(net, 6, ssh_key[1])
        assert reply.status is True
        with pytest.raises(CryptoError) as caught:
            _crypto.decrypt_credentials(private_pem, reply.output["info"])
        messages.append(caught.value.message)
        # The miner did allocate: the client must release it with its key.
        assert net.query.deallocate(net.neurons[6], public_pem, TIMEOUT).status is True
    assert "base64" in messages[0] and "do not decrypt" in messages[1]
    net.fault(6, "healthy")


def test_fault_old_miner_sends_no_version(net, ssh_key):
    net.fault(7, "old")
    private_pem, public_pem, reply = allocate(net, 7, ssh_key[1])
    assert reply.status is True
    assert sorted(raw_credentials(private_pem, reply.output["info"])) == ["password", "port", "username"]
    net.fault(7, "healthy")
    assert net.query.deallocate(net.neurons[7], public_pem, TIMEOUT).status is True


def test_fault_paused_reads_as_not_held_while_the_box_works(net, ssh_key):
    key_file, public_line = ssh_key
    neuron = net.neurons[8]
    private_pem, public_pem, reply = allocate(net, 8, public_line)
    net.fault(8, "paused")
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is False
    assert net.query.check_available([neuron], TIMEOUT)[0].status is True
    row = net.miner(8)
    assert (row["fault"], row["allocated"], row["paused"]) == ("paused", True, True)
    by_key, by_password = logins(net, 8, key_file, password_of(private_pem, reply))
    assert by_key.returncode == 0 and by_password.returncode == 0, by_key.stderr + by_password.stderr
    net.fault(8, "healthy")
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is True
    assert net.query.check_available([neuron], TIMEOUT)[0].status is False
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is True


def test_fault_release_fails_keeps_the_allocation(net, ssh_key):
    key_file, public_line = ssh_key
    neuron = net.neurons[8]
    private_pem, public_pem, reply = allocate(net, 8, public_line)
    net.fault(8, "release-fails")
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is False
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is True
    # The kill before a new allocation fails too: the old container keeps its name, the build fails.
    _p, _q, second = allocate(net, 8, public_line)
    assert second.answered and second.status is False and second.elapsed >= BUILD
    assert net.query.still_allocated(neuron, public_pem, TIMEOUT).status is True
    assert logins(net, 8, key_file, password_of(private_pem, reply))[0].returncode == 0
    net.fault(8, "healthy")
    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is True
    assert net.miner(8)["allocated"] is False


def test_fault_offline_then_healthy(net):
    net.fault(7, "offline")
    reply = net.query.check_available([net.neurons[7]], 3)[0]
    assert not reply.answered and reply.status_code == 503
    assert net.miner(7)["fault"] == "offline"
    net.fault(7, "healthy")
    assert net.query.check_available([net.neurons[7]], TIMEOUT)[0].status is True


def test_fault_rejects_unknown_miner(net):
    result = localnet("fault", "99", "offline", "--state-dir", net.state_dir, check=False)
    assert result.returncode == 1 and "no miner '99'" in result.stderr


# ---------------------------------------------------------------- expiry

def test_allocation_expires_after_its_timeline(short_days, ssh_key):
    key_file, public_line = ssh_key
    neuron = short_days.neurons[1]
    private_pem, public_pem, reply = allocate(short_days, 1, public_line)
    assert reply.status is True
    assert ssh_with_key(neuron.ip, 4444, DAYS_USERS + "1", key_file).returncode == 0
    deadline = time.monotonic() + 10
    while short_days.query.still_allocated(neuron, public_pem, TIMEOUT).status and time.monotonic() < deadline:
        time.sleep(0.25)
    assert short_days.query.still_allocated(neuron, public_pem, TIMEOUT).status is False
    assert short_days.query.check_available([neuron], TIMEOUT)[0].status is True
    password = _crypto.decrypt_credentials(private_pem, reply.output["info"])["password"]
    assert ssh_with_key(neuron.ip, 4444, DAYS_USERS + "1", key_file).returncode != 0
    assert ssh_with_password(neuron.ip, 4444, DAYS_USERS + "1", password).returncode != 0
    # The scheduled kill leaves the key file: the key still "releases" (nothing left to kill).
    assert short_days.miner(1)["key_fingerprint"] == key_fingerprint(public_pem)
    assert short_days.query.deallocate(neuron, public_pem, TIMEOUT).status is True


# ---------------------------------------------------------------- sudo

def sudo_as(user, *command):
    """`sudo -n COMMAND` run by user (never prompting), as a login of that user would."""
    return subprocess.run(["runuser", "-u", user, "--", "sudo", "-n"] + list(command),
                          capture_output=True, text=True, timeout=30, check=False)


def test_box_users_get_passwordless_sudo_for_themselves_only_until_down(tmp_path_factory):
    # A box user stands for the container's root: become must work for it, and for nobody else.
    state_dir = start(tmp_path_factory, "sudo", "--miners", "2", "--build-seconds", "0",
                      "--ip-prefix", SUDO_IP, "--user-prefix", SUDO_USERS)
    users = [SUDO_USERS + "1", SUDO_USERS + "2"]
    rules = [box.sudoers_file(user) for user in users]
    try:
        for user, rule in zip(users, rules):
            assert rule == "/etc/sudoers.d/nicompute-localnet-%s" % user
            info = os.stat(rule)
            assert (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid) == (0o440, 0, 0)
            with open(rule) as handle:
                grants = [line for line in handle.read().splitlines() if line.strip() and not line.startswith("#")]
            assert grants == ["%s ALL=(ALL:ALL) NOPASSWD: ALL" % user]
            assert subprocess.run(["visudo", "-c", "-q", "-f", rule], check=False).returncode == 0
            result = sudo_as(user, "id", "-u")
            assert (result.returncode, result.stdout.strip()) == (0, "0"), result.stderr
        # Without its own rule, the second box user cannot use the first one's.
        box.revoke_sudo(users[1])
        result = sudo_as(users[1], "true")
        assert result.returncode != 0 and "password is required" in result.stderr
        assert sudo_as(users[0], "true").returncode == 0
        # Nor can a user that is no box user.
        result = sudo_as("nobody", "true")
        assert result.returncode != 0 and "password is required" in result.stderr
    finally:
        localnet("down", "--state-dir", state_dir, check=False)
    assert [rule for rule in rules if os.path.exists(rule)] == []
    assert not [name for name in os.listdir(box.SUDOERS_DIR) if SUDO_USERS in name]


# ---------------------------------------------------------------- down

def _passwd_users():
    with open("/etc/passwd") as handle:
        return set(line.split(":", 1)[0] for line in handle)


@pytest.mark.parametrize("fixture, users", [("short_days", [DAYS_USERS + "1"]),
                                            ("net", [NET_USERS + str(uid) for uid in range(1, 9)])])
def test_down_leaves_no_process_and_no_user(request, fixture, users):
    running = request.getfixturevalue(fixture)
    record = running.record()
    # Leave an unresponsive request pending: down must not wait for it.
    if fixture == "net":
        running.fault(3, "unresponsive")
    idents = [record["pids"]["supervisor"], record["pids"]["wandb"]] + list(record["pids"]["sshd"].values())
    every = procs.with_descendants(idents)
    assert all(procs.alive(ident) for ident in idents) and set(users) <= _passwd_users()
    started = time.monotonic()
    localnet("down", "--state-dir", running.state_dir)
    assert time.monotonic() - started < 10
    assert [ident["pid"] for ident in every if procs.alive(ident)] == []
    assert not set(users) & _passwd_users()
    assert not os.path.exists(os.path.join(running.state_dir, "localnet.json"))
    assert _network.MinerQuery(running.query.keypair).check_available(
        [running.neurons[1]], 2)[0].status_code == 503
