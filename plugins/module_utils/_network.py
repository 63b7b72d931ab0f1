# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# Talking to miners: the wallet's hotkey (bittensor_wallet), sr25519 verification, and queries
# carrying the Allocate synapse over the dendrite wire format (_dendrite.py), including the
# ranked, batched availability check. The only module that imports bittensor itself, and only
# for the parts that serve or read the chain (the Synapse class for axons, the chain metagraph
# in _metagraph.py): a network task never imports it. A move to bittensor's btauth/1 transport
# is a change to this file and _dendrite.py.

from __future__ import annotations

import asyncio
import os
import traceback
from dataclasses import dataclass

from ansible_collections.neuralinternet.compute.plugins.module_utils import _dendrite, _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MissingLibrary,
    NotFound,
)

_BT = None
_ALLOCATE_CLASS = None
# Never a serving axon's address: keeps bittensor's dendrite from rewriting loopback targets.
_NO_EXTERNAL_IP = "0.0.0.0"


def bittensor():
    """Import bittensor once, with its external-IP lookup switched off (no internet here)."""
    global _BT
    if _BT is None:
        os.environ.setdefault("BT_LOGGING_LEVEL", "ERROR")
        try:
            import bittensor as bt
            from bittensor.utils import networking
        except Exception:  # bittensor raises more than ImportError when half-installed
            raise MissingLibrary("bittensor>=10.5,<11", traceback.format_exc())
        if not hasattr(bt, "Synapse"):
            raise MissingLibrary("bittensor>=10.5,<11 (this bittensor has no Synapse/Axon)")
        networking.get_external_ip = lambda: _NO_EXTERNAL_IP
        _BT = bt
    return _BT


def allocate_synapse_class():
    """The bittensor Synapse subclass named Allocate, built from _protocol's field table."""
    global _ALLOCATE_CLASS
    if _ALLOCATE_CLASS is None:
        bt = bittensor()
        namespace = {"__annotations__": {}, "__module__": __name__}
        for name, kind, default in _protocol.ALLOCATE_FIELDS:
            namespace["__annotations__"][name] = kind
            namespace[name] = default

        def deserialize(self):
            return self.output

        required = []

        def get_required_fields(self):
            # bittensor rebuilds the class's JSON schema for this on every to_headers(), which an
            # axon calls for every answer (4.9 ms each); the fields never change.
            return list(required)

        namespace["deserialize"] = deserialize
        namespace["get_required_fields"] = get_required_fields
        _ALLOCATE_CLASS = type(_protocol.SYNAPSE_NAME, (bt.Synapse,), namespace)
        required.extend(_ALLOCATE_CLASS.model_json_schema().get("required", []))
    return _ALLOCATE_CLASS


# ---------------------------------------------------------------- wallet

def _wallet_library():
    try:
        import bittensor_wallet
    except ImportError:
        raise MissingLibrary("bittensor>=10.5,<11 (bittensor_wallet)", traceback.format_exc())
    return bittensor_wallet


def load_hotkey(wallet_name, wallet_hotkey, wallet_path):
    """The wallet's hotkey keypair; NotFound with the path when the wallet or hotkey is missing."""
    path = os.path.expanduser(wallet_path)
    hotkey_file = os.path.join(path, wallet_name, "hotkeys", wallet_hotkey)
    if not os.path.isdir(os.path.join(path, wallet_name)):
        raise NotFound("wallet %r does not exist under %s" % (wallet_name, path))
    if not os.path.isfile(hotkey_file):
        raise NotFound("hotkey %r of wallet %r does not exist (%s)" % (wallet_hotkey, wallet_name, hotkey_file))
    try:
        # bittensor's Wallet is bittensor_wallet's: the same files, without importing bittensor.
        return _wallet_library().Wallet(name=wallet_name, hotkey=wallet_hotkey, path=path).get_hotkey()
    except MissingLibrary:
        raise
    except Exception as exc:
        raise BadInput("cannot load hotkey %r of wallet %r: %s" % (wallet_hotkey, wallet_name, exc))


def verify_signature(ss58_address, message, signature):
    """True when signature (bytes) is ss58_address's sr25519 signature of message (bytes)."""
    keypair_class = _wallet_library().Keypair
    try:
        return bool(keypair_class(ss58_address=ss58_address).verify(message, signature))
    except Exception:  # a malformed address or signature proves nothing
        return False


# ---------------------------------------------------------------- queries

# Availability checks go out in ranked batches: the FIRST_BATCH best candidates at once, then
# twice as many whenever the batches so far yielded nobody free, either because all of them
# settled or because widen_after(timeout) passed without a "free" answer. Healthy miners answer
# in milliseconds; silent ones hold their batch until the timeout, and those waits overlap, so
# silent batches cost about one timeout in all, not one each.
FIRST_BATCH = 16
# Requests in flight at once. A request waits for a slot before its timeout starts, so miners
# that never answer cannot use up the timeout of the healthy ones queued behind them.
MAX_IN_FLIGHT = 128


def widen_after(timeout):
    """How long a batch may yield nobody before the next one goes out: long enough for healthy
    miners' millisecond answers on a busy controller, short beside the timeout silent ones cost."""
    return min(max(timeout / 16.0, 0.05), 0.25)


@dataclass
class MinerReply:
    """One miner's answer: output is None when the miner did not answer usefully."""
    hotkey: str
    output: object
    status_code: int
    message: str
    elapsed: float

    @property
    def answered(self):
        return self.status_code == 200 and isinstance(self.output, dict)

    @property
    def status(self):
        return _protocol.reply_status(self.output) if self.answered else None

    def describe(self):
        if self.answered:
            return "answered %s" % ("status true" if self.status else "status false" if self.status is False else "without status")
        return "no answer (%s %s)" % (self.status_code, self.message)


def _decided(replies):
    """True once the best-ranked free miner is known: every better-ranked one has settled."""
    for reply in replies:
        if reply is None:
            return False
        if reply.status is True:
            return True
    return True


class MinerQuery:
    """Allocate queries from one hotkey to miners' axons, each bounded by its timeout."""

    def __init__(self, keypair):
        self.keypair = keypair
        self.dendrite = _dendrite.Dendrite(keypair)

    async def _one(self, neuron, fields, timeout):
        reply = await self.dendrite.call(neuron.ip, neuron.port, neuron.hotkey, _protocol.SYNAPSE_NAME, fields,
                                         timeout)
        # As bittensor fills the synapse: a 200 body without output leaves the default {}.
        output = reply.body.get("output", {}) if reply.status_code == 200 and reply.body is not None else None
        return MinerReply(neuron.hotkey, output, reply.status_code, reply.message, reply.elapsed)

    async def _many(self, requests, timeout):
        return await asyncio.gather(*[self._one(neuron, fields, timeout) for neuron, fields in requests])

    def send(self, requests, timeout):
        """Send [(neuron, fields)] concurrently; one MinerReply per request, in order."""
        if not requests:
            return []
        return asyncio.run(self._many(requests, timeout))

    def check_available(self, neurons, timeout, timeline=1):
        """Ask every one of neurons at once whether it is free."""
        fields = _protocol.availability_request(timeline)
        return self.send([(n, fields) for n in neurons], timeout)

    def check_ranked(self, neurons, timeout, timeline=1):
        """Ask the ranked neurons in widening batches until the best-ranked free one is known.

        One entry per neuron, in order: its MinerReply, or None when it was not asked (or its
        answer was no longer needed). Every entry before the first free miner is a reply.
        """
        if not neurons:
            return []
        return asyncio.run(self._ranked(neurons, _protocol.availability_request(timeline), timeout))

    async def _ranked(self, neurons, fields, timeout):
        loop = asyncio.get_running_loop()
        replies = [None] * len(neurons)
        slots = asyncio.Semaphore(MAX_IN_FLIGHT)
        pending = {}
        state = {"launched": 0, "batch": FIRST_BATCH}

        async def ask(index):
            async with slots:
                return index, await self._one(neurons[index], fields, timeout)

        def launch():
            first, state["launched"] = state["launched"], min(len(neurons), state["launched"] + state["batch"])
            for index in range(first, state["launched"]):
                pending[asyncio.ensure_future(ask(index))] = index
            state["batch"] *= 2
            return loop.time()

        widened_at = launch()
        try:
            while not _decided(replies):
                wait = None
                if state["launched"] < len(neurons) and not any(r is not None and r.status is True for r in replies):
                    wait = widened_at + widen_after(timeout) - loop.time()
                    if wait <= 0 or not pending:
                        widened_at = launch()
                        continue
                done, _waiting = await asyncio.wait(set(pending), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    del pending[task]
                    index, reply = task.result()
                    replies[index] = reply
        finally:
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(set(pending))
        return replies

    def allocate(self, neuron, device_requirement, timeline, public_key, docker_req, timeout):
        fields = _protocol.allocate_request(device_requirement, timeline, public_key, docker_req)
        return self.send([(neuron, fields)], timeout)[0]

    def still_allocated(self, neuron, public_key, timeout):
        return self.send([(neuron, _protocol.status_request(public_key))], timeout)[0]

    def deallocate(self, neuron, public_key, timeout):
        return self.send([(neuron, _protocol.deallocate_request(public_key))], timeout)[0]

    def docker_action(self, neuron, public_key, action, timeout, ssh_key="", key_type=""):
        fields = _protocol.docker_action_request(public_key, action, ssh_key, key_type)
        return self.send([(neuron, fields)], timeout)[0]
