# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The Registration CLI's p_hotkey and dp_hotkey (list_p is in _penalty_info). A penalty is a row
# in the validator's `blacklist` table, published in `penalized_hotkeys`. Upstream validators do
# not score from it (v1.8.3 reads one hard-coded validator's checklist); it keeps the miner out of
# this collection's ranking and shows in every listing.

from __future__ import annotations

import getpass
import socket
import time

from ansible_collections.neuralinternet.compute.plugins.module_utils._allocation import (
    drop_empty_warnings,
    publish_and_warn,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._records import stripped_entries
from ansible_collections.neuralinternet.compute.plugins.module_utils._ss58 import is_ss58_address

STATES = ("present", "absent")
MAX_REASON = 500


def penalty_targets(hotkeys):
    """The hotkeys stripped and deduplicated in order; BadInput for an empty or malformed entry."""
    if not hotkeys:
        raise BadInput("hotkeys is empty: name at least one miner", option="hotkeys")
    cleaned = stripped_entries("hotkeys", hotkeys)
    malformed = [hotkey for hotkey in cleaned if not is_ss58_address(hotkey)]
    if malformed:
        raise BadInput("not valid ss58 addresses: %s" % ", ".join(malformed), option="hotkeys", malformed=malformed)
    return list(dict.fromkeys(cleaned))


def check_reason(reason):
    if reason is None:
        return None
    if not isinstance(reason, str):
        raise BadInput("reason must be text, got %s" % type(reason).__name__, option="reason")
    reason = reason.strip()
    if len(reason) > MAX_REASON or any(ord(char) < 32 for char in reason):
        raise BadInput("reason must be one line of at most %d characters" % MAX_REASON, option="reason")
    return reason or None


def penalty_record(reason, now=None):
    """What the blacklist row keeps about a penalty: why, who, when."""
    return {"reason": reason, "by": "%s@%s" % (getpass.getuser(), socket.gethostname()),
            "at": time.time() if now is None else now, "source": "neuralinternet.compute"}


def _known(client, store, hotkeys):
    """The hotkeys that are in the specs table or the metagraph (the metagraph is read only when needed)."""
    specs = store.miner_specs()
    known = set(hotkey for hotkey in hotkeys if hotkey in specs)
    if len(known) < len(hotkeys):
        neurons = client.neurons()
        known |= set(hotkey for hotkey in hotkeys if hotkey in neurons)
    return known


def penalize(settings, hotkeys, state="present", reason=None, check_mode=False):
    """Run the penalty task (p_hotkey / dp_hotkey); returns the module result or raises NiComputeError."""
    hotkeys = penalty_targets(hotkeys)
    if state not in STATES:
        raise BadInput("state must be present or absent, got %r" % (state,), option="state")
    reason = check_reason(reason)
    if state == "absent" and reason is not None:
        raise BadInput("reason is kept with a penalty; it has no meaning with state=absent", option="reason")
    settings.validate()
    client = ComputeClient(settings, check_mode=check_mode)
    store = client.store
    store.require_writable()
    current = store.penalties()
    if state == "present":
        unknown = sorted(set(hotkeys) - _known(client, store, hotkeys))
        if unknown:
            raise BadInput("unknown hotkeys (neither in the validator's miner specs nor in the metagraph of netuid "
                           "%s): %s; nothing was changed" % (settings.netuid, ", ".join(unknown)), unknown=unknown)
        add = dict((hotkey, penalty_record(reason)) for hotkey in hotkeys
                   if hotkey not in current or (reason is not None and current[hotkey].get("reason") != reason))
        remove = []
    else:
        add, remove = {}, [hotkey for hotkey in hotkeys if hotkey in current]
    before = sorted(current)
    after = sorted((set(current) | set(add)) - set(remove))
    result = {"changed": bool(add or remove), "penalized": after, "added": sorted(set(add) - set(current)),
              "updated": sorted(set(add) & set(current)), "removed": sorted(remove),
              "diff": {"before": {"penalized": before}, "after": {"penalized": after}}}
    held = dict((record.hotkey, record) for record in store.allocations() if record.state != "expired")
    result["warnings"] = ["miner %s is held by allocation %s; a penalty does not release it (nicompute_deallocate "
                          "does)" % (hotkey, held[hotkey].name or "of the upstream CLI")
                          for hotkey in sorted(add) if hotkey in held]
    if check_mode:
        return drop_empty_warnings(result)
    if result["changed"]:
        result["penalized"] = sorted(store.set_penalties(add, remove))
    return drop_empty_warnings(publish_and_warn(client, result))
