# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The use cases (rank, allocate with failover, reconcile, deallocate) composed from the
# store, the network and the W&B sync. Never prints; raises _errors types.

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ansible_collections.neuralinternet.compute.plugins.module_utils import _crypto, _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    Claimed,
    CryptoError,
    NotFound,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import (
    DeviceRequirement,
    gpu_summary,
    parse_specs,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore

DAY_SECONDS = 86400
# Added to a claim's lease beyond the requests it covers: database waits, key generation, a slow host.
LEASE_MARGIN_S = 60.0


@dataclass
class Candidate:
    neuron: object
    resource: str
    score: float = None
    reason: str = None

    def describe(self):
        item = {"hotkey": self.neuron.hotkey, "uid": self.neuron.uid, "ip": self.neuron.ip,
                "resource": self.resource, "score": self.score,
                "incentive": self.neuron.incentive}
        if self.reason:
            item["reason"] = self.reason
        return item


@dataclass
class Ranking:
    candidates: list = field(default_factory=list)
    rejected: list = field(default_factory=list)

    def reject(self, candidate, reason):
        candidate.reason = reason
        self.rejected.append(candidate)

    def report(self):
        return {"candidates": [c.describe() for c in self.candidates],
                "rejected": [c.describe() for c in self.rejected]}


def _rank_key(candidate):
    # Proof-of-GPU score first (miners without one after those with), then incentive, then uid.
    scored = candidate.score is not None
    return (not scored, -(candidate.score or 0.0), -candidate.neuron.incentive, candidate.neuron.uid)


class ComputeClient:
    """One operator's view of the subnet: their database, the metagraph and their hotkey."""

    def __init__(self, settings, store=None, metagraph=None, check_mode=False):
        self.settings = settings
        self.check_mode = check_mode
        self.owner = Owner.current()
        self._store = store
        self._metagraph = metagraph
        self._network = None
        self._neurons = None
        self._keypair = None
        self._query = None

    # -- lazily loaded parts: the database is opened only after the wallet and the metagraph
    # loaded, and bittensor is imported only when a miner must be contacted
    @property
    def store(self):
        if self._store is None:
            path, create = self.settings.db_path, self.settings.db_create
            # A dry run that would create the database plans against an empty one and writes nothing.
            in_memory = create and self.check_mode and not os.path.exists(path)
            self._store = AllocationStore(path, create=create, in_memory=in_memory)
        return self._store

    @property
    def network(self):
        if self._network is None:
            from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
            self._network = _network
        return self._network

    def neurons(self):
        if self._neurons is None:
            source = self._metagraph or self.network.metagraph_source(
                self.settings.network, self.settings.netuid, self.settings.metagraph_file,
                self.settings.metagraph_cache_ttl)
            self._neurons = dict((n.hotkey, n) for n in source.neurons())
        return self._neurons

    @property
    def keypair(self):
        if self._keypair is None:
            self._keypair = self.network.load_hotkey(self.settings.wallet_name, self.settings.wallet_hotkey,
                                                     self.settings.wallet_path)
        return self._keypair

    @property
    def query(self):
        if self._query is None:
            self._query = self.network.MinerQuery(self.keypair)
        return self._query

    def check_caller(self):
        """Load the wallet and refuse early when its hotkey is not registered on the subnet."""
        hotkey = self.keypair.ss58_address
        if hotkey not in self.neurons():
            raise NotFound("hotkey %s of wallet %s is not registered on netuid %s; miners refuse "
                           "unregistered callers" % (hotkey, self.settings.wallet_name, self.settings.netuid))
        return hotkey

    def neuron(self, hotkey):
        neuron = self.neurons().get(hotkey)
        if neuron is None:
            raise NotFound("hotkey %s is not in the metagraph of netuid %s" % (hotkey, self.settings.netuid))
        return neuron

    # -- W&B
    def publish(self):
        from ansible_collections.neuralinternet.compute.plugins.module_utils._sync import WandbPublisher
        if self.settings.effective_wandb_mode == "disabled":
            return {"mode": "disabled", "published": False, "error": None}
        return WandbPublisher(self.settings, self.keypair.ss58_address, self.keypair.sign, self.store).publish()

    # -- ranking
    def rank(self, requirement=None, hotkey=None):
        """Every miner as a candidate or a rejection with its reason, best candidate first."""
        ranking = Ranking()
        requirement = requirement or DeviceRequirement.from_options()
        specs_by_hotkey = self.store.miner_specs()
        if not specs_by_hotkey and not hotkey:
            raise NotFound("database %s holds no miner specs (table miner_details is empty): point db_path at the "
                           "validator's database.db" % self.store.path, path=self.store.path)
        scores = self.store.scores()
        penalized = self.store.penalized()
        taken = set(a.hotkey for a in self.store.allocations())
        neurons = self.neurons()
        targets = [self.neuron(hotkey)] if hotkey else sorted(neurons.values(), key=lambda n: n.uid)
        own = self.keypair.ss58_address if self._keypair is not None else None
        for neuron in targets:
            raw = specs_by_hotkey.get(neuron.hotkey)
            specs, specs_error = parse_specs(raw) if raw is not None else (None, "no specs reported")
            candidate = Candidate(neuron, gpu_summary(raw)["resource"], scores.get(neuron.hotkey))
            if neuron.hotkey == own:
                ranking.reject(candidate, "this is the caller's own hotkey")
            elif neuron.hotkey in penalized:
                ranking.reject(candidate, "penalized")
            elif neuron.hotkey in taken:
                ranking.reject(candidate, "already allocated in the database")
            elif not neuron.serving:
                ranking.reject(candidate, "axon not serving")
            elif hotkey:
                ranking.candidates.append(candidate)  # a_hotkey: the operator chose this miner
            elif specs is None:
                ranking.reject(candidate, specs_error if raw is None else "invalid specs: %s" % specs_error)
            else:
                match = requirement.match(specs)
                if match.ok:
                    ranking.candidates.append(candidate)
                else:
                    ranking.reject(candidate, match.reason)
        ranking.candidates.sort(key=_rank_key)
        return ranking

    def check_availability(self, ranking, timeout):
        """Ask every candidate concurrently whether it is free; busy or silent ones are rejected."""
        replies = self.query.check_available([c.neuron for c in ranking.candidates], timeout)
        available = []
        for candidate, reply in zip(ranking.candidates, replies):
            if reply.status is True:
                available.append(candidate)
            elif reply.status is False:
                ranking.reject(candidate, "busy (the miner reports an allocation)")
            else:
                ranking.reject(candidate, "availability check: %s" % reply.describe())
        ranking.candidates = available
        return ranking

    # -- allocation
    def live_allocation(self, name, timeout, check_mode=False):
        """The active allocation called name, or None once its miner no longer holds it.

        Returns (record, warning): a miner that does not answer keeps the record.
        """
        record = self.store.get(name=name)
        if record is None or record.state != "active":
            return None, None
        neuron = self.neurons().get(record.hotkey)
        if neuron is None:
            return record, "miner %s is no longer in the metagraph" % record.hotkey
        reply = self.query.still_allocated(neuron, record.regkey, timeout)
        if reply.status is False:
            # Expired or released miner-side: the record is stale.
            if not check_mode:
                self.store.remove(record.hotkey, record.regkey)
            return None, None
        if reply.status is None:
            return record, "miner %s did not confirm the allocation: %s" % (record.hotkey, reply.describe())
        return record, None

    def allocate(self, name, requirement, hotkey, timeline, docker_req, check_timeout,
                 allocate_timeout, max_attempts, key_bits=2048, request=None):
        """Allocate on the best available miner; returns (allocation, report).

        A miner that another run claimed meanwhile is skipped like a busy one and costs no attempt.
        """
        ranking = self.check_availability(self.rank(requirement, hotkey), check_timeout)
        report = {"attempts": []}
        # a_hotkey: the miner gets upstream's minimal requirement and gives what it has.
        device_requirement = (requirement or DeviceRequirement.from_options()).to_wire()
        remaining, tried = list(ranking.candidates), []
        while remaining and len(report["attempts"]) < max_attempts:
            candidate = remaining.pop(0)
            try:
                outcome = self._allocate_on(name, candidate, device_requirement, timeline, docker_req,
                                            allocate_timeout, key_bits, request)
            except Claimed as claimed:
                ranking.reject(candidate, "claimed by another allocation meanwhile: %s" % claimed.message)
                continue
            tried.append(candidate)
            report["attempts"].append(outcome)
            if outcome["result"] == "allocated":
                ranking.candidates = tried + remaining
                report.update(ranking.report())
                return self.store.get(hotkey=candidate.neuron.hotkey), report
        ranking.candidates = tried + remaining
        report.update(ranking.report())
        return None, report

    def _allocate_on(self, name, candidate, device_requirement, timeline, docker_req, timeout, key_bits, request):
        neuron = candidate.neuron
        private_pem, public_pem = _crypto.generate_key_pair(key_bits)
        # Claimed before the request, atomically: a process killed from here on leaves evidence to
        # reconcile, and no other run asks this miner while the claim lives. The lease covers the
        # request and a release after it.
        self.store.claim(name=name, hotkey=neuron.hotkey, uid=neuron.uid, ip=neuron.ip, regkey=public_pem,
                         ssh_key=docker_req["ssh_key"], resource=candidate.resource, timeline=timeline,
                         owner=self.owner, lease_seconds=2 * timeout + LEASE_MARGIN_S, request=request)
        attempt = {"hotkey": neuron.hotkey, "uid": neuron.uid}
        reply = self.query.allocate(neuron, device_requirement, timeline, public_pem, docker_req, timeout)
        attempt["elapsed"] = round(reply.elapsed, 3)
        if reply.status is True:
            try:
                credentials = _crypto.decrypt_credentials(private_pem, reply.output.get("info"))
            except CryptoError as error:
                attempt.update(result="released", reason=error.message)
                self._release_after_failure(neuron, public_pem, error.message, attempt, timeout)
                return attempt
            credentials["port"] = _protocol.reply_port(reply.output, credentials.get("port"))
            try:
                self.store.activate(neuron.hotkey, public_pem, credentials)
            except NotFound as lost:
                # Our claim was settled by another run while we waited (our lease ran out): give the box back.
                attempt.update(result="released", reason="claim lost before the grant arrived: %s" % lost.message)
                self._release_after_failure(neuron, public_pem, lost.message, attempt, timeout)
                return attempt
            attempt["result"] = "allocated"
            return attempt
        if reply.status is False:
            self.store.remove(neuron.hotkey, public_pem)
            attempt.update(result="refused", reason="the miner refused the allocation")
            return attempt
        # No answer: the miner may still have granted it, so release with our key to be sure.
        attempt.update(result="no answer", reason=reply.describe())
        self._release_after_failure(neuron, public_pem, reply.describe(), attempt, timeout)
        return attempt

    def _release_after_failure(self, neuron, public_pem, why, attempt, timeout):
        reply = self.query.deallocate(neuron, public_pem, timeout)
        if reply.answered:
            self.store.remove(neuron.hotkey, public_pem)
            return
        try:
            self.store.mark_releasing(neuron.hotkey, public_pem, "%s; release unanswered: %s" % (why, reply.describe()))
            attempt["kept_for_retry"] = True
        except NotFound:
            # The record is gone (another run settled it): nothing to retry from here.
            attempt["release_unconfirmed"] = reply.describe()

    def reconcile(self, timeout, check_mode=False):
        """Settle records whose run is gone or whose lease expired; returns what was (or would be) done.

        Records of live runs are left alone: they are theirs to finish.
        """
        outcomes = []
        now = time.time()
        for record in self.store.pending() + self.store.allocations(state="releasing"):
            why = record.abandoned(now)
            if why is None:
                continue
            neuron = self.neurons().get(record.hotkey)
            item = {"hotkey": record.hotkey, "name": record.name, "state": record.state, "changed": False,
                    "why": why}
            if neuron is None:
                item["result"] = "kept: the miner left the metagraph"
            elif check_mode:
                item.update(result="would ask the miner to release this key", changed=True)
            elif self.store.take_over(record, self.owner, timeout + LEASE_MARGIN_S) is None:
                continue  # another run took it first
            else:
                reply = self.query.deallocate(neuron, record.regkey, timeout)
                if reply.answered:
                    # True: released now; False: the miner no longer holds this key (never granted or expired).
                    self.store.remove(record.hotkey, record.regkey)
                    item.update(changed=True, result="released" if reply.status
                                else "not held by the miner; record dropped")
                else:
                    self.store.mark_releasing(record.hotkey, record.regkey, "reconcile: %s" % reply.describe())
                    item["result"] = "kept for retry: %s" % reply.describe()
            outcomes.append(item)
        return outcomes

    # -- deallocation
    def resolve_targets(self, hotkeys, names):
        """Records for the requested hotkeys and names, plus what was not found."""
        found, unknown, absent = {}, [], []
        for hotkey in hotkeys:
            record = self.store.get(hotkey=hotkey)
            if record is not None:
                found[record.hotkey] = record
            elif self._known_on_network(hotkey):
                absent.append(hotkey)
            else:
                unknown.append(hotkey)
        for name in names:
            record = self.store.get(name=name)
            if record is not None:
                found[record.hotkey] = record
            else:
                absent.append(name)
        return list(found.values()), unknown, absent

    def _known_on_network(self, hotkey):
        try:
            return hotkey in self.neurons()
        except NotFound:
            return False

    def deallocate(self, record, timeout, force=False):
        """Release one allocation; the record is kept (releasing) when the miner does not answer."""
        item = {"hotkey": record.hotkey, "name": record.name}
        if record.state == "pending" and record.abandoned(time.time()) is None:
            item.update(result="failed", error="the allocation is still being made by %s; retry once it has "
                        "finished" % record.owner.describe())
            return item
        neuron = self.neurons().get(record.hotkey)
        reply = self.query.deallocate(neuron, record.regkey, timeout) if neuron and record.regkey else None
        if reply is not None and reply.answered:
            self.store.remove(record.hotkey, record.regkey)
            item["result"] = "released" if reply.status else "not held by the miner any more; record removed"
            return item
        why = reply.describe() if reply is not None else (
            "the miner is not in the metagraph" if neuron is None else "the record has no public key")
        if force:
            self.store.remove(record.hotkey, record.regkey)
            item.update(result="forgotten", warning="the miner did not confirm the release (%s); it keeps "
                        "the box until its timeline ends" % why)
            return item
        self.store.mark_releasing(record.hotkey, record.regkey, why)
        item.update(result="failed", error=why)
        return item
