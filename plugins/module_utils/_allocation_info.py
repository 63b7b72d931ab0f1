# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# The Registration CLI's list_a and list_ah: this validator's allocations with their state,
# time left and SSH command; optionally only those whose miner still serves, and optionally
# each miner asked at once whether it still holds our key. Reads only: a listing never
# changes a record, so what the miners answer is reported by the rules the allocating and
# deallocating tasks apply, not written.

from __future__ import annotations

import time

from ansible_collections.neuralinternet.compute.plugins.module_utils._bounds import checked_float
from ansible_collections.neuralinternet.compute.plugins.module_utils._errors import BadInput
from ansible_collections.neuralinternet.compute.plugins.module_utils._protocol import status_request
from ansible_collections.neuralinternet.compute.plugins.module_utils._records import allocation_view, stripped_entries
from ansible_collections.neuralinternet.compute.plugins.module_utils._store_read import StoreReader

# Records whose miner may still hold a box: asked with check_status.
CHECKED_STATES = ("active", "unconfirmed", "releasing")
PAUSED_REASON = ("not held, and the record says the container is paused (nicompute_container): a paused "
                 "container answers so, so it proves nothing")


def allocation_row(record, neurons, now, show_credentials=False):
    """One allocation as the listing returns it (the password only when asked for)."""
    row = allocation_view(record, show_credentials)
    neuron = neurons.get(record.hotkey) if neurons is not None else None
    expires_at = record.expires_at
    row.update(
        uid=record.uid if record.uid is not None else getattr(neuron, "uid", None),
        expires_at=expires_at,
        time_left=None if expires_at is None else max(0, int(expires_at - now)),
        error=record.error,
        made_here=record.name is not None,
        in_metagraph=None if neurons is None else neuron is not None,
        serving=None if neurons is None else bool(neuron is not None and neuron.serving),
        status=None,
        status_reason=None,
    )
    return row


def judge_reply(record, reply, now, settings):
    """(status, why) of a miner's answer, by the rules the other tasks apply.

    "Not held" proves little (a paused container or a docker error answers so too): a published
    allocation is released only once it said so for unconfirmed_grace seconds, an unpublished one
    only once a miner W&B sync period has passed since it was unpublished. Where the record says
    the container is paused, "not held" is what the miner must answer: status "paused".
    """
    if reply is None:
        return "unreachable", "the miner is not in the metagraph"
    if reply.status is True:
        return "live", None
    if reply.status is None:
        return "unreachable", reply.describe()
    if record.container == "paused":
        # A paused container answers "not held" whoever holds it: no evidence either way.
        return "paused", PAUSED_REASON
    if record.state == "releasing":
        since = record.unpublished_at or record.created_at or now
        if now - since >= settings.miner_sync_period:
            return "released", "not held, and unpublished since %s" % _utc(since)
        return "unconfirmed", "not held; unpublished since %s, less than a W&B sync period" % _utc(since)
    since = record.unconfirmed_since
    if since is not None and now - since >= settings.unconfirmed_grace:
        return "released", "not held since %s (longer than unconfirmed_grace)" % _utc(since)
    return "unconfirmed", "the miner answered: not held%s" % ("" if since is None else " (since %s)" % _utc(since))


def _utc(epoch):
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch))


def ask_miners(client, records, timeout):
    """{hotkey: MinerReply or None (not in the metagraph)}, every miner asked at once."""
    neurons = client.neurons()
    asked = [record for record in records if record.regkey and record.hotkey in neurons]
    replies = client.query.send([(neurons[r.hotkey], status_request(r.regkey)) for r in asked], timeout)
    answers = dict((record.hotkey, None) for record in records)
    answers.update(zip((record.hotkey for record in asked), replies))
    return answers


def allocation_info(settings, names=None, in_metagraph=False, check_status=False, show_credentials=False,
                    timeout=5.0):
    """Run the allocation listing (read only); returns the module result or raises NiComputeError."""
    names = stripped_entries("names", names)
    for option, value in (("in_metagraph", in_metagraph), ("check_status", check_status),
                          ("show_credentials", show_credentials)):
        if not isinstance(value, bool):
            raise BadInput("%s must be true or false, got %r" % (option, value), option=option)
    timeout = checked_float("timeout", timeout)
    settings.validate()
    client = None
    if in_metagraph or check_status:
        from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
        client = ComputeClient(settings)
    with StoreReader(settings.db_path) as store:
        records = [r for r in store.allocations() if not names or r.name in names]
    absent = sorted(set(names) - set(record.name for record in records))
    neurons = client.neurons() if in_metagraph or check_status else None
    now = time.time()
    rows = [allocation_row(record, neurons, now, show_credentials) for record in records]
    if in_metagraph:
        kept = [i for i, row in enumerate(rows) if row["serving"]]
        records, rows = [records[i] for i in kept], [rows[i] for i in kept]
    if check_status:
        asked = [record for record in records if record.state in CHECKED_STATES]
        answers = ask_miners(client, asked, timeout)
        for record, row in zip(records, rows):
            if record.hotkey not in answers:
                continue
            if not record.regkey:
                row["status_reason"] = "no public key recorded: the miner cannot be asked"
            else:
                row["status"], row["status_reason"] = judge_reply(record, answers[record.hotkey], now, settings)
    return {"changed": False, "allocations": rows, "absent": absent}
