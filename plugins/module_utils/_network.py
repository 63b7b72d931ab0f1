# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The only module that imports bittensor: metagraph sources (chain or snapshot file),
# wallet loading, and dendrite queries carrying the Allocate synapse. A move to
# bittensor's btauth/1 transport is a change to this file alone.

from __future__ import annotations

import asyncio
import json
import os
import tempfile
import time
import traceback
from dataclasses import asdict, dataclass

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MissingLibrary,
    NotFound,
    Unreachable,
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


# ---------------------------------------------------------------- metagraph

@dataclass
class Neuron:
    uid: int
    hotkey: str
    coldkey: str
    stake: float
    incentive: float
    ip: str
    port: int
    validator_permit: bool = False

    @property
    def serving(self):
        return bool(self.ip) and self.ip != "0.0.0.0" and self.port > 0


def _neuron_from_dict(item):
    axon = item.get("axon") or {}
    return Neuron(
        uid=int(item["uid"]),
        hotkey=str(item["hotkey"]),
        coldkey=str(item.get("coldkey", "")),
        stake=float(item.get("stake", 0.0)),
        incentive=float(item.get("incentive", 0.0)),
        ip=str(axon.get("ip", "0.0.0.0")),
        port=int(axon.get("port", 0)),
        validator_permit=bool(item.get("validator_permit", False)),
    )


def _neuron_to_dict(neuron):
    item = asdict(neuron)
    item["axon"] = {"ip": item.pop("ip"), "port": item.pop("port")}
    return item


def write_snapshot(path, neurons, network, netuid, block=0):
    """Write a metagraph snapshot file atomically (used for the chain cache and by localnet)."""
    document = {
        "network": network,
        "netuid": netuid,
        "block": block,
        "created_at": time.time(),
        "neurons": [_neuron_to_dict(n) for n in neurons],
    }
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".metagraph-")
    with os.fdopen(fd, "w") as handle:
        json.dump(document, handle, indent=1)
    os.replace(tmp, path)


def read_snapshot(path, netuid=None):
    """Neurons from a snapshot file; BadInput when it is missing or malformed."""
    try:
        with open(path) as handle:
            document = json.load(handle)
        neurons = [_neuron_from_dict(item) for item in document["neurons"]]
    except FileNotFoundError:
        raise NotFound("metagraph snapshot %s does not exist" % path)
    except OSError as exc:
        raise BadInput("cannot read metagraph snapshot %s: %s" % (path, exc.strerror or exc))
    except (ValueError, KeyError, TypeError) as exc:
        raise BadInput("metagraph snapshot %s is malformed: %s" % (path, exc))
    if netuid is not None and int(document.get("netuid", netuid)) != int(netuid):
        raise BadInput("metagraph snapshot %s is for netuid %s, not %s" % (path, document.get("netuid"), netuid))
    return neurons, document


class SnapshotMetagraph:
    """Neurons read from a snapshot file instead of the chain."""

    def __init__(self, path, netuid):
        self.path = path
        self.netuid = netuid

    def neurons(self):
        return read_snapshot(self.path, self.netuid)[0]


class ChainMetagraph:
    """Neurons from the chain, cached on disk for cache_ttl seconds so repeated tasks do not resync."""

    def __init__(self, network, netuid, cache_dir=None, cache_ttl=300):
        self.network = network
        self.netuid = netuid
        self.cache_ttl = cache_ttl
        cache_dir = cache_dir or os.path.join(os.path.expanduser("~"), ".cache", "nicompute")
        self.cache_path = os.path.join(cache_dir, "metagraph-%s-%s.json" % (network.replace("/", "_").replace(":", "_"), netuid))

    def _cached(self):
        try:
            neurons, document = read_snapshot(self.cache_path, self.netuid)
        except (NotFound, BadInput):
            return None
        if time.time() - float(document.get("created_at", 0)) > self.cache_ttl:
            return None
        return neurons

    def neurons(self):
        cached = self._cached() if self.cache_ttl > 0 else None
        if cached is not None:
            return cached
        bt = bittensor()
        try:
            subtensor = bt.Subtensor(network=self.network)
            metagraph = subtensor.metagraph(self.netuid)
        except Exception as exc:
            raise Unreachable("cannot sync the metagraph of netuid %s on %s: %s" % (self.netuid, self.network, exc))
        neurons = []
        for uid in range(int(metagraph.n)):
            axon = metagraph.axons[uid]
            neurons.append(Neuron(
                uid=int(metagraph.uids[uid]),
                hotkey=str(metagraph.hotkeys[uid]),
                coldkey=str(metagraph.coldkeys[uid]),
                stake=float(metagraph.S[uid]),
                incentive=float(metagraph.I[uid]),
                ip=str(axon.ip),
                port=int(axon.port),
                validator_permit=bool(metagraph.validator_permit[uid]),
            ))
        if self.cache_ttl > 0:
            write_snapshot(self.cache_path, neurons, self.network, self.netuid, int(getattr(metagraph, "block", 0)))
        return neurons


def metagraph_source(network, netuid, metagraph_file=None, cache_ttl=300):
    if metagraph_file:
        return SnapshotMetagraph(metagraph_file, netuid)
    return ChainMetagraph(network, netuid, cache_ttl=cache_ttl)


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


def hotkey_address(wallet_name, wallet_hotkey, wallet_path):
    """The ss58 address of the wallet's hotkey from its public file, without bittensor; None when absent."""
    directory = os.path.join(os.path.expanduser(wallet_path), wallet_name, "hotkeys")
    # The public file first: reading the key file itself would load the secret into memory.
    for name in (wallet_hotkey + "pub.txt", wallet_hotkey):
        try:
            with open(os.path.join(directory, name)) as handle:
                address = json.load(handle).get("ss58Address")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(address, str) and address:
            return address
    return None


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
