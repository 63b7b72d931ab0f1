"""localnet end to end: real axons, a real dendrite, real sshd logins, faults, expiry, down.

Needs root and OpenSSH (the harness installs openssh-server openssh-client sshpass).
"""

import json
import os
import shlex
import shutil
import sqlite3
import stat
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402

_collection.ensure_importable()

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _network, _protocol  # noqa: E402
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import CryptoError  # noqa: E402
from localnet import cli, procs  # noqa: E402

TIMEOUT = 10.0
# Per test run addresses and users, so concurrent runs and a developer's localnet never collide.
RUN = os.getpid()
NET_IP, NET_USERS = "127.%d.%d" % (100 + RUN // 250 % 100, RUN % 250), "nt%x" % RUN
DAYS_IP, DAYS_USERS = "127.%d.%d" % (200 + RUN // 250 % 50, RUN % 250), "nd%x" % RUN
# What the harness installs (openssh-server openssh-client sshpass); a missing one is a failure, not a skip.
NEEDED = ("/usr/sbin/sshd", "ssh", "ssh-keygen", "sshpass")
SSH_OPTIONS = ["-F", "/dev/null", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "ConnectTimeout=5",
               "-o", "LogLevel=ERROR"]


def require_environment():
    missing = [name for name in NEEDED if not shutil.which(name)]
    if missing:
        pytest.fail("localnet tests need %s: apt-get install -y openssh-server openssh-client sshpass"
                    % ", ".join(missing), pytrace=False)
    if os.geteuid() != 0:
        pytest.fail("localnet tests must run as root (they start sshd and create users)", pytrace=False)


def localnet(*args, check=True):
    """Run the real CLI, as a user would."""
    result = subprocess.run([sys.executable, "-m", "localnet"] + list(args), cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError("localnet %s failed (%d):\n%s\n%s" % (" ".join(args), result.returncode,
                                                                   result.stdout, result.stderr))
    return result


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
        self.neurons = dict((n.uid, n) for n in _network.read_snapshot(self.env["NICOMPUTE_METAGRAPH_FILE"])[0])

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
    localnet("up", "--state-dir", state_dir, *options)
    return state_dir


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    state_dir = start(tmp_path_factory, "net", "--miners", "8", "--ip-prefix", NET_IP, "--user-prefix", NET_USERS)
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


def allocate(net, uid, ssh_public_key, timeline=1, timeout=TIMEOUT):
    private_pem, public_pem = _crypto.generate_key_pair()
    reply = net.query.allocate(net.neurons[uid], {}, timeline, public_pem,
                               _protocol.docker_requirement(ssh_key=ssh_public_key), timeout)
    return private_pem, public_pem, reply


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
    assert env["NICOMPUTE_WANDB_MODE"] == "disabled"
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
    rows = document["miners"]
    assert [row["uid"] for row in rows] == list(range(1, 9))
    for row in rows:
        assert row["hotkey"] == net.neurons[row["uid"]].hotkey
        assert (row["axon_port"], row["ssh_port"], row["fault"], row["allocated"]) == (8091, 4444, "healthy", False)
        assert row["ssh_user"] == NET_USERS + str(row["uid"])
    assert rows[0]["gpu"] == "8x NVIDIA H100 80GB HBM3" and rows[4]["gpu"] == "cpu only"


# ---------------------------------------------------------------- protocol

def test_every_miner_answers_a_real_dendrite(net):
    replies = net.query.check_available([net.neurons[uid] for uid in range(1, 9)], TIMEOUT)
    assert [(r.status_code, r.status, r.output["port"]) for r in replies] == [(200, True, 4444)] * 8


def test_unregistered_caller_is_refused(net, tmp_path):
    bt = _network.bittensor()
    stranger = bt.Wallet(name="stranger", hotkey="default", path=str(tmp_path))
    stranger.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    reply = _network.MinerQuery(stranger.hotkey).check_available([net.neurons[1]], TIMEOUT)[0]
    assert not reply.answered and reply.status_code != 200


def test_allocate_login_and_deallocate(net, ssh_key, tmp_path):
    key_file, public_line = ssh_key
    private_pem, public_pem, reply = allocate(net, 1, public_line)
    assert reply.status is True and reply.output["port"] == 4444
    credentials = _crypto.decrypt_credentials(private_pem, reply.output["info"])
    assert credentials["username"] == NET_USERS + "1" and credentials["port"] == 4444 and credentials["version"] == 183
    assert len(credentials["password"]) == 10 and credentials["password"].isalnum()
    assert net.miner(1)["allocated"] is True

    by_key, by_password = logins(net, 1, key_file, credentials["password"])
    assert (by_key.returncode, by_key.stdout.strip()) == (0, NET_USERS + "1"), by_key.stderr
    assert (by_password.returncode, by_password.stdout.strip()) == (0, NET_USERS + "1"), by_password.stderr

    _other_private, other_public = _crypto.generate_key_pair()
    assert net.query.still_allocated(net.neurons[1], public_pem, TIMEOUT).status is True
    assert net.query.still_allocated(net.neurons[1], other_public, TIMEOUT).status is False
    assert net.query.check_available([net.neurons[1]], TIMEOUT)[0].status is False

    # A busy miner refuses a second allocation and keeps the first.
    _p, _q, second = allocate(net, 1, public_line)
    assert second.status is False and "info" not in second.output
    assert net.query.still_allocated(net.neurons[1], public_pem, TIMEOUT).status is True
    assert ssh_with_password(net.neurons[1].ip, 4444, NET_USERS + "1", credentials["password"]).returncode == 0

    assert net.query.deallocate(net.neurons[1], other_public, TIMEOUT).status is False
    assert net.query.still_allocated(net.neurons[1], public_pem, TIMEOUT).status is True
    assert net.query.deallocate(net.neurons[1], public_pem, TIMEOUT).status is True
    assert net.query.check_available([net.neurons[1]], TIMEOUT)[0].status is True
    assert net.miner(1)["allocated"] is False

    by_key, by_password = logins(net, 1, key_file, credentials["password"])
    assert by_key.returncode == 255 and by_password.returncode != 0
    assert "Permission denied" in by_key.stderr


def test_docker_actions(net, ssh_key, tmp_path):
    key_file, public_line = ssh_key
    new_key_file, new_public_line = make_ssh_key(tmp_path, "exchanged")
    private_pem, public_pem, reply = allocate(net, 2, public_line)
    password = _crypto.decrypt_credentials(private_pem, reply.output["info"])["password"]
    neuron = net.neurons[2]
    _other_private, other_public = _crypto.generate_key_pair()

    assert net.query.docker_action(neuron, other_public, "pause", TIMEOUT).status is False
    paused = net.query.docker_action(neuron, public_pem, "pause", TIMEOUT)
    assert paused.status is True and paused.output["port"] == 4444
    by_key, by_password = logins(net, 2, key_file, password)
    assert by_key.returncode != 0 and by_password.returncode != 0
    assert net.miner(2)["paused"] is True

    assert net.query.docker_action(neuron, public_pem, "resume", TIMEOUT).status is True
    by_key, by_password = logins(net, 2, key_file, password)
    assert by_key.returncode == 0 and by_password.returncode == 0, by_key.stderr + by_password.stderr

    assert net.query.docker_action(neuron, public_pem, "exchange_key", TIMEOUT, new_public_line, "user").status
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "2", key_file).returncode != 0
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "2", new_key_file).returncode == 0
    assert net.query.docker_action(neuron, public_pem, "restart", TIMEOUT).status is True

    unknown = _protocol.docker_action_request(public_pem, "pause")
    unknown["docker_action"]["action"] = "explode"
    answer = net.query.send([(neuron, unknown)], TIMEOUT)[0]
    assert answer.answered and "status" not in answer.output and answer.output["port"] == 4444

    assert net.query.deallocate(neuron, public_pem, TIMEOUT).status is True
    assert ssh_with_key(neuron.ip, 4444, NET_USERS + "2", new_key_file).returncode != 0


# ---------------------------------------------------------------- faults

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
    # The client heard nothing, yet the miner holds the allocation for the client's key.
    assert not reply.answered and reply.status_code == 408
    assert net.miner(4)["allocated"] is True
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
    idents = [record["pids"]["supervisor"]] + list(record["pids"]["sshd"].values())
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
