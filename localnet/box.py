"""A miner's box: a login user standing for the container's root, behind its own OpenSSH sshd."""

import concurrent.futures
import os
import pwd
import secrets
import shutil
import signal
import string
import subprocess

from localnet.layout import USER_COMMENT, write_file

SSHD = "/usr/sbin/sshd"
# Binaries a box needs; the harness installs openssh-server, openssh-client, sshpass and sudo.
REQUIRED_BINARIES = (SSHD, "ssh-keygen", "useradd", "userdel", "usermod", "chpasswd", "pkill", "sudo")
# A box user stands for the container's root, so it gets passwordless sudo: one file per user,
# /etc/sudoers.d/nicompute-localnet-<user>, naming that user only.
SUDOERS_DIR = "/etc/sudoers.d"
PASSWORD_ALPHABET = string.ascii_letters + string.digits
# sshd's privilege-separation directory; Debian creates it only when its service starts.
PRIVSEP_DIR = "/run/sshd"
# useradd, userdel, ssh-keygen and starting sshd mostly wait (on the lock of /etc/passwd, on the
# disk, on fork): `up` and `down` run this many at once (60 useradd: 8.2 s one by one, 1.6 s eight
# at a time, on a busy 2-core machine).
SETUP_THREADS = 8


class BoxError(Exception):
    pass


def missing_binaries():
    return [name for name in REQUIRED_BINARIES if not shutil.which(name)]


def new_password():
    """A fresh 10-character alphanumeric password, as SN27 miners make them."""
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _position in range(10))


def _run(argv, stdin=None, ok=(0,)):
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if result.returncode not in ok:
        raise BoxError("%s failed (%s): %s" % (" ".join(argv[:2]), result.returncode, result.stderr.strip()))
    return result


def user_comment(name):
    """The GECOS comment of user name, or None when there is no such user."""
    try:
        return pwd.getpwnam(name).pw_gecos
    except KeyError:
        return None


def in_parallel(function, items):
    """[function(item) for item in items], SETUP_THREADS at a time; the first failure is raised once all ran."""
    with concurrent.futures.ThreadPoolExecutor(SETUP_THREADS, thread_name_prefix="setup") as pool:
        return list(pool.map(function, items))


def kill_user_processes(name):
    # pkill exits 1 when nothing matched.
    _run(["pkill", "-KILL", "-u", name], ok=(0, 1))


def _effective_uid(pid):
    """A process's effective uid (what pkill -u matches), or None when it is gone."""
    try:
        with open("/proc/%s/status" % pid) as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    return int(line.split()[2])
    except (OSError, ValueError, IndexError):
        pass
    return None


def kill_users_processes(names):
    """kill_user_processes for many users in one pass over /proc (pkill reads all of /proc per user)."""
    uids = set()
    for name in names:
        try:
            uids.add(pwd.getpwnam(name).pw_uid)
        except KeyError:
            pass
    for entry in os.listdir("/proc"):
        if entry.isdigit() and _effective_uid(entry) in uids:
            try:
                os.kill(int(entry), signal.SIGKILL)
            except ProcessLookupError:
                pass


def sudoers_file(name):
    return os.path.join(SUDOERS_DIR, "%s-%s" % (USER_COMMENT, name))


def grant_sudo(name):
    """Passwordless sudo for user name only, as a container's root has it."""
    path = sudoers_file(name)
    # sudo skips files whose names hold a dot, so the rule would silently not apply.
    if "." in os.path.basename(path):
        raise BoxError("user %s: sudo ignores %s (a dot in the name); choose another --user-prefix" % (name, path))
    os.makedirs(SUDOERS_DIR, mode=0o755, exist_ok=True)
    # Written under a name sudo ignores (it has a dot), checked, then renamed into place.
    staged = os.path.join(SUDOERS_DIR, ".%s.new" % os.path.basename(path))
    try:
        with open(os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440), "w") as handle:
            handle.write("# localnet box user, standing for the container's root (%s)\n"
                         "%s ALL=(ALL:ALL) NOPASSWD: ALL\n" % (USER_COMMENT, name))
        os.chmod(staged, 0o440)
        if shutil.which("visudo"):
            _run(["visudo", "-c", "-q", "-f", staged])
        os.rename(staged, path)
    finally:
        if os.path.exists(staged):
            os.unlink(staged)


def revoke_sudo(name):
    try:
        os.unlink(sudoers_file(name))
    except FileNotFoundError:
        pass


def _delete_user(name):
    # userdel exits 12 when the home is already gone.
    _run(["userdel", "-r", name], ok=(0, 12))


def remove_users(names):
    """Remove localnet users with their homes, processes and sudo rules (the caller checked they are localnet's)."""
    for name in names:
        revoke_sudo(name)
    kill_users_processes(names)
    in_parallel(_delete_user, names)


class Box:
    """One miner's login user and sshd, all under the miner's state dir."""

    def __init__(self, layout, uid):
        self.uid = uid
        self.user = layout.user(uid)
        self.comment = layout.user_comment
        self.ip = layout.ip(uid)
        self.port = layout.ssh_port
        self.directory = layout.miner_dir(uid)
        self.config = os.path.join(self.directory, "sshd_config")
        self.host_key = os.path.join(self.directory, "ssh_host_ed25519_key")
        self.authorized_keys = os.path.join(self.directory, "authorized_keys")
        self.log = os.path.join(self.directory, "sshd.log")

    # ---- lifecycle, driven by `up` and `down`

    def create_user(self):
        # Born locked: useradd leaves the password "!" until an allocation sets one.
        _run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", self.comment, self.user])
        grant_sudo(self.user)

    def prepare_sshd(self):
        os.makedirs(self.directory, exist_ok=True)
        os.makedirs(PRIVSEP_DIR, mode=0o755, exist_ok=True)
        if not os.path.exists(self.host_key):
            _run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "localnet-%s" % self.user,
                  "-f", self.host_key])
        self.set_keys([])
        write_file(self.config, "\n".join([
            'ListenAddress %s:%d' % (self.ip, self.port),
            'HostKey "%s"' % self.host_key,
            'PidFile none',
            'UsePAM no',
            'PasswordAuthentication yes',
            'KbdInteractiveAuthentication no',
            'PubkeyAuthentication yes',
            # sshd reads key files as the user, who cannot enter the 0700 state dir: read it as root.
            'AuthorizedKeysFile none',
            'AuthorizedKeysCommand /bin/cat "%s"' % self.authorized_keys,
            'AuthorizedKeysCommandUser root',
            'PermitRootLogin no',
            'AllowUsers %s' % self.user,
            'PrintMotd no',
            # Ansible transfers files over SFTP.
            'Subsystem sftp internal-sftp',
            '',
        ]))

    def start_sshd(self):
        """Start sshd in the foreground of its own session, so its PID is known at once."""
        process = subprocess.Popen([SSHD, "-D", "-f", self.config, "-E", self.log],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        return process.pid

    # ---- allocation, driven by the miner

    def set_keys(self, keys):
        write_file(self.authorized_keys, "".join(key.strip() + "\n" for key in keys if key.strip()))

    def grant(self, password, keys):
        """Open the login with a fresh password and the client's keys."""
        _run(["chpasswd"], stdin="%s:%s\n" % (self.user, password))
        self.set_keys(keys)

    def revoke(self):
        """Close the login for good: no password, no keys, no processes."""
        _run(["usermod", "--password", "!", self.user])
        self.set_keys([])
        kill_user_processes(self.user)

    def pause(self):
        """Lock the login, keeping the password for resume; OpenSSH without PAM then refuses keys too."""
        _run(["usermod", "--lock", self.user])
        self.set_keys([])
        kill_user_processes(self.user)

    def resume(self, keys):
        _run(["usermod", "--unlock", self.user])
        self.set_keys(keys)

    def restart(self):
        """What restarting the container means for a login: its processes end."""
        kill_user_processes(self.user)
