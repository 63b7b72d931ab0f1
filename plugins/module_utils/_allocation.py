# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The allocate and deallocate tasks as modules run them: validate everything first, then
# reconcile, act through ComputeClient, publish, and shape the result.

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import (
    BadInput,
    MinerRefused,
    NiComputeError,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import DeviceRequirement
from ansible_collections.neuralinternet.compute.plugins.module_utils._ss58 import is_ss58_address

SSH_KEY_PREFIXES = ("ssh-", "ecdsa-", "sk-")


def read_ssh_public_key(value):
    """The key text, from the option's text or the file it names."""
    if value and not value.lstrip().startswith(SSH_KEY_PREFIXES):
        path = os.path.expanduser(value)
        if os.path.isfile(path):
            with open(path) as handle:
                return handle.read().strip()
    return (value or "").strip()


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
    allocate_timeout: float = 30.0
    max_attempts: int = 3
    key_size: int = 2048
    return_password: bool = False

    def validate(self):
        """The DeviceRequirement (None for a hotkey request); BadInput on any invalid option."""
        if not self.name or not self.name.strip():
            raise BadInput("name must not be empty")
        if self.timeline is None or self.timeline <= 0:
            raise BadInput("timeline must be a positive number of days, got %s" % self.timeline)
        for option in ("check_timeout", "allocate_timeout"):
            if getattr(self, option) <= 0:
                raise BadInput("%s must be positive, got %s" % (option, getattr(self, option)))
        if self.max_attempts < 1:
            raise BadInput("max_attempts must be at least 1, got %s" % self.max_attempts)
        if self.ssh_public_key and not self.ssh_public_key.startswith(SSH_KEY_PREFIXES):
            raise BadInput("ssh_public_key is neither an OpenSSH public key nor a readable key file")
        given = dict((k, v) for k, v in self.requirements.items() if v is not None)
        if self.hotkey is not None:
            if given:
                raise BadInput("hotkey and requirements (%s) are mutually exclusive" % ", ".join(sorted(given)))
            if not is_ss58_address(self.hotkey):
                raise BadInput("hotkey %r is not a valid ss58 address" % self.hotkey)
            return None
        return DeviceRequirement.from_options(**self.requirements)

    def docker_requirement(self):
        return _protocol.docker_requirement(ssh_key=self.ssh_public_key, base_image=self.base_image,
                                            dockerfile=self.dockerfile)


def allocation_view(record, return_password=False):
    """What a module returns of an allocation record; the password only when asked for."""
    details = record.details or {}
    port = details.get("port", _protocol.DEFAULT_SSH_PORT)
    username = details.get("username", "root")
    view = {
        "name": record.name,
        "hotkey": record.hotkey,
        "uid": record.uid,
        "ip": details.get("ip", record.ip),
        "port": port,
        "username": username,
        "resource": details.get("resource", record.resource),
        "state": record.state,
        "created_at": record.created_at,
        "timeline": record.timeline,
        "ssh_command": "ssh -p %s %s@%s" % (port, username, details.get("ip", record.ip)),
    }
    if return_password:
        view["password"] = details.get("password")
    return view


def allocate(settings, request, check_mode=False):
    """Run the allocate task; returns the module result or raises NiComputeError."""
    requirement = request.validate()
    client = ComputeClient(settings)
    client.check_caller()
    reconciled = client.reconcile(request.check_timeout, check_mode)
    result = {"changed": any(item["changed"] for item in reconciled), "reconciled": reconciled}
    record, warning = client.live_allocation(request.name, request.check_timeout, check_mode)
    if warning:
        result["warnings"] = [warning]
    if record is not None:
        if request.hotkey and record.hotkey != request.hotkey:
            raise BadInput("allocation %r already exists on miner %s, not %s" % (request.name, record.hotkey,
                                                                                 request.hotkey))
        result["allocation"] = allocation_view(record, request.return_password)
        return result
    if check_mode:
        ranking = client.check_availability(client.rank(requirement, request.hotkey), request.check_timeout)
        result.update(ranking.report(), allocation=None)
        if ranking.candidates:
            best = ranking.candidates[0].describe()
            result.update(changed=True, diff={"before": {}, "after": {"name": request.name, "hotkey": best["hotkey"],
                                                                      "uid": best["uid"],
                                                                      "resource": best["resource"]}})
        return result
    record, report = client.allocate(request.name, requirement, request.hotkey, request.timeline,
                                     request.docker_requirement(), request.check_timeout,
                                     request.allocate_timeout, request.max_attempts, request.key_size)
    result.update(report)
    if record is None:
        wanted = "miner %s" % request.hotkey if request.hotkey else requirement.describe()
        raise MinerRefused("no miner could be allocated for %r (%s): %d candidates available, %d rejected, "
                           "%d attempts failed" % (request.name, wanted, len(report["candidates"]),
                                                   len(report["rejected"]), len(report["attempts"])),
                           **report)
    view = allocation_view(record, request.return_password)
    result.update(changed=True, allocation=view, wandb=client.publish(),
                  diff={"before": {}, "after": dict((k, v) for k, v in view.items() if k != "password")})
    return result


def deallocate(settings, hotkeys, names, force=False, timeout=12.0, check_mode=False):
    """Run the deallocate task; failures to release are reported after every target was tried."""
    for hotkey in hotkeys:
        if not is_ss58_address(hotkey):
            raise BadInput("hotkey %r is not a valid ss58 address" % hotkey)
    if timeout <= 0:
        raise BadInput("timeout must be positive, got %s" % timeout)
    client = ComputeClient(settings)
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
    kept = sorted(o["name"] or o["hotkey"] for o in outcomes if o["result"] == "failed")
    result["diff"]["after"] = {"allocations": kept} if kept else {}
    result["changed"] = any(o["result"] != "failed" for o in outcomes)
    warnings = [o["warning"] for o in outcomes if o.get("warning")]
    if warnings:
        result["warnings"] = warnings
    if result["changed"]:
        result["wandb"] = client.publish()
    failed = [o for o in outcomes if o["result"] == "failed"]
    if failed:
        raise NiComputeError("%d of %d deallocations were not confirmed by their miner; the records are "
                             "kept (state releasing) for a retry" % (len(failed), len(outcomes)), **result)
    return result
