"""What tests and benches need to drive a localnet: the CLI run as a user would, and a check
that this machine can run one (root, OpenSSH)."""

import os
import shutil
import subprocess
import sys

from localnet import _collection

# What the test command installs: openssh-server openssh-client sshpass.
NEEDED = ("/usr/sbin/sshd", "ssh", "ssh-keygen", "sshpass", "sudo")


def missing_requirements(needed=NEEDED):
    """Why localnet cannot run here, or None."""
    missing = [name for name in needed if not shutil.which(name)]
    if missing:
        return "localnet needs %s: apt-get install -y openssh-server openssh-client sshpass sudo" % ", ".join(missing)
    if os.geteuid() != 0:
        return "localnet must run as root (it starts sshd and creates users)"
    return None


def run_cli(*args, check=True, timeout=120):
    """`python -m localnet ARGS` from the collection root; AssertionError with its output when it fails."""
    result = subprocess.run([sys.executable, "-m", "localnet"] + list(args), cwd=_collection.REPO_ROOT,
                            capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError("localnet %s failed (%d):\n%s\n%s" % (" ".join(args), result.returncode,
                                                                   result.stdout, result.stderr))
    return result
