# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# bittensor's dendrite -> axon wire format (bittensor 10.x, as SN27 v1.8.3 miners serve it),
# spoken without importing bittensor: importing it costs 0.8-1.0 s of CPU and 89 MiB in every
# network task (bench/README.md, "a lighter network task"). One request is one HTTP/1.1 POST on
# its own connection, signed with the caller's sr25519 hotkey; the reply is the axon's JSON body
# and status headers. tests/unit/plugins/module_utils/test_dendrite_wire.py proves each part
# against a real bittensor Axon and Dendrite.

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sys
import time
import uuid

# The version bittensor 10.5.0 sends (its version_as_int). Axons apply the nonce rules of
# bittensor >= 7.2 to it: a first nonce must be no older than 4 s + the request's timeout.
DENDRITE_VERSION = 10005000
# Where a dendrite says it calls from; bittensor sends its external IP, which miners only log.
CALLER_IP = "0.0.0.0"
# The body hash of a synapse class without required_hash_fields (SN27's Allocate has none):
# SHA3-256 of nothing. Axons check the signature over it.
EMPTY_BODY_HASH = hashlib.sha3_256(b"").hexdigest()
# The TerminalInfo fields, in bittensor's declaration order (the JSON body carries all of them).
TERMINAL_FIELDS = ("status_code", "status_message", "process_time", "ip", "port", "version", "nonce", "uuid",
                   "hotkey", "signature")
# What bittensor's dendrite reports for failures that never produced an axon's answer.
SERVICE_UNAVAILABLE = 503
REQUEST_TIMEOUT = 408
UNPARSABLE = 422
# A reply larger than this is not an SN27 miner's answer.
MAX_REPLY_BYTES = 4 * 1024 * 1024
_SAFE_HEADER_VALUE = re.compile(r"^[\x20-\x7e]*$")


class Reply:
    """What an axon answered: status code and message as bittensor's dendrite reports them, and
    the JSON body of a 200 answer (None otherwise)."""

    __slots__ = ("status_code", "message", "body", "elapsed")

    def __init__(self, status_code, message, body=None, elapsed=0.0):
        self.status_code = status_code
        self.message = message
        self.body = body
        self.elapsed = elapsed


class WireError(Exception):
    """A reply that is not HTTP or not JSON: bittensor reports it as 422."""


class Dendrite:
    """Signed requests from one hotkey; one uuid per instance, so its nonces only ever grow."""

    def __init__(self, keypair):
        self.keypair = keypair
        self.uuid = str(uuid.uuid1())
        self._last_nonce = 0

    def _nonce(self):
        # Axons refuse a nonce not above the last one seen for (hotkey, uuid): two requests in the
        # same nanosecond tick must still differ.
        self._last_nonce = max(time.time_ns(), self._last_nonce + 1)
        return self._last_nonce

    def request(self, ip, port, axon_hotkey, synapse_name, fields, timeout):
        """(headers, body bytes) of one signed request, as bittensor's Dendrite.call builds them."""
        nonce = self._nonce()
        caller = self.keypair.ss58_address
        message = "%d.%s.%s.%s.%s" % (nonce, caller, axon_hotkey, self.uuid, EMPTY_BODY_HASH)
        signature = "0x" + self.keypair.sign(message).hex()
        dendrite = dict.fromkeys(TERMINAL_FIELDS)
        dendrite.update(ip=CALLER_IP, version=DENDRITE_VERSION, nonce=nonce, uuid=self.uuid, hotkey=caller,
                        signature=signature)
        axon = dict.fromkeys(TERMINAL_FIELDS)
        axon.update(ip=ip, port=port, hotkey=axon_hotkey)
        document = {"name": synapse_name, "timeout": float(timeout), "total_size": 0, "header_size": 0,
                    "dendrite": dendrite, "axon": axon, "computed_body_hash": ""}
        document.update(fields)
        body = json.dumps(document).encode("utf-8")
        headers = {"name": synapse_name, "timeout": str(float(timeout))}
        headers.update(("bt_header_axon_%s" % key, str(value)) for key, value in axon.items() if value is not None)
        headers.update(("bt_header_dendrite_%s" % key, str(value)) for key, value in dendrite.items()
                       if value is not None)
        # Sizes are informative only (axons log them); bittensor sends sys.getsizeof figures.
        headers["header_size"] = str(sys.getsizeof(headers))
        headers["total_size"] = str(len(body))
        headers["computed_body_hash"] = EMPTY_BODY_HASH
        return headers, body

    async def call(self, ip, port, axon_hotkey, synapse_name, fields, timeout):
        """POST one request; a Reply always, never an exception (bittensor's dendrite does the same)."""
        started = time.monotonic()
        try:
            headers, body = self.request(ip, port, axon_hotkey, synapse_name, fields, timeout)
            for value in headers.values():
                if not _SAFE_HEADER_VALUE.match(value):
                    raise ValueError("a header value holds a control character: %r" % value)
            reply = await asyncio.wait_for(_exchange(ip, port, synapse_name, headers, body), timeout)
        except asyncio.TimeoutError:
            reply = Reply(REQUEST_TIMEOUT, "Request timeout after %s seconds" % timeout)
        except (ConnectionError, OSError) as error:
            reply = Reply(SERVICE_UNAVAILABLE, "Service unavailable at %s:%s/%s (%s)" % (
                ip, port, synapse_name, error.strerror or error.__class__.__name__))
        except (WireError, ValueError, UnicodeError) as error:
            reply = Reply(UNPARSABLE, "Failed to parse response: %s" % error)
        reply.elapsed = time.monotonic() - started
        return reply


async def _exchange(ip, port, synapse_name, headers, body):
    reader, writer = await asyncio.open_connection(ip, port)
    try:
        head = ["POST /%s HTTP/1.1" % synapse_name, "Host: %s:%s" % (ip, port), "Content-Type: application/json",
                "Content-Length: %d" % len(body), "Connection: close"]
        head.extend("%s: %s" % item for item in headers.items())
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body)
        await writer.drain()
        status, reply_headers, payload = await _read_response(reader)
    finally:
        writer.close()
    return _reply(status, reply_headers, payload)


async def _read_response(reader):
    """(status, {lower-case name: value}, body bytes) of one HTTP/1.1 response."""
    try:
        status_line = await reader.readuntil(b"\r\n")
        parts = status_line.decode("latin-1").split(None, 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
            raise WireError("not an HTTP response: %r" % status_line[:80])
        status = int(parts[1])
        headers = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _sep, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
            if len(headers) > 200:
                raise WireError("too many headers")
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = await _read_chunked(reader)
        elif "content-length" in headers:
            length = int(headers["content-length"])
            if not 0 <= length <= MAX_REPLY_BYTES:
                raise WireError("content-length %d out of range" % length)
            body = await reader.readexactly(length)
        else:
            body = await reader.read(MAX_REPLY_BYTES + 1)
    except asyncio.IncompleteReadError:
        raise ConnectionResetError("the axon closed the connection mid-reply")
    except asyncio.LimitOverrunError:
        raise WireError("a header line is too long")
    if len(body) > MAX_REPLY_BYTES:
        raise WireError("the reply is larger than %d bytes" % MAX_REPLY_BYTES)
    return status, headers, body


async def _read_chunked(reader):
    chunks, size = [], 0
    while True:
        length = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if length == 0:
            await reader.readuntil(b"\r\n")
            return b"".join(chunks)
        size += length
        if size > MAX_REPLY_BYTES:
            raise WireError("the reply is larger than %d bytes" % MAX_REPLY_BYTES)
        chunks.append(await reader.readexactly(length))
        await reader.readexactly(2)


def _reply(status, headers, payload):
    """The Reply bittensor's dendrite would report: the axon's status headers win over the HTTP status."""
    try:
        document = json.loads(payload.decode("utf-8")) if payload else {}
    except ValueError:
        raise WireError("the body is not JSON (HTTP %d)" % status)
    code = headers.get("bt_header_axon_status_code")
    code = int(code) if code and code.lstrip("-").isdigit() else status
    message = headers.get("bt_header_axon_status_message")
    if message is None and isinstance(document, dict):
        message = document.get("message")
    if status != 200:
        return Reply(code, message or "")
    # bittensor rebuilds the synapse from a 200 body: a body that is not an object, or whose
    # output is not a dict, fails its validation and is reported as 422.
    if not isinstance(document, dict) or not isinstance(document.get("output", {}), dict):
        raise WireError("the axon's answer is not an Allocate synapse")
    return Reply(code, message or "", document)
