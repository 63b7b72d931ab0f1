# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The only module that imports bittensor: wallet loading, sr25519 verification, and dendrite
# queries carrying the Allocate synapse (the chain metagraph in _metagraph.py gets bittensor from
# here). A move to bittensor's btauth/1 transport is a change to this file alone.

from __future__ import annotations

import asyncio
import os
import time
import traceback
from dataclasses import dataclass

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MissingLibrary,
    NotFound,
)

_BT = None
_ALLOCATE_CLASS = None
# Never a serving axon's address: keeps the dendrite from rewriting loopback targets.
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

        namespace["deserialize"] = deserialize
        _ALLOCATE_CLASS = type(_protocol.SYNAPSE_NAME, (bt.Synapse,), namespace)
    return _ALLOCATE_CLASS


# ---------------------------------------------------------------- wallet

def load_hotkey(wallet_name, wallet_hotkey, wallet_path):
    """The wallet's hotkey keypair; NotFound with the path when the wallet or hotkey is missing."""
    bt = bittensor()
    path = os.path.expanduser(wallet_path)
    hotkey_file = os.path.join(path, wallet_name, "hotkeys", wallet_hotkey)
    if not os.path.isdir(os.path.join(path, wallet_name)):
        raise NotFound("wallet %r does not exist under %s" % (wallet_name, path))
    if not os.path.isfile(hotkey_file):
        raise NotFound("hotkey %r of wallet %r does not exist (%s)" % (wallet_hotkey, wallet_name, hotkey_file))
    try:
        return bt.Wallet(name=wallet_name, hotkey=wallet_hotkey, path=path).get_hotkey()
    except Exception as exc:
        raise BadInput("cannot load hotkey %r of wallet %r: %s" % (wallet_hotkey, wallet_name, exc))


def verify_signature(ss58_address, message, signature):
    """True when signature (bytes) is ss58_address's sr25519 signature of message (bytes).

    bittensor_wallet (a dependency of bittensor) verifies without importing bittensor itself.
    """
    try:
        from bittensor_wallet import Keypair
    except ImportError:
        raise MissingLibrary("bittensor>=10.5,<11 (bittensor_wallet)", traceback.format_exc())
    try:
        return bool(Keypair(ss58_address=ss58_address).verify(message, signature))
    except Exception:  # a malformed address or signature proves nothing
        return False


# ---------------------------------------------------------------- queries

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


def _axon_info(neuron):
    bt = bittensor()
    return bt.AxonInfo(version=0, ip=neuron.ip, port=neuron.port, ip_type=4,
                       hotkey=neuron.hotkey, coldkey=neuron.coldkey)


class MinerQuery:
    """Dendrite queries from one hotkey to miners' axons, each bounded by its timeout."""

    def __init__(self, keypair):
        self.keypair = keypair

    async def _one(self, dendrite, neuron, fields, timeout):
        synapse = allocate_synapse_class()(**fields)
        started = time.monotonic()
        answer = await dendrite.call(target_axon=_axon_info(neuron), synapse=synapse,
                                     timeout=timeout, deserialize=False)
        try:
            code = int(answer.dendrite.status_code or 0)
        except (TypeError, ValueError):
            code = 0
        output = answer.output if code == 200 else None
        return MinerReply(neuron.hotkey, output, code, str(answer.dendrite.status_message or ""),
                          time.monotonic() - started)

    async def _many(self, requests, timeout):
        dendrite = bittensor().Dendrite(wallet=self.keypair)
        try:
            return await asyncio.gather(*[self._one(dendrite, neuron, fields, timeout)
                                          for neuron, fields in requests])
        finally:
            await dendrite.aclose_session()

    def send(self, requests, timeout):
        """Send [(neuron, fields)] concurrently; one MinerReply per request, in order."""
        if not requests:
            return []
        return asyncio.run(self._many(requests, timeout))

    def check_available(self, neurons, timeout, timeline=1):
        fields = _protocol.availability_request(timeline)
        return self.send([(n, fields) for n in neurons], timeout)

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
