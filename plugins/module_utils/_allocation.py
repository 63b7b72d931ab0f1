# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The allocate and deallocate tasks as modules run them: validate everything first, then
# reconcile, act through ComputeClient, publish, and shape the result.

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked_float, checked_int
from ansible_collections.neuralinternet.compute.plugins.module_utils._records import allocation_view, stripped_entries
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MinerRefused,
    NiComputeError,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import (
    MINERS_WANDB_ENTITY,
    MINERS_WANDB_PROJECT,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._ss58 import is_ss58_address

SSH_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")


def read_ssh_public_key(value):
    """The key text, from the option's text or the first key of the file it names."""
    if value and not value.lstrip().startswith(SSH_KEY_PREFIXES):
        path = os.path.expanduser(value)
        if os.path.isfile(path):
            with open(path) as handle:
                keys = [line.strip() for line in handle if line.strip() and not line.lstrip().startswith("#")]
            return keys[0] if keys else ""
    return (value or "").strip()


def checked_public_key(option, key):
    """key when miners can install it (empty: none); BadInput naming the option otherwise."""
    if key and not key.startswith(SSH_KEY_PREFIXES):
        raise BadInput("%s is neither an OpenSSH public key nor a readable key file" % option, option=option)
    if any(char in key for char in "\r\n'"):
        # Miners write the key with echo '<key>': a second line or a quote breaks the build.
        raise BadInput("%s must be one key on one line without quotes: miners write it with echo '<key>'" % option,
                       option=option)
    return key


@dataclass
class AllocationRequest:
    name: str
    hotkey: str = None
    requirements: dict = field(default_factory=dict)
    timeline: int = 1
    ssh_public_key: str = ""
    base_image: str = "ubuntu"
    dockerfile: str = ""
    check_timeout: float = 5.0
    # Upstream's CLI waits 60 s for a grant: the miner kills, builds and runs a container.
    allocate_timeout: float = 60.0
    max_attempts: int = 3
    key_size: int = 2048
    return_password: bool = False
    min_validator_stake: float = 1024.0

    def validate(self):
        """The DeviceRequirement (None for a hotkey request); BadInput on any invalid option."""
        if not self.name or not self.name.strip():
            raise BadInput("name must not be empty")
        self.timeline = checked_int("timeline", self.timeline)
        self.check_timeout = checked_float("check_timeout", self.check_timeout)
        self.allocate_timeout = checked_float("allocate_timeout", self.allocate_timeout)
        self.max_attempts = checked_int("max_attempts", self.max_attempts)
        self.min_validator_stake = checked_float("min_validator_stake", self.min_validator_stake)
        checked_public_key("ssh_public_key", self.ssh_public_key)
        given = dict((k, v) for k, v in self.requirements.items() if v is not None)
        if self.hotkey is not None:
            if given:
                raise BadInput("hotkey and requirements (%s) are mutually exclusive" % ", ".join(sorted(given)))
            if not is_ss58_address(self.hotkey):
                raise BadInput("hotkey %r is not a valid ss58 address" % self.hotkey)
            return None
        from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement

        return DeviceRequirement.from_options(**self.requirements)

    def identity(self, requirement):
        """What this request asks for, kept with the allocation to compare with a rerun of its name."""
        if requirement is None:
            return {"hotkey": self.hotkey}
        wanted = asdict(requirement)
        if wanted["gpu_type"]:
            wanted["gpu_type"] = wanted["gpu_type"].lower()
        return {"requirements": wanted}

    def docker_requirement(self):
        return _protocol.docker_requirement(ssh_key=self.ssh_public_key, base_image=self.base_image,
                                            dockerfile=self.dockerfile)


def _mismatch(record, request, wanted):
    """Why the existing allocation record does not serve this request, or None."""
    if request.hotkey and record.hotkey != request.hotkey:
        return "it is on miner %s, not %s" % (record.hotkey, request.hotkey)
    kept = record.request
    if kept is None or kept == wanted:
        return None
    if "requirements" in kept and "requirements" in wanted:
        differ = sorted(key for key in set(kept["requirements"]) | set(wanted["requirements"])
                        if kept["requirements"].get(key) != wanted["requirements"].get(key))
        return "it was made with %s; this task asks for %s" % (
            ", ".join("%s=%s" % (key, kept["requirements"].get(key)) for key in differ),
            ", ".join("%s=%s" % (key, wanted["requirements"].get(key)) for key in differ))
    return "it was made %s; this task asks %s" % (_describe_identity(kept), _describe_identity(wanted))


def _describe_identity(identity):
    if "hotkey" in identity:
        return "for miner %s" % identity["hotkey"]
    return "by requirements"


def wandb_warnings(settings):
    """Why miners will not see what this task publishes, before anything is published."""
    mode = settings.effective_wandb_mode
    if mode in ("disabled", "offline"):
        return ["W&B publication is %s (wandb_mode=%s): no validator run lists this allocation, so its miner "
                "releases the box at its next W&B check (%s)" % (mode, settings.wandb_mode, settings.miner_sync_text)]
    if not settings.miners_read_these_runs:
        return ["miners read runs of %s/%s only; publishing to %s/%s keeps no allocation alive" % (
            MINERS_WANDB_ENTITY, MINERS_WANDB_PROJECT, settings.wandb_entity, settings.wandb_project)]
    return []


def require_wandb_for_allocation(settings):
    """wandb_mode auto without credentials: allocating would hand over a box its miner soon takes back."""
    if settings.wandb_mode == "auto" and settings.wandb_credentials() is None:
        raise BadInput("no W&B credentials (wandb_api_key, WANDB_API_KEY or ~/.netrc for %s): SN27 miners keep an "
                       "allocation only while a staked validator's signed W&B run lists it, so the miner would "
                       "release the box at its next W&B check (%s). Set wandb_api_key, or "
                       "wandb_mode: disabled to allocate anyway" % (settings.wandb_host,
                                                                    settings.miner_sync_text))


def publication_warnings(settings, wandb_result):
    """A failed publication, its consequence and its deadline."""
    if wandb_result.get("published") or wandb_result.get("mode") == "disabled":
        return []
    deadline = time.strftime("%H:%M UTC", time.gmtime(time.time() + settings.miner_sync_period))
    return ["W&B publication failed (%s): miners that find no staked validator listing them release their box at "
            "their next W&B check (by about %s); the next task of any nicompute module publishes again"
            % (wandb_result.get("error"), deadline)]


# A grant lost to a miner's W&B check before the publication reached it is allocated again: the
# window is about a second, so on the real subnet (a check every ~15 min) one retry is plenty; a
# third round covers a fast test network on a loaded machine.
PUBLICATION_ROUNDS = 3


def publish_and_warn(client, result):
    """Publish what changed (or what an earlier task failed to publish) and add the warnings."""
    result["wandb"] = client.publish()
    result["warnings"] = result.get("warnings", []) + publication_warnings(client.settings, result["wandb"])
    return result


def allocate(settings, request, check_mode=False):
    """Run the allocate task; returns the module result or raises NiComputeError."""
    requirement = request.validate()
    settings.validate()
    require_wandb_for_allocation(settings)
    wanted = request.identity(requirement)
    client = ComputeClient(settings, check_mode=check_mode)
    client.check_caller(request.min_validator_stake)
    # Before any miner is contacted: a grant must never meet a database that cannot record it.
    client.store.require_writable()
    reconciled = client.reconcile(request.check_timeout, check_mode)
    result = {"changed": any(item["changed"] for item in reconciled), "reconciled": reconciled,
              "warnings": wandb_warnings(settings)}
    record, warning = client.live_allocation(request.name, request.check_timeout, check_mode)
    if warning:
        result["warnings"].append(warning)
    if record is not None:
        mismatch = _mismatch(record, request, wanted)
        if mismatch:
            raise BadInput("allocation %r already exists, but %s: release it first (nicompute_deallocate "
                           "names=%s) or choose another name" % (request.name, mismatch, request.name),
                           allocation=allocation_view(record))
        if record.timeline is not None and record.timeline != request.timeline:
            result["warnings"].append(
                "allocation %r keeps its timeline of %s days; this task asks for %s (an allocation cannot be "
                "extended)" % (request.name, record.timeline, request.timeline))
        result["allocation"] = allocation_view(record, request.return_password)
        return drop_empty_warnings(result if check_mode else publish_and_warn(client, result))
    if check_mode:
        ranking = client.check_availability(client.rank(requirement, request.hotkey), request.check_timeout)
        result.update(ranking.report(), allocation=None)
        if ranking.candidates:
            best = ranking.candidates[0].describe()
            result.update(changed=True, diff={"before": {}, "after": {"name": request.name, "hotkey": best["hotkey"],
                                                                      "uid": best["uid"],
                                                                      "resource": best["resource"]}})
        return drop_empty_warnings(result)
    for _round in range(PUBLICATION_ROUNDS):
        record, report = client.allocate(request.name, requirement, request.hotkey, request.timeline,
                                         request.docker_requirement(), request.check_timeout,
                                         request.allocate_timeout, request.max_attempts, request.key_size, wanted)
        result.update(report)
        if record is None:
            break
        publish_and_warn(client, result)
        lost = client.lost_before_publication(record, request.check_timeout, result["wandb"])
        if not lost:
            break
        # The miner read W&B between its grant and our publication and let the box go (v1.8.3
        # miners have no grace period): nothing leaked; try again.
        result["warnings"].append(lost)
        record = None
    if record is None:
        publish_and_warn(client, result)
        wanted = "miner %s" % request.hotkey if request.hotkey else requirement.describe()
        raise MinerRefused("no miner could be allocated for %r (%s): %d attempts failed, %d miners rejected, "
                           "%d candidates not tried" % (request.name, wanted, len(report["attempts"]),
                                                        len(report["rejected"]), len(report["candidates"])),
                           **drop_empty_warnings(result))
    view = allocation_view(record, request.return_password)
    result.update(changed=True, allocation=view,
                  diff={"before": {}, "after": dict((k, v) for k, v in view.items() if k != "password")})
    return drop_empty_warnings(result)


def drop_empty_warnings(result):
    if not result.get("warnings"):
        result.pop("warnings", None)
    return result


def deallocation_targets(hotkeys, names):
    """(hotkeys, names) stripped; BadInput for an empty entry or no target at all."""
    targets = dict((option, stripped_entries(option, values, ": name each allocation to release"))
                   for option, values in (("hotkeys", hotkeys), ("names", names)))
    if not targets["hotkeys"] and not targets["names"]:
        raise BadInput("nothing to release: give at least one hotkey or name")
    for hotkey in targets["hotkeys"]:
        if not is_ss58_address(hotkey):
            raise BadInput("hotkey %r is not a valid ss58 address" % hotkey)
    return targets["hotkeys"], targets["names"]


def deallocate(settings, hotkeys, names, force=False, timeout=60.0, check_mode=False):
    """Run the deallocate task: unpublish at once, then ask each miner to release.

    A miner that does not confirm keeps its record (releasing, unpublished) for later runs; it
    releases the box itself at its next W&B check. The task fails only when the unpublished list
    did not reach W&B, since then nothing makes the miner let go.
    """
    hotkeys, names = deallocation_targets(hotkeys, names)
    if not isinstance(force, bool):
        raise BadInput("force must be true or false, got %r" % (force,), option="force")
    timeout = checked_float("timeout", timeout)
    settings.validate()
    client = ComputeClient(settings, check_mode=check_mode)
    client.store.require_writable()
    if not check_mode:
        # Every task unpublishes what is past its timeline.
        client.store.expire()
    records, unknown, absent = client.resolve_targets(hotkeys, names)
    if unknown and not records and not absent:
        raise BadInput("none of the hotkeys is allocated or known on netuid %s: %s"
                       % (settings.netuid, ", ".join(unknown)), unknown=unknown)
    result = {"changed": bool(records), "unknown": unknown, "absent": absent,
              "diff": {"before": {"allocations": sorted(r.name or r.hotkey for r in records)}, "after": {}}}
    if check_mode:
        result["deallocations"] = [{"hotkey": r.hotkey, "name": r.name, "result": "would release"}
                                   for r in records]
        return result
    outcomes = [client.deallocate(record, timeout, force) for record in records]
    result["deallocations"] = outcomes
    kept = sorted(o["name"] or o["hotkey"] for o in outcomes if o["result"] in ("failed", "unpublished"))
    result["diff"]["after"] = {"allocations": kept} if kept else {}
    result["changed"] = any(o["result"] != "failed" for o in outcomes)
    result["warnings"] = [o["warning"] for o in outcomes if o.get("warning")]
    publish_and_warn(client, result)
    drop_empty_warnings(result)
    failed = [o for o in outcomes if o["result"] == "failed"]
    if failed:
        raise NiComputeError("%d of %d deallocations could not start: %s" % (
            len(failed), len(outcomes), "; ".join(o["error"] for o in failed)), **result)
    unpublished = [o for o in outcomes if o["result"] in ("unpublished", "forgotten")]
    if unpublished and not result["wandb"]["published"] and result["wandb"]["mode"] != "disabled":
        raise NiComputeError("%d of %d miners did not confirm the release and the unpublished list did not reach "
                             "W&B (%s), so nothing makes them let go yet; the records are kept (releasing) and the "
                             "next task publishes again" % (len(unpublished), len(outcomes),
                                                            result["wandb"]["error"]), **result)
    return result
