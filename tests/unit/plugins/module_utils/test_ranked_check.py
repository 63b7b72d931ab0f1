# -*- coding: utf-8 -*-
# The ranked, batched availability check (MinerQuery.check_ranked) over real loopback sockets:
# each "miner" is a small HTTP server on its own port that answers "free", "busy", or never.
# These are not bittensor axons (test_dendrite_wire.py proves the wire format against real ones);
# here many cheap miners show how requests are scheduled.

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils import _network
from ansible_collections.neuralinternet.compute.plugins.module_utils._metagraph import Neuron

IP = "127.0.0.85"
TIMEOUT = 0.6


class Keypair:
    """Signs with a constant: these miners do not verify signatures."""
    ss58_address = "5Caller"

    def sign(self, message):
        return b"\x00" * 64


class Miners:
    """HTTP servers on one loopback address, one port per miner, served from a background loop."""

    def __init__(self, behaviours):
        self.behaviours = behaviours
        self.asked = [0] * len(behaviours)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.servers = asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        self.neurons = [Neuron(uid, "5Miner%d" % uid, "ck", 0.0, 0.0, IP, server.sockets[0].getsockname()[1], True)
                        for uid, server in enumerate(self.servers)]

    async def _start(self):
        return [await asyncio.start_server(self._handler(index), IP, 0) for index in range(len(self.behaviours))]

    def _handler(self, index):
        async def handle(reader, writer):
            self.asked[index] += 1
            await reader.readuntil(b"\r\n\r\n")
            behaviour = self.behaviours[index]
            if behaviour == "silent":
                await asyncio.sleep(3600)
            body = json.dumps({"output": {"status": behaviour == "free"}}).encode()
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nbt_header_axon_status_code: 200\r\n\r\n%s"
                         % (len(body), body))
            await writer.drain()
            writer.close()
        return handle

    def close(self):
        async def stop():
            for server in self.servers:
                server.close()
            # Silent miners' handlers are still waiting: end them before the loop stops.
            handlers = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in handlers:
                task.cancel()
            await asyncio.gather(*handlers, return_exceptions=True)
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def miners():
    made = []

    def make(behaviours):
        made.append(Miners(behaviours))
        return made[-1]

    yield make
    for group in made:
        group.close()


def check(group):
    return _network.MinerQuery(Keypair()).check_ranked(group.neurons, TIMEOUT)


def test_a_healthy_top_ranked_miner_is_found_from_the_first_batch_alone(miners):
    group = miners(["free"] * 100)
    replies = check(group)
    assert replies[0].status is True
    assert sum(group.asked) == _network.FIRST_BATCH
    assert group.asked[_network.FIRST_BATCH:] == [0] * (100 - _network.FIRST_BATCH)


def test_every_better_ranked_miner_is_settled_before_the_best_free_one_counts(miners):
    group = miners(["busy", "silent", "free", "busy", "free"] + ["free"] * 30)
    replies = check(group)
    assert [r.status for r in replies[:3]] == [False, None, True]
    assert replies[1].status_code == 408


def test_silent_batches_widen_until_a_free_miner_answers(miners):
    # 120 silent top-ranked miners: batches of 16, 32, 64 and then 128 (which reaches the free ones).
    group = miners(["silent"] * 120 + ["free"] * 120)
    replies = check(group)
    assert all(r.status_code == 408 for r in replies[:120])
    assert replies[120].status is True
    assert sum(1 for count in group.asked if count) == 16 + 32 + 64 + 128


def test_waiting_for_a_connection_slot_does_not_eat_the_timeout(miners, monkeypatch):
    # Four slots, eight silent miners ahead: the free ones queue behind two rounds of timeouts and
    # must still answer, because a request's timeout starts only once it has a slot.
    monkeypatch.setattr(_network, "MAX_IN_FLIGHT", 4)
    group = miners(["silent"] * 8 + ["free"] * 8)
    replies = check(group)
    assert [r.status_code for r in replies[:8]] == [408] * 8
    assert replies[8].status is True


def test_nobody_free_asks_everyone_once_and_says_so(miners):
    group = miners(["busy"] * 40 + ["silent"] * 5)
    replies = check(group)
    assert group.asked == [1] * 45
    assert [r.status for r in replies] == [False] * 40 + [None] * 5


def test_an_empty_ranking_asks_nobody():
    assert _network.MinerQuery(Keypair()).check_ranked([], TIMEOUT) == []
