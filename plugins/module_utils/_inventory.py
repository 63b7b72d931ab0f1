# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# What the inventory plugin turns into hosts: this validator's allocations that can be logged
# into (active or unconfirmed; pending, releasing and expired ones never), as plain data - one
# raw entry per allocation, which is what the plugin caches - and the host variables made from
# an entry. Reads only.

from __future__ import annotations

import os
import re
from collections import namedtuple

from ansible_collections.neuralinternet.compute.plugins.module_utils._specs import parse_specs
from ansible_collections.neuralinternet.compute.plugins.module_utils._resources import specs_columns
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore

HOST_STATES = ("active", "unconfirmed")
# What an inventory host name may hold; anything else in an allocation name becomes "_".
_NOT_IN_HOST_NAME = re.compile(r"[^A-Za-z0-9_.-]")


def host_name(entry):
    """The allocation's name, or a short form of its miner's hotkey for one the upstream CLI made."""
    if entry["name"]:
        return _NOT_IN_HOST_NAME.sub("_", entry["name"])
    return "nicompute-%s-%s" % (entry["hotkey"][:6], entry["hotkey"][-4:])


def _key_body(public_key):
    """An OpenSSH public key's type and base64 body, without its comment; None when it is no key."""
    fields = (public_key or "").split()
    return tuple(fields[:2]) if len(fields) >= 2 else None


def public_key_files(private_key_files):
    """[(private key path, its public key's type and body)] of the files whose .pub can be read, read once."""
    found = []
    for path in private_key_files:
        private = os.path.expanduser(path)
        try:
            with open(private + ".pub") as handle:
                body = _key_body(handle.read())
        except OSError:
            continue
        if body is not None and os.path.isfile(private):
            found.append((private, body))
    return found


def private_key_for(public_key, key_files):
    """The first private key of key_files (from public_key_files) whose public half is public_key, or None."""
    wanted = _key_body(public_key)
    return next((private for private, body in key_files if wanted is not None and body == wanted), None)


def allocation_entries(db_path, with_password=False):
    """[raw entry] of the allocations that can be hosts, sorted by hotkey, with their miners' specs.

    The password is read only when asked for: the entries are what an inventory cache keeps.
    """
    with AllocationStore(db_path, reader=True) as store:
        specs = store.miner_specs()
        records = [record for record in store.allocations() if record.state in HOST_STATES]
    entries = []
    for record in records:
        details = record.details or {}
        parsed, _invalid = parse_specs(specs[record.hotkey]) if record.hotkey in specs else (None, None)
        entries.append({
            "name": record.name, "hotkey": record.hotkey, "uid": record.uid, "state": record.state,
            "ip": details.get("ip", record.ip), "port": details.get("port"), "username": details.get("username"),
            "password": details.get("password") if with_password else None, "ssh_key": record.ssh_key or details.get("ssh_key"),
            "resource": details.get("resource", record.resource), "regkey": record.regkey,
            "created_at": record.created_at, "expires_at": record.expires_at,
            "gpu": dict((key, value) for key, value in specs_columns(parsed).items()
                        if key in ("gpu_name", "gpu_count", "gpu_memory_gb", "gpu_memory_mib")),
        })
    return entries


def host_variables(entry, key_files=(), use_password=False):
    """The host's connection variables and nicompute_* facts (no secret unless use_password)."""
    variables = {
        "ansible_host": entry["ip"],
        "nicompute_name": entry["name"],
        "nicompute_hotkey": entry["hotkey"],
        "nicompute_uid": entry["uid"],
        "nicompute_resource": entry["resource"],
        "nicompute_gpu_name": entry["gpu"]["gpu_name"],
        "nicompute_gpu_count": entry["gpu"]["gpu_count"],
        "nicompute_gpu_memory_gb": entry["gpu"]["gpu_memory_gb"],
        "nicompute_state": entry["state"],
        "nicompute_created_at": entry["created_at"],
        "nicompute_expires_at": entry["expires_at"],
    }
    if entry.get("status") is not None:
        variables["nicompute_status"] = entry["status"]
    if entry["port"] is not None:
        variables["ansible_port"] = entry["port"]
    if entry["username"]:
        variables["ansible_user"] = entry["username"]
    key_file = private_key_for(entry["ssh_key"], key_files)
    if key_file:
        variables["ansible_ssh_private_key_file"] = key_file
    if use_password and entry["password"]:
        variables["ansible_password"] = entry["password"]
    return variables


def live_entries(settings, entries, timeout):
    """The entries whose miner answers, now, that it holds our key (each asked at once, within timeout).

    One "not held" proves little about the allocation (it stays recorded and published), but a host
    list is for logging in now: only entries whose miner holds the key stay, with status "live".
    Loads the wallet and bittensor: the hotkey signs the requests.
    """
    from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation_info import ask_miners
    from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient

    answers = ask_miners(ComputeClient(settings), [_MinerKey(entry["hotkey"], entry["regkey"]) for entry in entries],
                         timeout)
    return [dict(entry, status="live") for entry in entries
            if getattr(answers.get(entry["hotkey"]), "status", None) is True]


# What ask_miners reads of a record: the miner and the allocation's public key.
_MinerKey = namedtuple("_MinerKey", "hotkey regkey")
