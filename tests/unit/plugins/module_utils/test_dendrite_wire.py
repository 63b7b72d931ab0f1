# -*- coding: utf-8 -*-
# The collection's dendrite (_dendrite.py, no bittensor import) against the real thing: a real
# bittensor 10.5 Axon on loopback serving an Allocate class declared as SN27 v1.8.3 declares it
# (compute/protocol.py), and bittensor's own Dendrite sending the same requests. Both directions:
# what the axon accepts or refuses from us (signature, body hash, nonce), and how we read what
# it answers (bodies, error statuses) compared with what bittensor's dendrite reports.
# No `from __future__ import annotations`: bittensor reads the forward function's annotations as classes.

import asyncio
import json
import time
import typing

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _dendrite, _network, _protocol
from ansible_collections.neuralinternet.compute.tests.unit.plugins.module_utils.loopback import free_port, wait_listening

TIMEOUT = 3.0
SLOW_TIMELINE = 998  # the test axon sleeps past the timeout
FAILING_TIMELINE = 999  # the test axon's forward raises


def upstream_allocate_class():
    """Allocate as SN27 v1.8.3 declares it: bt.Synapse with these fields, defaults and types."""
    bt = _network.bittensor()

    class Allocate(bt.Synapse):
        timeline: int = 0
        device_requirement: dict = {}
        checking: bool = True
        output: dict = {}
        public_key: str = ""
        docker_requirement: dict = {"base_image": "ubuntu", "ssh_key": "", "ssh_port": 4444,
                                    "volume_path": "/tmp", "dockerfile": ""}
        docker_change: bool = False
        docker_action: dict = {"action": "", "ssh_key": "", "key_type": ""}

        def deserialize(self) -> dict:
            return self.output

    return Allocate


def _keypair():
    bt = _network.bittensor()
    return bt.Keypair.create_from_mnemonic(bt.Keypair.generate_mnemonic())


class Target:
    def __init__(self, ip, port, hotkey):
        self.ip, self.port, self.hotkey = ip, port, hotkey


@pytest.fixture(scope="module")
def axon(tmp_path_factory):
    """A real Axon serving the upstream Allocate class; it echoes what it received in output."""
    bt = _network.bittensor()
    allocate_class = upstream_allocate_class()
    wallet = bt.Wallet(name="wire-miner", hotkey="default", path=str(tmp_path_factory.mktemp("wallets")))
    wallet.create_if_non_existent(coldkey_use_password=False, hotkey_use_password=False, suppress=True)
    miner_key = wallet.hotkey
    blocked = set()
    ip = "127.0.0.81"
    port = free_port(ip)

    async def forward(synapse: allocate_class) -> allocate_class:
        if synapse.timeline == FAILING_TIMELINE:
            raise RuntimeError("the miner failed")
        if synapse.timeline == SLOW_TIMELINE:
            await asyncio.sleep(TIMEOUT + 1)
        synapse.output = {"status": True, "seen": {"timeline": synapse.timeline, "checking": synapse.checking,
                                                   "public_key": synapse.public_key,
                                                   "docker_requirement": synapse.docker_requirement,
                                                   "caller": synapse.dendrite.hotkey}}
        return synapse

    def blacklist(synapse: allocate_class) -> typing.Tuple[bool, str]:
        return synapse.dendrite.hotkey in blocked, "blocked for the test"

    server = bt.Axon(wallet=wallet, ip=ip, port=port, external_ip=ip, external_port=port)
    server.attach(forward_fn=forward, blacklist_fn=blacklist)
    server.fast_config.host = ip
    server.start()
    wait_listening(ip, port)
    yield {"target": Target(ip, port, miner_key.ss58_address), "blocked": blocked, "class": allocate_class}
    server.stop()


def ours(target, fields, timeout=TIMEOUT, keypair=None, synapse="Allocate"):
    dendrite = _dendrite.Dendrite(keypair or _keypair())
    return asyncio.run(dendrite.call(target.ip, target.port, target.hotkey, synapse, fields, timeout))


def theirs(target, allocate_class, fields, timeout=TIMEOUT, keypair=None):
    bt = _network.bittensor()

    async def call():
        dendrite = bt.Dendrite(wallet=keypair or _keypair())
        try:
            info = bt.AxonInfo(version=0, ip=target.ip, port=target.port, ip_type=4, hotkey=target.hotkey,
                               coldkey=target.hotkey)
            return await dendrite.call(target_axon=info, synapse=allocate_class(**fields), timeout=timeout,
                                       deserialize=False)
        finally:
            await dendrite.aclose_session()

    return asyncio.run(call())


# -- the request: what bittensor's dendrite would send ---------------------------------------

def test_the_upstream_declaration_is_the_protocol_table():
    """_protocol's field table (which _dendrite sends) is upstream's Allocate, field for field."""
    upstream = upstream_allocate_class()()
    for name, kind, default in _protocol.ALLOCATE_FIELDS:
        assert upstream.model_fields[name].annotation is kind
        assert getattr(upstream, name) == default


def test_request_headers_and_body_are_what_bittensor_builds():
    bt = _network.bittensor()
    keypair = _keypair()
    target = Target("127.0.0.82", 8091, _keypair().ss58_address)
    fields = _protocol.allocate_request({"cpu": {"count": 1}}, 2, "PEM", _protocol.docker_requirement(ssh_key="k"))
    mine = _dendrite.Dendrite(keypair)
    headers, body = mine.request(target.ip, target.port, target.hotkey, "Allocate", fields, 2.5)

    # bittensor's dendrite, with our uuid and nonce so that everything but the signature is comparable.
    dendrite = bt.Dendrite(wallet=keypair)
    dendrite.uuid = mine.uuid
    info = bt.AxonInfo(version=0, ip=target.ip, port=target.port, ip_type=4, hotkey=target.hotkey,
                       coldkey=target.hotkey)
    synapse = dendrite.preprocess_synapse_for_request(info, upstream_allocate_class()(**fields), 2.5)
    synapse.dendrite.nonce = int(headers["bt_header_dendrite_nonce"])
    expected_headers = synapse.to_headers()
    expected_body = synapse.model_dump()

    informative = ("header_size", "total_size", "bt_header_dendrite_signature")
    assert dict((k, v) for k, v in headers.items() if k not in informative) == \
        dict((k, v) for k, v in expected_headers.items() if k not in informative)
    assert list(headers) == list(expected_headers)
    document = json.loads(body)
    for part in ("dendrite", "axon"):
        document[part].pop("signature"), expected_body[part].pop("signature")
    document.pop("total_size"), expected_body.pop("total_size")
    assert document == expected_body
    assert list(document) == list(expected_body)


def test_the_signature_is_the_hotkeys_over_what_axons_verify():
    keypair = _keypair()
    headers, _body = _dendrite.Dendrite(keypair).request("127.0.0.82", 8091, "5Axon", "Allocate", {}, 2)
    message = "%s.%s.5Axon.%s.%s" % (headers["bt_header_dendrite_nonce"], keypair.ss58_address,
                                     headers["bt_header_dendrite_uuid"], headers["computed_body_hash"])
    signature = bytes.fromhex(headers["bt_header_dendrite_signature"][2:])
    assert _network.verify_signature(keypair.ss58_address, message.encode(), signature)
    assert headers["computed_body_hash"] == _network.bittensor().Synapse().body_hash


def test_nonces_grow_strictly_even_within_one_clock_tick(monkeypatch):
    dendrite = _dendrite.Dendrite(_keypair())
    monkeypatch.setattr(_dendrite.time, "time_ns", lambda: 1_700_000_000_000_000_000)
    nonces = [int(dendrite.request("127.0.0.82", 1, "5Axon", "Allocate", {}, 1)[0]["bt_header_dendrite_nonce"])
              for _attempt in range(3)]
    assert nonces == [1_700_000_000_000_000_000, 1_700_000_000_000_000_001, 1_700_000_000_000_000_002]


# -- the axon accepts what we send, and refuses what it must ----------------------------------

def test_the_axon_accepts_our_request_and_we_read_its_answer_as_bittensor_does(axon):
    fields = _protocol.allocate_request({}, 3, "PUBLIC-PEM", _protocol.docker_requirement(ssh_key="ssh-ed25519 AAA"))
    keypair = _keypair()
    reply = ours(axon["target"], fields, keypair=keypair)
    reference = theirs(axon["target"], axon["class"], fields)
    assert reply.status_code == 200 == int(reference.dendrite.status_code)
    assert reply.message == reference.dendrite.status_message
    seen = reply.body["output"]["seen"]
    assert seen == dict(reference.output["seen"], caller=keypair.ss58_address)
    assert seen["timeline"] == 3 and seen["checking"] is False and seen["public_key"] == "PUBLIC-PEM"
    assert seen["docker_requirement"]["ssh_key"] == "ssh-ed25519 AAA"


def test_consecutive_requests_from_one_dendrite_are_all_accepted(axon):
    dendrite = _dendrite.Dendrite(_keypair())

    async def calls():
        return [await dendrite.call(axon["target"].ip, axon["target"].port, axon["target"].hotkey, "Allocate",
                                    _protocol.availability_request(1), TIMEOUT) for _call in range(10)]

    assert [reply.status_code for reply in asyncio.run(calls())] == [200] * 10


def _raw(target, headers, body):
    return asyncio.run(asyncio.wait_for(_dendrite._exchange(target.ip, target.port, "Allocate", headers, body),
                                        TIMEOUT))


def test_a_replayed_request_is_refused(axon):
    dendrite = _dendrite.Dendrite(_keypair())
    headers, body = dendrite.request(axon["target"].ip, axon["target"].port, axon["target"].hotkey, "Allocate",
                                     _protocol.availability_request(1), TIMEOUT)
    assert _raw(axon["target"], headers, body).status_code == 200
    replayed = _raw(axon["target"], headers, body)
    assert replayed.status_code == 401 and "Nonce is too old" in replayed.message


def test_a_first_nonce_older_than_the_window_is_refused(axon, monkeypatch):
    dendrite = _dendrite.Dendrite(_keypair())
    stale = time.time_ns() - int((4 + TIMEOUT + 5) * 1e9)
    monkeypatch.setattr(_dendrite.time, "time_ns", lambda: stale)
    headers, body = dendrite.request(axon["target"].ip, axon["target"].port, axon["target"].hotkey, "Allocate",
                                     _protocol.availability_request(1), TIMEOUT)
    monkeypatch.undo()
    reply = _raw(axon["target"], headers, body)
    assert reply.status_code == 401 and "Nonce is too old" in reply.message


def test_a_signature_by_another_key_is_refused(axon):
    dendrite = _dendrite.Dendrite(_keypair())
    impostor = _keypair()
    headers, body = dendrite.request(axon["target"].ip, axon["target"].port, axon["target"].hotkey, "Allocate",
                                     _protocol.availability_request(1), TIMEOUT)
    message = "%s.%s.%s.%s.%s" % (headers["bt_header_dendrite_nonce"], headers["bt_header_dendrite_hotkey"],
                                  axon["target"].hotkey, headers["bt_header_dendrite_uuid"],
                                  headers["computed_body_hash"])
    headers["bt_header_dendrite_signature"] = "0x" + impostor.sign(message).hex()
    reply = _raw(axon["target"], headers, body)
    assert reply.status_code == 401 and "Signature mismatch" in reply.message


def test_a_request_for_another_axons_hotkey_is_refused(axon):
    target = axon["target"]
    reply = ours(Target(target.ip, target.port, _keypair().ss58_address), _protocol.availability_request(1))
    assert reply.status_code == 401


def test_a_wrong_body_hash_is_refused(axon):
    dendrite = _dendrite.Dendrite(_keypair())
    original = _dendrite.EMPTY_BODY_HASH
    try:
        _dendrite.EMPTY_BODY_HASH = "ab" * 32  # signed consistently, but not the hash of this body
        headers, body = dendrite.request(axon["target"].ip, axon["target"].port, axon["target"].hotkey, "Allocate",
                                         _protocol.availability_request(1), TIMEOUT)
    finally:
        _dendrite.EMPTY_BODY_HASH = original
    assert _raw(axon["target"], headers, body).status_code != 200


# -- error statuses read as bittensor's dendrite reads them -----------------------------------

def _same_failure(axon, fields, keypair=None, expected=None, timeout=TIMEOUT):
    reply = ours(axon["target"], fields, keypair=keypair, timeout=timeout)
    reference = theirs(axon["target"], axon["class"], fields, keypair=keypair, timeout=timeout)
    messages = (reply.message, reference.dendrite.status_message)
    assert reply.status_code == int(reference.dendrite.status_code) == expected, messages
    assert reply.body is None
    return reply, reference


def test_a_blacklisted_caller_gets_403_from_both(axon):
    keypair = _keypair()
    axon["blocked"].add(keypair.ss58_address)
    reply, reference = _same_failure(axon, _protocol.availability_request(1), keypair=keypair, expected=403)
    assert reply.message == reference.dendrite.status_message


def test_a_failing_miner_gets_500_from_both(axon):
    reply, reference = _same_failure(axon, _protocol.availability_request(FAILING_TIMELINE), expected=500)
    # The axon numbers each error ("Internal Server Error #<uuid>"): the same text up to the number.
    assert reply.message.split("#")[0] == reference.dendrite.status_message.split("#")[0] == "Internal Server Error "


def test_a_miner_slower_than_the_timeout_gets_408_from_both(axon):
    _same_failure(axon, _protocol.availability_request(SLOW_TIMELINE), expected=408, timeout=1.0)


def test_a_closed_port_gets_503_from_both(axon):
    target = Target("127.0.0.83", free_port("127.0.0.83"), axon["target"].hotkey)
    reply = ours(target, _protocol.availability_request(1))
    reference = theirs(target, axon["class"], _protocol.availability_request(1))
    assert reply.status_code == int(reference.dendrite.status_code) == 503


def test_an_unknown_synapse_name_is_an_error_status(axon):
    reply = ours(axon["target"], {}, synapse="Specs")
    assert reply.status_code not in (200, 408, 503) and reply.body is None


# -- replies that are not an axon's ---------------------------------------------------------

def _answer(raw):
    """What our dendrite makes of a loopback server that answers these raw bytes."""
    async def handle(reader, writer):
        await reader.read(65536)
        writer.write(raw)
        await writer.drain()
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.84", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            return await _dendrite.Dendrite(_keypair()).call("127.0.0.84", port, "5Axon", "Allocate", {}, TIMEOUT)

    return asyncio.run(main())


def test_a_chunked_200_answer_is_read():
    body = json.dumps({"output": {"status": True}}).encode()
    raw = (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nbt_header_axon_status_code: 200\r\n"
           b"bt_header_axon_status_message: Success\r\n\r\n" + b"%x\r\n" % len(body) + body + b"\r\n0\r\n\r\n")
    reply = _answer(raw)
    assert (reply.status_code, reply.message, reply.body) == (200, "Success", {"output": {"status": True}})


@pytest.mark.parametrize("raw", [
    b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nnot-json",
    b"HTTP/1.1 200 OK\r\ncontent-length: 15\r\n\r\n{\"output\": \"x\"}",
    b"SSH-2.0-OpenSSH_9.2\r\n",
])
def test_a_reply_that_is_not_an_allocate_answer_is_422(raw):
    assert _answer(raw).status_code == 422


def test_a_connection_closed_mid_reply_is_503():
    assert _answer(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n{\"out").status_code == 503


def test_an_error_status_without_bittensor_headers_keeps_the_http_status_and_message():
    reply = _answer(b"HTTP/1.1 429 Too Many\r\ncontent-length: 19\r\n\r\n{\"message\": \"slow\"}")
    assert (reply.status_code, reply.message, reply.body) == (429, "slow", None)
