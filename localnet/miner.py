"""SN27 miner semantics for one localnet miner, over its box (see PROTOCOL.md)."""

import base64
import os
import threading
import time

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _protocol
from localnet.box import new_password
from localnet.layout import write_json

# 100*major + 10*minor + patch of the miner release localnet imitates (v1.8.3).
MINER_VERSION = 183


class Allocation:
    def __init__(self, public_key, expires_at, user_key, terminal_key="", paused=False):
        self.public_key = public_key
        self.expires_at = expires_at
        self.user_key = user_key
        self.terminal_key = terminal_key
        self.paused = paused

    @property
    def keys(self):
        return [self.user_key, self.terminal_key]


class Miner:
    """Answers Allocate requests; one operation at a time, one allocation at a time."""

    def __init__(self, uid, box, day_seconds, state_file):
        self.uid = uid
        self.box = box
        self.day_seconds = day_seconds
        self.state_file = state_file
        self.lock = threading.Lock()
        self.allocation = None
        # garbage alternates: non-base64 info, then info encrypted for another key.
        self.garbage_count = 0
        self._save()

    # ---- the synapse

    def handle(self, fields, fault):
        """The reply output for an Allocate request with these fields, under this fault."""
        with self.lock:
            output = self._dispatch(fields, fault)
        output["port"] = self.box.port
        return output

    def _dispatch(self, fields, fault):
        timeline = fields["timeline"]
        if fields["checking"]:
            if timeline > 0:
                return {"status": self.allocation is None}
            return {"status": self._owned_by(fields["public_key"])}
        if fields["docker_change"]:
            return self._docker_action(fields["public_key"], fields["docker_action"])
        if timeline > 0:
            if fault.mode == "refuse":
                return {"status": False}
            return self._allocate(timeline, fields["public_key"], fields["docker_requirement"], fault)
        return {"status": self._deallocate(fields["public_key"])}

    def _owned_by(self, public_key):
        return self.allocation is not None and bool(public_key) and self.allocation.public_key == public_key

    def _allocate(self, timeline, public_key, docker_requirement, fault):
        if self.allocation is not None or not public_key:
            # Busy: never touch the current allocation.
            return {"status": False}
        password = new_password()
        user_key = str(docker_requirement.get("ssh_key") or "")
        credentials = {"username": self.box.user, "password": password, "port": self.box.port,
                       "version": MINER_VERSION}
        try:
            info = _crypto.encrypt_credentials(public_key, credentials)
        except Exception:  # a public key this miner cannot encrypt for: refuse, change nothing
            return {"status": False}
        self.box.grant(password, [user_key])
        self.allocation = Allocation(public_key, time.time() + timeline * self.day_seconds, user_key)
        self._save()
        if fault.mode == "garbage":
            info = self._garbage(credentials)
        return {"status": True, "info": info}

    def _garbage(self, credentials):
        self.garbage_count += 1
        if self.garbage_count % 2:
            return "not base64: " + base64.b64encode(os.urandom(48)).decode("ascii")
        return _crypto.encrypt_credentials(_crypto.generate_key_pair()[1], credentials)

    def _deallocate(self, public_key):
        if not self._owned_by(public_key):
            return False
        self._release()
        return True

    def _docker_action(self, public_key, docker_action):
        action = docker_action.get("action")
        if action not in _protocol.DOCKER_ACTIONS:
            # Upstream answers an unknown action without a status.
            return {}
        if not self._owned_by(public_key):
            return {"status": False}
        allocation = self.allocation
        if action == "exchange_key":
            key_type = docker_action.get("key_type")
            if key_type == "user":
                allocation.user_key = docker_action.get("ssh_key", "")
            elif key_type == "terminal":
                allocation.terminal_key = docker_action.get("ssh_key", "")
            else:
                return {"status": False}
            if not allocation.paused:
                self.box.set_keys(allocation.keys)
        elif action == "restart":
            self.box.restart()
        elif action == "pause":
            self.box.pause()
            allocation.paused = True
        else:
            self.box.resume(allocation.keys)
            allocation.paused = False
        self._save()
        return {"status": True}

    # ---- expiry and state

    def expire(self, now):
        """Release an allocation whose timeline has run out; True when one was released."""
        with self.lock:
            if self.allocation is None or self.allocation.expires_at > now:
                return False
            self._release()
            return True

    def _release(self):
        self.box.revoke()
        self.allocation = None
        self._save()

    def _save(self):
        allocation = self.allocation
        write_json(self.state_file, {
            "allocated": allocation is not None,
            "expires_at": allocation.expires_at if allocation else None,
            "paused": allocation.paused if allocation else False,
            "public_key": allocation.public_key if allocation else None,
        }, mode=0o600)
