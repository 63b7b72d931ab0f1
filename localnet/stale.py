"""Drop availability and status queries whose client has already given up.

A dendrite signs every request with a nonce (its clock in nanoseconds when it sent) and says how
long it waits (the `timeout` header). When a busy axon worker reaches a request after
nonce + timeout, nobody is waiting for the answer; a query without side effects (`checking`: is
the miner free, does it still hold my key) is then answered 408 at once, before bittensor's
middleware (header parsing, signatures, priority, the reply's headers) spends milliseconds of CPU
on it. Served in full, such a backlog keeps the worker busy into the next client's requests.

Allocate, deallocate and docker requests are never dropped, however late: a v1.8.3 miner runs a
late allocate to its end and grants it (the `late` fault and the rule that localnet is as strict
as real v1.8.3 miners depend on that), and a late release or docker action still acts.
"""

import json
import time

STALE_STATUS = 408
NONCE_HEADER = b"bt_header_dendrite_nonce"
TIMEOUT_HEADER = b"timeout"


def client_deadline_ns(headers):
    """When the client stops waiting (ns since the epoch), from ASGI headers; None when they do not say."""
    nonce = timeout = None
    for name, value in headers:
        if name == NONCE_HEADER:
            nonce = value
        elif name == TIMEOUT_HEADER:
            timeout = value
    try:
        return int(nonce) + int(float(timeout) * 1e9)
    except (TypeError, ValueError):
        return None


def is_query(body):
    """True for a request with `checking` set: an availability or status query, no side effects."""
    try:
        return json.loads(body).get("checking") is True
    except (ValueError, AttributeError):
        return False


async def _read_request(receive):
    """The request's ASGI messages up to the end of its body (or a disconnect)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body"):
            return messages


def _replay(messages, receive):
    """A receive() that hands out messages first, then what the connection brings."""
    pending = list(messages)

    async def replayed():
        return pending.pop(0) if pending else await receive()
    return replayed


async def _answer_stale(send, late_seconds):
    body = json.dumps({"message": "query dropped: its client gave up %.2fs ago" % late_seconds}).encode("utf-8")
    await send({"type": "http.response.start", "status": STALE_STATUS,
                "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})


class DropStaleQueries:
    """ASGI wrapper in front of an axon's app: stale queries get 408, everything else goes through."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        deadline = client_deadline_ns(scope["headers"]) if scope["type"] == "http" else None
        now = time.time_ns()
        if deadline is None or now <= deadline:
            return await self.app(scope, receive, send)
        # Past the deadline: only now is the body worth reading.
        messages = await _read_request(receive)
        if is_query(b"".join(message.get("body", b"") for message in messages)):
            return await _answer_stale(send, (now - deadline) / 1e9)
        return await self.app(scope, _replay(messages, receive), send)
