"""Fixtures for localnet tests: a running localnet per module, and SSH helpers. Needs root and OpenSSH."""

import json
import os
import shlex
import shutil
import subprocess
import sys

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO_ROOT not in sys.path:
    sys.path.insert(0, REPO_ROOT)

from localnet import _collection  # noqa: E402

_collection.ensure_importable()

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
                            capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError("localnet %s failed (%d):\n%s\n%s" % (" ".join(args), result.returncode,
                                                                   result.stdout, result.stderr))
    return result


class Net:
    """A running localnet as the tests see it: its status, and a dendrite with the operator's hotkey."""

    def __init__(self, state_dir):
        from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
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
    # Its own loopback /24 and user prefix, so a developer's running localnet is not disturbed.
    state_dir = start(tmp_path_factory, "net", "--miners", "8", "--ip-prefix", "127.0.27", "--user-prefix", "nict")
    yield Net(state_dir)
    localnet("down", "--state-dir", state_dir, check=False)


@pytest.fixture(scope="module")
def short_days(tmp_path_factory):
    """A one-miner localnet whose day lasts 2 seconds, to watch an allocation expire."""
    state_dir = start(tmp_path_factory, "days", "--miners", "1", "--day-seconds", "2",
                      "--ip-prefix", "127.0.28", "--user-prefix", "nitx")
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
    return subprocess.run(["ssh"] + SSH_OPTIONS + ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                                                  "-o", "PreferredAuthentications=publickey", "-i", key_file,
                                                  "-p", str(port), "%s@%s" % (user, host), "id -un"],
                          capture_output=True, text=True, timeout=30)


def ssh_with_password(host, port, user, password):
    return subprocess.run(["sshpass", "-p", password, "ssh"] + SSH_OPTIONS + [
        "-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
        "-o", "NumberOfPasswordPrompts=1", "-p", str(port), "%s@%s" % (user, host), "id -un"],
        capture_output=True, text=True, timeout=30)
