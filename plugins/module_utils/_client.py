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
    BadInput,
    Claimed,
    CryptoError,
    NotFound,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._owner import Owner
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import PUBLISHED_STATES, AllocationStore

# Added to a claim's lease beyond the requests it covers: database waits, key generation, a slow host.
LEASE_MARGIN_S = 60.0


@dataclass
class Candidate:
    neuron: object
    resource: str
    score: float = None
    reason: str = None
    # Whether its availability was asked: the ranked check stops once the best free miner is known.
    checked: bool = False

    def describe(self):
        item = {"hotkey": self.neuron.hotkey, "uid": self.neuron.uid, "ip": self.neuron.ip,
                "resource": self.resource, "score": self.score,
                "incentive": self.neuron.incentive, "checked": self.checked}
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
            self._store = AllocationStore(path, create=create, in_memory=in_memory,
                                          planning=self.check_mode and not in_memory)
        return self._store

    @property
    def network(self):
        if self._network is None:
            from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
            self._network = _network
        return self._network

    def neurons(self):
        if self._neurons is None:
            if self._metagraph is not None:
                self._neurons = dict((n.hotkey, n) for n in self._metagraph.neurons())
            else:
                # Imported when first needed, as below: Ansible compiles every module_utils a task
                # imports at every run, and a release by name needs neither the metagraph nor specs.
                from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import (
                    neurons_by_hotkey,
                )
                self._neurons = neurons_by_hotkey(self.settings)
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

    def check_caller(self, min_stake=0.0):
        """Load the wallet and refuse early when its hotkey is not registered on the subnet, or its
        total stake is below min_stake (miners honour only W&B runs of validators above it)."""
        hotkey = self.keypair.ss58_address
        neuron = self.neurons().get(hotkey)
        if neuron is None:
            raise NotFound("hotkey %s of wallet %s is not registered on netuid %s; miners refuse "
                           "unregistered callers" % (hotkey, self.settings.wallet_name, self.settings.netuid))
        if neuron.stake < min_stake:
            raise BadInput("hotkey %s has a total stake of %g on netuid %s, below min_validator_stake %g: miners "
                           "keep an allocation only while a validator above that stake lists it in its signed W&B "
                           "run, so the miner would release the box at its next W&B check (%s). "
                           "Stake more, or set min_validator_stake: 0 to allocate anyway"
                           % (hotkey, neuron.stake, self.settings.netuid, min_stake,
                              self.settings.miner_sync_text), stake=neuron.stake)
        return hotkey

    def neuron(self, hotkey):
        neuron = self.neurons().get(hotkey)
        if neuron is None:
            raise NotFound("hotkey %s is not in the metagraph of netuid %s" % (hotkey, self.settings.netuid))
        return neuron

    # -- W&B
    def publish(self):
        """Publish the published states' hotkeys unless W&B already has exactly these lists.

        Any task of any module calls this, so a failed publication is redone by the next task.
        """
        mode = self.settings.effective_wandb_mode
        if mode == "disabled":
            return {"mode": "disabled", "published": False, "error": None}
        lists = {"allocated_hotkeys": self.store.allocated_hotkeys(), "penalized_hotkeys": sorted(self.store.penalized())}
        last = self.store.last_publication() or {}
        if last.get("ok") and last.get("mode") == mode and all(last.get(key) == value for key, value in lists.items()):
            return dict(mode=mode, published=True, error=None, unchanged=True, run_id=last.get("run_id"), **lists)
        from ansible_collections.neuralinternet.compute.plugins.module_utils._sync import WandbPublisher
        result = WandbPublisher(self.settings, self.keypair.ss58_address, self.keypair.sign, self.store).publish(lists)
        self.store.record_publication(dict(lists, mode=mode, ok=bool(result["published"]), error=result["error"],
                                           run_id=result.get("run_id"), at=time.time()))
        return result

    # -- ranking
    def rank(self, requirement=None, hotkey=None):
        """Every miner as a candidate or a rejection with its reason, best candidate first."""
        from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import (
            DeviceRequirement,
            gpu_summary,
            parse_specs,
        )

        ranking = Ranking()
        requirement = requirement or DeviceRequirement.from_options()
        specs_by_hotkey = self.store.miner_specs()
        if not specs_by_hotkey and not hotkey:
            raise NotFound("database %s holds no miner specs (table miner_details is empty): point db_path at the "
                           "validator's database.db" % self.store.path, path=self.store.path)
        scores = self.store.scores()
        penalized = self.store.penalized()
        taken = set(a.hotkey for a in self.store.allocations() if a.state != "expired")
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
        """Ask the ranked candidates in widening batches until the best-ranked free one is known.

        Busy or silent candidates ranked above it are rejected; the free ones that answered stay
        candidates, followed by those whose answer was not needed (checked false), in rank order.
        """
        replies = self.query.check_ranked([c.neuron for c in ranking.candidates], timeout)
        kept = []
        for candidate, reply in zip(ranking.candidates, replies):
            candidate.checked = reply is not None
            if reply is None or reply.status is True:
                kept.append(candidate)
            elif reply.status is False:
                ranking.reject(candidate, "busy (the miner reports an allocation)")
            else:
                ranking.reject(candidate, "availability check: %s" % reply.describe())
        ranking.candidates = kept
        return ranking

    # -- allocation
    def live_allocation(self, name, timeout, check_mode=False):
        """The published allocation called name, or None once it is gone; returns (record, warning).

        One "not held" proves little (a paused container or a docker error answers so too): the
        record is kept as unconfirmed, still published, and dropped only once the miner has said so
        for unconfirmed_grace seconds. A miner that does not answer keeps the record. Where the record
        says the container is paused (nicompute_container), "not held" is expected and changes nothing.
        """
        record = self.store.get(name=name)
        if record is None or record.state not in PUBLISHED_STATES:
            return None, None
        neuron = self.neurons().get(record.hotkey)
        if neuron is None:
            return record, "miner %s is no longer in the metagraph" % record.hotkey
        reply = self.query.still_allocated(neuron, record.regkey, timeout)
        if reply.status is True:
            if record.state == "unconfirmed" and not check_mode:
                record = self.store.confirm(record.hotkey, record.regkey)
            if record.container == "paused" and not check_mode:
                # Held means running: someone resumed or restarted it since it was paused.
                record = self.store.set_container_state(record.hotkey, record.regkey, "running")
            return record, None
        if reply.status is None:
            return record, "miner %s did not confirm the allocation: %s" % (record.hotkey, reply.describe())
        if record.container == "paused":
            # A paused container answers "not held" to everyone: no evidence, and the box stays ours.
            return record, ("allocation %r is paused (its miner answers \"not held\" while it is); resume it with "
                            "nicompute_container action=resume" % name)
        now = time.time()
        since = record.unconfirmed_since or now
        if now - since >= self.settings.unconfirmed_grace:
            # "Not held" for the whole grace period: the box is gone.
            if not check_mode:
                self.store.remove(record.hotkey, record.regkey)
            return None, None
        if not check_mode:
            record = self.store.mark_unconfirmed(record.hotkey, record.regkey, "the miner answered: not held")
        return record, ("miner %s answers that it does not hold %r (since %s); a paused or restarting box answers "
                        "so too, so it stays allocated and published until that lasted %d s" % (
                            record.hotkey, name, _utc(since), self.settings.unconfirmed_grace))

    def allocate(self, name, requirement, hotkey, timeline, docker_req, check_timeout,
                 allocate_timeout, max_attempts, key_bits=2048, request=None):
        """Allocate on the best available miner; returns (allocation, report).

        A miner that another run claimed meanwhile is skipped like a busy one and costs no attempt.
        """
        # The first allocation key is made while the miners are asked.
        keys = _crypto.KeyPrefetch(key_bits)
        ranking = self.check_availability(self.rank(requirement, hotkey), check_timeout)
        report = {"attempts": []}
        # a_hotkey: the miner gets upstream's minimal requirement and gives what it has.
        from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement

        device_requirement = (requirement or DeviceRequirement.from_options()).to_wire()
        remaining, tried = list(ranking.candidates), []
        while remaining and len(report["attempts"]) < max_attempts:
            if not remaining[0].checked:
                # Every free miner the last check found was tried: check the rest, still ranked.
                ranking.candidates = remaining
                remaining = list(self.check_availability(ranking, check_timeout).candidates)
                continue
            candidate = remaining.pop(0)
            try:
                outcome = self._allocate_on(name, candidate, device_requirement, timeline, docker_req,
                                            check_timeout, allocate_timeout, keys, request)
            except Claimed as claimed:
                ranking.reject(candidate, "claimed by another allocation meanwhile: %s" % claimed.message)
                continue
            if outcome is None:
                ranking.reject(candidate, "busy when asked again just before allocating")
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

    def lost_before_publication(self, record, timeout, publication):
        """Why the allocation is gone although it was just granted, or None.

        A miner that reads W&B between its grant and our publication releases the box at once
        (v1.8.3 has no grace period). Asked once the list is published; a "not held" right after
        the grant means the box is gone, and the record is removed with its key.
        """
        if not publication.get("published") or publication.get("mode") != "online":
            return None
        reply = self.query.still_allocated(self.neuron(record.hotkey), record.regkey, timeout)
        if reply.status is not False:
            return None
        self.store.remove(record.hotkey, record.regkey)
        self.publish()
        return ("miner %s released %r before the publication reached it (it read W&B in between); allocating "
                "again" % (record.hotkey, record.name))

    def _allocate_on(self, name, candidate, device_requirement, timeline, docker_req, check_timeout, timeout,
                     keys, request):
        """One attempt; None when the miner turned busy since the availability check (nothing was sent)."""
        neuron = candidate.neuron
        key = keys.take()
        public_pem = key.public_pem
        # Claimed before the request, atomically: a process killed from here on leaves evidence to
        # reconcile, and no other run asks this miner while the claim lives. The lease covers the
        # checks, the request and a release after it.
        self.store.claim(name=name, hotkey=neuron.hotkey, uid=neuron.uid, ip=neuron.ip, regkey=public_pem,
                         ssh_key=docker_req["ssh_key"], resource=candidate.resource, timeline=timeline,
                         owner=self.owner, lease_seconds=check_timeout + 2 * timeout + LEASE_MARGIN_S,
                         request=request)
        # Miners kill the current container before allocating: ask again right before the request,
        # so a box another validator took since the first check is not destroyed.
        if self.query.check_available([neuron], check_timeout)[0].status is not True:
            self.store.remove(neuron.hotkey, public_pem)
            return None
        attempt = {"hotkey": neuron.hotkey, "uid": neuron.uid}
        reply = self.query.allocate(neuron, device_requirement, timeline, public_pem, docker_req, timeout)
        attempt["elapsed"] = round(reply.elapsed, 3)
        if reply.status is True:
            try:
                credentials = key.decrypt(reply.output.get("info"))
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
        # No answer: the miner may still be building the box, and refuses a release until it stored
        # our key. The record stays, unpublished, for later runs to release (and the miner releases
        # an allocation no validator publishes at its next W&B check).
        attempt.update(result="no answer", reason=reply.describe())
        self._keep_releasing(neuron.hotkey, public_pem, "no answer to the allocation: %s" % reply.describe(), attempt)
        return attempt

    def _release_after_failure(self, neuron, public_pem, why, attempt, timeout):
        """Ask the miner to release what it granted; only "released" settles it, anything else is kept."""
        reply = self.query.deallocate(neuron, public_pem, timeout)
        if reply.status is True:
            self.store.remove(neuron.hotkey, public_pem)
            return
        self._keep_releasing(neuron.hotkey, public_pem, "%s; release: %s" % (why, reply.describe()), attempt)

    def _keep_releasing(self, hotkey, public_pem, why, attempt):
        """Keep the record, unpublished, for later runs; attempt says whether it could be kept."""
        try:
            self.store.mark_releasing(hotkey, public_pem, why)
            attempt["kept_for_retry"] = True
        except NotFound:
            # The record is gone (another run settled it): nothing to retry from here.
            attempt["kept_for_retry"] = False

    def reconcile(self, timeout, check_mode=False):
        """Settle records whose run is gone or whose lease expired, and unpublish expired allocations.

        Returns what was (or would be) done. Records of live runs are left alone: they are theirs.
        """
        outcomes = []
        now = time.time()
        for record in self.store.allocations():
            if record.state in PUBLISHED_STATES and record.expires_at is not None and record.expires_at <= now:
                outcomes.append({"hotkey": record.hotkey, "name": record.name, "state": record.state,
                                 "changed": True, "why": "its timeline ended at %s" % _utc(record.expires_at),
                                 "result": "would be unpublished as expired" if check_mode else "expired"})
        if outcomes and not check_mode:
            self.store.expire(now)
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
            elif self.store.take_over(record, self.owner, 2 * timeout + LEASE_MARGIN_S) is None:
                continue  # another run took it first
            else:
                item.update(self._settle(record, neuron, timeout, "reconcile"))
            outcomes.append(item)
        return outcomes

    def _settle(self, record, neuron, timeout, who):
        """Ask the miner to release an unpublished record; drop it when the release is confirmed, or
        when a whole W&B sync period after unpublishing the miner no longer holds the key.

        v1.8.3 miners remove a container without force, which Docker refuses while it is paused, and
        a paused container answers "not held": a box this collection paused is resumed first, and
        while it is recorded paused, "not held" never counts as released.
        """
        if record.container == "paused":
            resumed = self.query.docker_action(neuron, record.regkey, "unpause", timeout)
            if resumed.status is True:
                record = self.store.set_container_state(record.hotkey, record.regkey, "running")
        reply = self.query.deallocate(neuron, record.regkey, timeout)
        if reply.status is True:
            self.store.remove(record.hotkey, record.regkey)
            return {"changed": True, "result": "released"}
        since = record.unpublished_at or record.created_at or time.time()
        if time.time() - since >= self.settings.miner_sync_period and record.container != "paused":
            held = self.query.still_allocated(neuron, record.regkey, timeout)
            if held.status is False:
                self.store.remove(record.hotkey, record.regkey)
                return {"changed": True, "result": "released by the miner after it was unpublished"}
        self.store.mark_releasing(record.hotkey, record.regkey, "%s: %s" % (who, reply.describe()))
        return {"result": "kept for retry: the release %s; unpublished since %s, so the miner releases it at its "
                          "next W&B check" % (reply.describe(), _utc(since))}

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
        """Unpublish one allocation at once, then ask its miner to release it.

        The record stays (releasing, outside the published list) until the miner confirms, or
        until a W&B sync period after unpublishing it no longer holds the key: a miner releases
        what no validator publishes at its next check, even when it never answers us.
        """
        item = {"hotkey": record.hotkey, "name": record.name}
        if record.state == "pending" and record.abandoned(time.time()) is None:
            item.update(result="failed", error="the allocation is still being made by %s; retry once it has "
                        "finished" % record.owner.describe())
            return item
        if record.state == "expired":
            self.store.remove(record.hotkey, record.regkey)
            item["result"] = "expired; record removed"
            return item
        record = self.store.mark_releasing(record.hotkey, record.regkey, "deallocation requested")
        neuron = self.neurons().get(record.hotkey)
        if neuron is None or not record.regkey:
            settled = {"result": "kept for retry: %s" % (
                "the miner is not in the metagraph" if neuron is None else "the record has no public key")}
        else:
            settled = self._settle(record, neuron, timeout, "deallocate")
        if settled["result"].startswith("released"):
            item["result"] = settled["result"]
            return item
        if force:
            self.store.remove(record.hotkey, record.regkey)
            item.update(result="forgotten", warning="%s: the miner did not confirm the release (%s); the record is "
                        "dropped, and the miner releases the box at its next W&B check once the unpublished list "
                        "reaches W&B (or when its timeline ends)" % (record.name or record.hotkey, settled["result"]))
            return item
        item.update(result="unpublished", warning="%s: %s" % (record.name or record.hotkey, settled["result"]))
        return item


def _utc(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))
