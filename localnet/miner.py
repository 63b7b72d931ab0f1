"""SN27 miner semantics for one localnet miner, over its box, as strict as a v1.8.3 miner.

The model follows what an upstream miner (neuralinternet/compute-subnet v1.8.3) keeps:

- one *container* (here: the box's login) that is running, paused or absent, and
- one *allocation key file* that holds the public key of the last successful allocation.

The two are independent, as upstream: killing the container (expiry, a failed kill, a
rebuild) does not clear the key file; only a release (deallocate or self-release) does.

- availability (`checking`, `timeline > 0`): free unless a container is *running*
  (a paused container, or none during a build, reads as free) — ``check_container``;
- still allocated (`checking`, `timeline <= 0`): the key file holds this key and a
  container is running — ``check_if_allocated``;
- allocate: kill the current container first (eviction), read ``device_requirement``,
  "build" for ``build_seconds``, start the container, encrypt the credentials and only
  then store the key — ``register_allocation`` / ``run_container``;
- deallocate: only when the key file holds this key; kill, then empty the key file —
  ``deregister_allocation``;
- docker actions act on the current container whoever asks (v1.8.3); miner version 190
  checks the key file first.

See docs/localnet.md ("What a miner does") for the upstream files each rule imitates.
"""

import asyncio
import base64
import hashlib
import os
import shlex
import threading
import time

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _protocol
from localnet.box import new_password
from localnet.faults import Fault
from localnet.layout import write_json

# 100*major + 10*minor + patch of the miner release localnet imitates (v1.8.3).
MINER_VERSION = 183
# --miner-version 190: v1.9.0's docker actions check the allocation key.
MINER_VERSIONS = (183, 190)
BYTES_PER_GIB = 1 << 30
# What upstream builds when `dockerfile` is empty.
DEFAULT_APPENDIX = "echo 'Hello World!'"
BASE_IMAGE = "ssh-image-base:latest"
DOCKERFILE_INSTRUCTIONS = frozenset((
    "ADD", "ARG", "CMD", "COPY", "ENTRYPOINT", "ENV", "EXPOSE", "FROM", "HEALTHCHECK", "LABEL",
    "MAINTAINER", "ONBUILD", "RUN", "SHELL", "STOPSIGNAL", "USER", "VOLUME", "WORKDIR"))


# Who may call (neurons/miner.py base_blacklist / base_priority).
PRIORITY_ALLOCATE = 3.0
# v1.9.0 refuses callers below this stake (v1.8.3's 1.024e3 only applies to whitelisted callers).
PERMIT_STAKE_190 = 1.0e4


def caller_blacklisted(version, stakes, hotkey):
    """(blacklisted, reason) for a caller, given {registered hotkey: stake}.

    v1.8.3 inverts its whitelist test: a caller that is not whitelisted is accepted at once,
    registered or not (localnet whitelists nobody). v1.9.0 refuses unregistered callers and
    callers below 1e4 stake.
    """
    if version < 190:
        return False, "Whitelisted hotkey"
    if hotkey not in stakes:
        return True, "Unrecognized hotkey"
    if stakes[hotkey] < PERMIT_STAKE_190:
        return True, "Not enough stake!"
    return False, "Hotkey recognized!"


def caller_priority(stakes, hotkey):
    """The caller's stake plus the Allocate priority; an unregistered caller raises (the axon answers 500)."""
    if hotkey not in stakes:
        # What list.index raises upstream.
        raise ValueError("%r is not in list" % hotkey)
    return float(stakes[hotkey]) + PRIORITY_ALLOCATE


def key_fingerprint(public_key):
    """A short stable name for an allocation key: "sha256:" + 16 hex digits of SHA-256 of the stripped PEM."""
    if not public_key or not public_key.strip():
        return None
    return "sha256:" + hashlib.sha256(public_key.strip().encode("utf-8")).hexdigest()[:16]


def _same_key(stored, public_key):
    # Upstream compares the stripped texts.
    return stored is not None and stored.strip() == str(public_key).strip()


class Allocation:
    """The miner's container: the box's login, running or paused."""

    def __init__(self, public_key, expires_at, user_key, terminal_key="", paused=False, dockerfile=""):
        self.public_key = public_key
        self.expires_at = expires_at
        self.user_key = user_key
        self.terminal_key = terminal_key
        self.paused = paused
        self.dockerfile = dockerfile

    @property
    def keys(self):
        return [self.user_key, self.terminal_key]


class Build:
    """An allocation between the kill and the start of the new container."""

    def __init__(self, public_key, timeline, ssh_key, dockerfile, fault, seconds, conflict):
        self.public_key = public_key
        self.timeline = timeline
        self.ssh_key = ssh_key
        self.dockerfile = dockerfile
        self.fault = fault
        self.seconds = seconds
        # The kill failed (release-fails) and the old container still holds the name.
        self.conflict = conflict
        self.started_at = time.time()


def container_limits(device_requirement):
    """Read device_requirement as register_allocation does before it builds; raises on what upstream fails on.

    cpu.count (a number), ram.capacity and hard_disk.capacity (bytes, numbers), gpu (falsy,
    or a mapping with capacity) must all be there.
    """
    cpus = device_requirement["cpu"]["count"]
    limits = {"cpus": "0" if cpus == 1 else "0-%d" % (cpus - 1),
              "ram": "%dg" % int(device_requirement["ram"]["capacity"] / BYTES_PER_GIB),
              "disk": "%dg" % int(device_requirement["hard_disk"]["capacity"] / BYTES_PER_GIB)}
    gpu = device_requirement["gpu"]
    limits["gpu"] = gpu["capacity"] if gpu else 0
    return limits


def dockerfile_for(appendix, ssh_key):
    """The Dockerfile the miner would build: the appendix as one RUN, the key written with echo '<key>'."""
    return "\n".join([
        "FROM %s" % BASE_IMAGE,
        "RUN %s" % (appendix or DEFAULT_APPENDIX),
        "RUN mkdir -p /root/.ssh/ && echo '%s' > /root/.ssh/authorized_keys && chmod 600 /root/.ssh/authorized_keys"
        % ssh_key,
    ])


def _logical_lines(text):
    """Dockerfile instructions: blank and comment lines dropped, backslash continuations joined."""
    lines, pending = [], ""
    for raw in text.split("\n"):
        if not pending and (not raw.strip() or raw.lstrip().startswith("#")):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        lines.append(pending + raw)
        pending = ""
    if pending:
        lines.append(pending)
    return lines


def build_error(dockerfile):
    """Why `docker build` of this Dockerfile fails (an unknown instruction, a RUN the shell cannot parse), or None.

    The RUN commands are not run; only their shell syntax is checked (approximately, with shlex).
    """
    for line in _logical_lines(dockerfile):
        words = line.split(None, 1)
        if words[0].upper() not in DOCKERFILE_INSTRUCTIONS:
            return "dockerfile parse error: unknown instruction %r" % words[0][:40]
        if words[0].upper() == "RUN":
            try:
                shlex.split(words[1] if len(words) > 1 else "")
            except ValueError as exc:
                return "RUN failed: /bin/sh: syntax error (%s)" % exc
    return None


def written_key(ssh_key):
    """What `echo '<key>'` writes for a key that builds: the shell's reading of the quoted text."""
    try:
        return " ".join(shlex.split("'%s'" % ssh_key))
    except ValueError:
        return ssh_key


class Miner:
    """Answers Allocate requests; one container and one allocation key at a time.

    `handle` runs a request to its end (sleeping through a build); `handle_async` does the
    same without holding a thread during the build. Neither holds the lock while building.
    """

    def __init__(self, uid, box, day_seconds, state_file, build_seconds=0.0, version=MINER_VERSION,
                 fault_source=None):
        if version not in MINER_VERSIONS:
            raise ValueError("miner version must be one of %s" % ", ".join(map(str, MINER_VERSIONS)))
        self.uid = uid
        self.box = box
        self.day_seconds = day_seconds
        self.state_file = state_file
        self.build_seconds = float(build_seconds)
        self.version = version
        # The miner's current fault, for what happens outside a request (expiry, self-release).
        self.fault_source = fault_source or Fault
        self.lock = threading.Lock()
        # The container (None: no container) and the allocation key file (None: no file yet).
        self.allocation = None
        self.allocation_key = None
        self.build = None
        self.last_release = None
        self.last_build_error = None
        # garbage alternates: non-base64 info, then info encrypted for another key.
        self.garbage_count = 0
        self._save()

    # ---- the synapse

    def handle(self, fields, fault):
        """The reply output for an Allocate request with these fields, under this fault (blocks through a build)."""
        step = self._begin(fields, fault)
        if isinstance(step, Build):
            if step.seconds > 0:
                time.sleep(step.seconds)
            step = self._finish(step)
        step["port"] = self.box.port
        return step

    async def handle_async(self, fields, fault, executor=None):
        """handle() for an asyncio loop: box work in executor, the build as an asyncio sleep."""
        loop = asyncio.get_running_loop()
        step = await loop.run_in_executor(executor, self._begin, fields, fault)
        if isinstance(step, Build):
            if step.seconds > 0:
                await asyncio.sleep(step.seconds)
            step = await loop.run_in_executor(executor, self._finish, step)
        step["port"] = self.box.port
        return step

    def _begin(self, fields, fault):
        with self.lock:
            timeline = fields["timeline"]
            if fields["checking"]:
                if timeline > 0:
                    return {"status": not self._running(fault)}
                return {"status": self._holds(fields["public_key"], fault)}
            if fields["docker_change"]:
                return self._docker_action(fields, fault)
            if timeline > 0:
                return self._begin_allocate(fields, fault)
            return {"status": self._deregister(fields["public_key"], fault)}

    # ---- what docker says

    def _running(self, fault):
        """check_container: a container exists and docker says it is running."""
        return self.allocation is not None and not self.allocation.paused and fault.mode != "paused"

    def _holds(self, public_key, fault):
        """check_if_allocated: the key file holds this key and the container runs."""
        stored = self.allocation_key
        return bool(stored and stored.strip()) and _same_key(stored, public_key) and self._running(fault)

    def _kill(self, fault):
        """kill_container: remove the current container; False when docker fails (release-fails).

        v1.8.3 stops a container only when it runs and then removes it without force, which Docker
        refuses for a paused one: no release, self-release, expiry or new allocation while paused.
        """
        if fault.mode == "release-fails":
            return False
        if self.allocation is not None and self.allocation.paused:
            return False
        if self.allocation is not None:
            self.box.revoke()
            self.allocation = None
        return True

    # ---- allocate

    def _begin_allocate(self, fields, fault):
        if fault.mode == "refuse":
            return {"status": False}
        if fault.mode == "refuse-busy" and (self.allocation is not None or self.build is not None):
            # The kind miner of old: busy, refuse and touch nothing.
            return {"status": False}
        if self.build is not None:
            # One allocation in progress at a time; the next one is refused untouched.
            return {"status": False}
        # register_allocation kills first, without asking whether the miner is free.
        killed = self._kill(fault)
        try:
            container_limits(fields["device_requirement"])
        except Exception:  # noqa: BLE001 - upstream catches everything and answers status False
            self._save()
            return {"status": False}
        docker_requirement = fields["docker_requirement"]
        ssh_key = docker_requirement.get("ssh_key")
        appendix = docker_requirement.get("dockerfile")
        self.build = Build(fields["public_key"], fields["timeline"], "None" if ssh_key is None else str(ssh_key),
                           dockerfile_for(appendix, "None" if ssh_key is None else str(ssh_key)), fault,
                           self.build_seconds, conflict=not killed and self.allocation is not None)
        self._save()
        return self.build

    def _finish(self, build):
        with self.lock:
            if self.build is build:
                self.build = None
            try:
                return self._run_container(build)
            finally:
                self._save()

    def _run_container(self, build):
        error = build_error(build.dockerfile)
        if error or build.conflict:
            # The build failed, or the old container still holds the name: nothing runs.
            self.last_build_error = error or "container name in use (the kill failed)"
            return {"status": False}
        self.last_build_error = None
        user_key = written_key(build.ssh_key)
        password = new_password()
        self.box.grant(password, [user_key])
        self.allocation = Allocation(build.public_key, time.time() + build.timeline * self.day_seconds, user_key,
                                     dockerfile=build.dockerfile)
        credentials = {"username": self.box.user, "password": password, "port": self.box.port}
        if build.fault.mode != "old":
            credentials["version"] = self.version
        try:
            info = _crypto.encrypt_credentials(build.public_key, credentials)
        except Exception:  # noqa: BLE001 - the container runs, the key file keeps the previous key
            return {"status": False}
        # The key is stored only now, after the container started.
        self.allocation_key = build.public_key
        if build.fault.mode == "garbage":
            info = self._garbage(credentials)
        return {"status": True, "info": info}

    def _garbage(self, credentials):
        self.garbage_count += 1
        if self.garbage_count % 2:
            return "not base64: " + base64.b64encode(os.urandom(48)).decode("ascii")
        return _crypto.encrypt_credentials(_crypto.generate_key_pair()[1], credentials)

    # ---- release

    def _deregister(self, public_key, fault):
        """deregister_allocation: only for the stored key; kill, then empty the key file."""
        if self.allocation_key is None or not _same_key(self.allocation_key, public_key):
            return False
        if not self._kill(fault):
            return False
        self.allocation_key = ""
        self.last_release = {"by": "request", "at": time.time()}
        self._save()
        return True

    def self_release(self, reason=""):
        """The miner releases on its own (no validator lists it in W&B): kill and empty the key file.

        Returns True when it released (False: nothing to release, or the kill failed under
        release-fails). A direct release sent later answers False. Blocking (box work).
        """
        with self.lock:
            if not self.allocation_key and self.allocation is None:
                return False
            if not self._kill(self.fault_source()):
                return False
            self.allocation_key = ""
            self.last_release = {"by": "self", "reason": reason, "at": time.time()}
            self._save()
            return True

    # ---- docker actions

    def _docker_action(self, fields, fault):
        docker_action = fields["docker_action"]
        # A docker_action without "action" fails in the handler: the axon answers 500.
        action = docker_action["action"]
        if action not in _protocol.DOCKER_ACTIONS:
            # Upstream leaves the request's output as it came (plus the port): no status.
            return dict(fields.get("output") or {})
        if self.version >= 190 and not _same_key(self.allocation_key or "", fields["public_key"]):
            # v1.9.0 answers a wrong key on pause with a misspelt key: no "status" at all.
            return {"status:": False} if action == "pause" else {"status": False}
        allocation = self.allocation
        if allocation is None:
            return {"status": False}
        if action == "exchange_key":
            if allocation.paused:
                # Upstream swaps keys only in a running container, yet answers True.
                return {"status": True}
            key_type = docker_action["key_type"]
            if key_type == "user":
                allocation.user_key = docker_action["ssh_key"]
            elif key_type == "terminal":
                allocation.terminal_key = docker_action["ssh_key"]
            else:
                return {"status": False}
            self.box.set_keys(allocation.keys)
            self.box.restart()
        elif action == "restart":
            if allocation.paused:
                self.box.resume(allocation.keys)
                allocation.paused = False
            self.box.restart()
        elif action == "pause":
            if allocation.paused:
                return {"status": False}
            self.box.pause()
            allocation.paused = True
        else:
            if not allocation.paused:
                return {"status": False}
            self.box.resume(allocation.keys)
            allocation.paused = False
        self._save()
        return {"status": True}

    # ---- expiry and state

    def expiry_due(self, now):
        allocation = self.allocation
        return allocation is not None and allocation.expires_at is not None and allocation.expires_at <= now

    def expire(self, now):
        """The scheduled kill at the end of the timeline; True when a container was killed.

        The key file stays (a later release with the key answers True). The job runs once:
        under release-fails the kill fails and the container stays.
        """
        with self.lock:
            if not self.expiry_due(now):
                return False
            killed = self._kill(self.fault_source())
            if not killed:
                self.allocation.expires_at = None
            self._save()
            return killed

    def _release(self):
        """Release whatever the miner holds (container and key), as a successful deallocate would."""
        if self.allocation is not None:
            self.box.revoke()
            self.allocation = None
        if self.allocation_key:
            self.allocation_key = ""
        self._save()

    def _save(self):
        allocation, build, key = self.allocation, self.build, self.allocation_key
        write_json(self.state_file, {
            "allocated": allocation is not None,
            "container": None if allocation is None else ("paused" if allocation.paused else "running"),
            "expires_at": allocation.expires_at if allocation else None,
            "paused": allocation.paused if allocation else False,
            # The allocation key file: the key a release must present.
            "public_key": key or None,
            "key_fingerprint": key_fingerprint(key),
            "building": build is not None,
            "build_started_at": build.started_at if build else None,
            "build_ready_at": build.started_at + build.seconds if build else None,
            "building_key_fingerprint": key_fingerprint(build.public_key) if build else None,
            "dockerfile": allocation.dockerfile if allocation else None,
            "last_build_error": self.last_build_error,
            "last_release": self.last_release,
            "version": self.version,
            "build_seconds": self.build_seconds,
        }, mode=0o600)
