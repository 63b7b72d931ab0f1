# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# What modules return of allocation records, and the list options that name them: kept apart
# from _allocation.py so that tasks which only read records do not load the client.

from __future__ import annotations

from ansible_collections.neuralinternet.compute.plugins.module_utils import _protocol
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput


def stripped_entries(option, values, hint=""):
    """The entries of a list option, stripped; BadInput naming the option when one is empty or not text."""
    cleaned = [value.strip() if isinstance(value, str) else value for value in values or []]
    if any(not isinstance(value, str) or not value for value in cleaned):
        raise BadInput("%s has an empty entry (got %r)%s" % (option, values, hint), option=option)
    return cleaned


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
