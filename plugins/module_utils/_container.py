# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The protocol's docker actions (restart, pause, resume, exchange_key) and the "still held?" status
# check for one of this validator's own allocations. v1.8.3 miners run docker actions for any
# caller, so ownership is checked here before anything is sent: an allocation recorded in this
# database with its public key, and live. What the miner answers is reported as it came; no answer
# is a failure, never a success.

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation import (
    checked_public_key,
    drop_empty_warnings,
    publish_and_warn,
    read_ssh_public_key,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation_info import judge_reply
from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked_float
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MinerRefused,
    Unreachable,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._records import allocation_view
from ansible_collections.neuralinternet.compute.plugins.module_utils._ss58 import is_ss58_address
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import PUBLISHED_STATES

ACTIONS = ("status", "restart", "pause", "resume", "exchange_key")
# v1.8.3 miners take "unpause" and "resume" alike; "unpause" is what upstream's own API sends.
WIRE_ACTIONS = {"restart": "restart", "pause": "pause", "resume": "unpause", "exchange_key": "exchange_key"}
# The container once the miner confirmed the action (exchange_key restarts it).
STATE_AFTER = {"restart": "running", "pause": "paused", "resume": "running", "exchange_key": "running"}
# The recorded container state in which the action has nothing to do: nothing is sent.
ALREADY = {"pause": "paused", "resume": "running"}
# The status request asks for the key itself: an unpublished record still has one to ask about.
STATUS_STATES = PUBLISHED_STATES + ("releasing",)
DEFAULT_TIMEOUT = 60.0
# The status request as the result's `sent` names it; docker actions go by their wire name.
STATUS_REQUEST = "status"
OUTCOME_UNKNOWN = "; whether the action happened is unknown"
PAUSED_UNTIL_HELD = "; the box is taken as paused until its miner answers that it holds it (action=status asks)"

_NOT_LIVE = {
    "pending": "it is still being allocated (pending): the miner holds no container for it yet",
    "releasing": "it is being released (releasing, unpublished)",
    "expired": "its timeline ended (expired)",
}


def checked_target(name, hotkey):
    """(name, hotkey) with exactly one given, stripped and checked; BadInput otherwise."""
    given = [option for option, value in (("name", name), ("hotkey", hotkey)) if value is not None]
    if len(given) != 1:
        raise BadInput("give exactly one of name or hotkey%s" % (" (both were given)" if given else ""),
                       option="name")
    if name is not None:
        if not isinstance(name, str) or not name.strip():
            raise BadInput("name must not be empty", option="name")
        return name.strip(), None
    hotkey = hotkey.strip() if isinstance(hotkey, str) else hotkey
    if not is_ss58_address(hotkey):
        raise BadInput("hotkey %r is not a valid ss58 address" % (hotkey,), option="hotkey")
    return None, hotkey


def checked_ssh_key(value):
    """The public key to install (from the text or the key file it names); BadInput when miners cannot take it."""
    if not isinstance(value, str) or not value.strip():
        raise BadInput("action exchange_key needs ssh_key: an OpenSSH public key on one line, or a file that "
                       "holds one", option="ssh_key")
    key = read_ssh_public_key(value)
    if not key:  # a key file without a key
        raise BadInput("ssh_key is neither an OpenSSH public key nor a readable key file", option="ssh_key")
    return checked_public_key("ssh_key", key)


@dataclass
class ContainerRequest:
    action: str
    name: str = None
    hotkey: str = None
    key_type: str = None
    ssh_key: str = None
    timeout: float = DEFAULT_TIMEOUT

    def validate(self):
        """Check every option; BadInput naming the first that cannot work. Nothing is read or sent."""
        if self.action not in ACTIONS:
            raise BadInput("action must be one of %s, got %r" % (", ".join(ACTIONS), self.action), option="action")
        self.name, self.hotkey = checked_target(self.name, self.hotkey)
        if self.action == "exchange_key":
            if self.key_type not in _protocol.KEY_TYPES:
                raise BadInput("action exchange_key needs key_type %s, got %r" % (
                    " or ".join(_protocol.KEY_TYPES), self.key_type), option="key_type")
            self.ssh_key = checked_ssh_key(self.ssh_key)
        else:
            for option in ("key_type", "ssh_key"):
                if getattr(self, option) is not None:
                    raise BadInput("%s is only for action exchange_key, not %s" % (option, self.action), option=option)
        self.timeout = checked_float("timeout", self.timeout)
        return self

    @property
    def target(self):
        return "allocation %r" % self.name if self.name is not None else "miner %s" % self.hotkey

    def docker_action(self):
        """The docker_action fields as sent (every key: a sent dict replaces the miner's default whole)."""
        return {"action": WIRE_ACTIONS[self.action], "ssh_key": self.ssh_key or "", "key_type": self.key_type or ""}


def own_allocation(store, request):
    """The record this request may act on; BadInput (nothing sent) when it is not one of ours."""
    record = store.get(name=request.name) if request.name is not None else store.get(hotkey=request.hotkey)
    if record is None:
        raise BadInput("%s: this validator has no allocation recorded for it in %s, so nothing was sent. SN27 "
                       "miners (v1.8.3) run docker actions for any caller; nicompute_container acts only on this "
                       "validator's own allocations" % (request.target, store.path), option=_option(request))
    if not record.regkey:
        raise BadInput("%s has no public key recorded, so nothing was sent: the key is the only proof that the "
                       "allocation is ours" % request.target, option=_option(request))
    allowed = STATUS_STATES if request.action == "status" else PUBLISHED_STATES
    if record.state not in allowed:
        raise BadInput("%s: %s, so %s is not sent" % (request.target, _NOT_LIVE[record.state], request.action),
                       state=record.state, option=_option(request))
    if request.action == "exchange_key" and record.container == "paused":
        raise BadInput("%s is paused: a paused container keeps its keys although the miner answers success. "
                       "Resume it first (action=resume)" % request.target, container="paused")
    return record


def _option(request):
    return "name" if request.name is not None else "hotkey"


def reply_view(reply):
    """The miner's answer as it came: its status (None: none given), the output, the HTTP outcome."""
    return {"status": reply.status, "answered": reply.answered, "output": reply.output,
            "status_code": reply.status_code, "message": reply.message, "elapsed": round(reply.elapsed, 3)}


def record_view(record):
    view = allocation_view(record)
    view["container"] = record.container
    return view


def miner_view(neuron):
    return {"hotkey": neuron.hotkey, "uid": neuron.uid, "ip": neuron.ip, "port": neuron.port}


def plan(request, record, neuron):
    """What a real run would send to which miner (check mode)."""
    sent = [STATUS_REQUEST] if request.action in ("status", "exchange_key") else []
    if request.action != "status":
        sent.append(WIRE_ACTIONS[request.action])
    request_fields = {"checking": request.action == "status", "timeline": 0 if request.action == "status" else 1,
                      "docker_change": request.action != "status",
                      "public_key_sha256": hashlib.sha256(record.regkey.encode("utf-8")).hexdigest()}
    if request.action != "status":
        request_fields["docker_action"] = request.docker_action()
    return {"miner": miner_view(neuron), "send": sent, "request": request_fields}


def container_diff(request, record, container_after):
    """before/after of what the action changes: the container state, or the key that logs in."""
    if request.action in ("pause", "resume"):
        return {"before": {"container": record.container or "unknown"}, "after": {"container": container_after}}
    if request.action == "exchange_key":
        option = "ssh_key" if request.key_type == "user" else "terminal_ssh_key"
        before = record.ssh_key if request.key_type == "user" else None
        return {"before": {option: before}, "after": {option: request.ssh_key}}
    return None


def state_after_silence(request, record):
    """The container state to record when the miner did not answer the action.

    A box that may be paused is recorded paused: its "not held" is then no evidence against the
    allocation, and the first "held" answer (status, an allocate rerun) corrects it. Otherwise unknown,
    so that the next pause or resume is sent whatever the record said.
    """
    if request.action == "pause" or record.container == "paused":
        return "paused"
    return None


class ContainerTask:
    """One docker action or status check on one of our allocations, through a ComputeClient."""

    def __init__(self, client, request, check_mode=False):
        self.client = client
        self.request = request
        self.check_mode = check_mode
        self.sent = []

    def _ask(self, neuron, record, wire_action=None):
        """Send the status request (wire_action None) or a docker action; the MinerReply."""
        request = self.request
        if wire_action is None:
            self.sent.append(STATUS_REQUEST)
            return self.client.query.still_allocated(neuron, record.regkey, request.timeout)
        self.sent.append(wire_action)
        fields = request.docker_action()
        return self.client.query.docker_action(neuron, record.regkey, wire_action, request.timeout,
                                               ssh_key=fields["ssh_key"], key_type=fields["key_type"])

    def _result(self, record, changed, **values):
        result = {"changed": changed, "action": self.request.action, "sent": list(self.sent),
                  "allocation": record_view(record), "container": record.container}
        result.update(values)
        return result

    def _silent(self, what, neuron, reply, note="", **details):
        return Unreachable("miner %s (uid %s) %s: %s%s" % (
            neuron.hotkey, neuron.uid, what, _no_answer(reply, self.request.timeout), note),
            sent=list(self.sent), reply=reply_view(reply), **details)

    def _set_container(self, record, state):
        if self.check_mode or record.container == state:
            return record
        return self.client.store.set_container_state(record.hotkey, record.regkey, state)

    def run(self):
        request, client = self.request, self.client
        record = own_allocation(client.store, request)
        if request.action in ALREADY and ALREADY[request.action] == record.container:
            return self._result(record, False, reply=None, msg="the container is already %s (as recorded); "
                                "nothing was sent" % record.container,
                                diff=container_diff(request, record, record.container))
        if request.action != "status" and not self.check_mode:
            # Before any miner is contacted: what the miner does must be recordable.
            client.store.require_writable()
        client.check_caller()
        neuron = client.neuron(record.hotkey)
        if request.action == "status":
            return self.status(record, neuron)
        if self.check_mode:
            return self._result(record, True, reply=None, plan=plan(request, record, neuron),
                                diff=container_diff(request, record, STATE_AFTER[request.action]))
        if request.action == "exchange_key":
            self._require_running(record, neuron)
        return self.act(record, neuron)

    def status(self, record, neuron):
        """Ask whether the miner still holds our key, judged by the listing's rules; no answer fails."""
        reply = self._ask(neuron, record)
        status, why = judge_reply(record, reply, time.time(), self.client.settings)
        if status == "unreachable":
            raise self._silent("did not answer the status request", neuron, reply, status=status,
                               allocation=record_view(record))
        if reply.status is True and record.container == "paused":
            # Held means running: it was resumed or restarted since it was recorded paused.
            record = self._set_container(record, "running")
        return self._result(record, False, status=status, status_reason=why, reply=reply_view(reply))

    def _require_running(self, record, neuron):
        """exchange_key only where the container runs: miners answer success without swapping keys otherwise."""
        reply = self._ask(neuron, record)
        if reply.status is None:
            raise self._silent("did not answer the status check before exchange_key", neuron, reply,
                               allocation=record_view(record))
        if reply.status is False:
            raise MinerRefused("miner %s answers that it does not hold %s with a running container (paused, "
                               "restarting or gone), where exchange_key answers success without changing the key; "
                               "the key exchange was not sent" % (neuron.hotkey, self.request.target),
                               sent=list(self.sent), reply=reply_view(reply), allocation=record_view(record))

    def act(self, record, neuron):
        """Send the docker action and record what the miner's answer proves."""
        request = self.request
        wire_action = WIRE_ACTIONS[request.action]
        reply = self._ask(neuron, record, wire_action)
        if reply.status is None:
            after = self._set_container(record, state_after_silence(request, record))
            raise self._silent("did not answer %s" % wire_action, neuron, reply, allocation=record_view(after),
                               note=OUTCOME_UNKNOWN + (PAUSED_UNTIL_HELD if after.container == "paused" else ""))
        if reply.status is False:
            if request.action == "resume":
                running = self._already_running(record, neuron)
                if running is not None:
                    return running
            raise MinerRefused("miner %s answered status false to %s for %s: the action did not happen (the "
                               "container may be in another state than asked for, or docker failed)" % (
                                   neuron.hotkey, wire_action, request.target),
                               sent=list(self.sent), reply=reply_view(reply), allocation=record_view(record))
        before = record
        record = self._set_container(record, STATE_AFTER[request.action])
        if request.action == "exchange_key" and request.key_type == "user":
            # Later tasks (the inventory plugin) must know which key logs in now.
            record = self.client.store.set_ssh_key(record.hotkey, record.regkey, request.ssh_key)
        result = self._result(record, True, reply=reply_view(reply))
        diff = container_diff(request, before, record.container)
        if diff is not None:
            result["diff"] = diff
        return result

    def _already_running(self, record, neuron):
        """After a refused resume: the result when the container runs anyway (resumed elsewhere), else None."""
        reply = self._ask(neuron, record)
        if reply.status is not True:
            return None
        record = self._set_container(record, "running")
        return self._result(record, False, reply=reply_view(reply), warnings=[
            "miner %s refused to %s %s, and answers that it holds it with a running container: it was already "
            "running (resumed or restarted elsewhere)" % (neuron.hotkey, WIRE_ACTIONS["resume"], self.request.target)])


def _no_answer(reply, timeout):
    if reply.answered:
        return "it answered without a status (%r)" % (reply.output,)
    if reply.status_code in (0, 408):
        return "no answer within %g s (%s %s)" % (timeout, reply.status_code, reply.message)
    return "no answer (%s %s)" % (reply.status_code, reply.message)


def container_action(settings, request, check_mode=False, client=None):
    """Run one nicompute_container task; returns the module result or raises NiComputeError."""
    request.validate()
    settings.validate()
    client = client or ComputeClient(settings, check_mode=check_mode)
    result = ContainerTask(client, request, check_mode).run()
    if result["changed"] and not check_mode:
        publish_and_warn(client, result)
    return drop_empty_warnings(result)
