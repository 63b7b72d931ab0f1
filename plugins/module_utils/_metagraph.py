# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The metagraph as plain data: neurons from a snapshot file, or from the chain (bittensor is
# imported only then, and the result cached on disk), and the wallet's hotkey address read
# from its public file. Light to import: listings that read a snapshot never load bittensor.

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass

from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    NotFound,
    Unreachable,
)


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
        from ansible_collections.neuralinternet.compute.plugins.module_utils._network import bittensor

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


def neurons_by_hotkey(settings):
    """{hotkey: Neuron} of the subnet the settings name (snapshot file, or the chain through its cache)."""
    source = metagraph_source(settings.network, settings.netuid, settings.metagraph_file, settings.metagraph_cache_ttl)
    return dict((neuron.hotkey, neuron) for neuron in source.neurons())


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
