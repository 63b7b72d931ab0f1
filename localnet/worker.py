"""One axon worker: ``python -m localnet.worker STATE_DIR INDEX SUPERVISOR_PID``.

The supervisor (localnet/supervisor.py) starts one per block of miners (``Layout.worker_uids``).
A worker serves its miners' axons on one asyncio loop (one process per block, not per miner:
bittensor is heavy), runs box operations in a small thread pool, and has its miners act on the
supervisor's W&B reads in a thread of its own. SIGTERM ends it at once; so does the end of its
supervisor.
"""

import asyncio
import concurrent.futures
import os
import signal
import sys
import threading
import time
import traceback
import typing

from localnet import _collection

_collection.ensure_importable()

from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph, _network, _protocol  # noqa: E402
from localnet.box import Box  # noqa: E402
from localnet.faults import read_fault  # noqa: E402
from localnet.layout import MINER_HOTKEY, Layout  # noqa: E402
from localnet.miner import Miner, caller_blacklisted, caller_priority  # noqa: E402
from localnet.stale import DropStaleQueries  # noqa: E402
from localnet import wandb_sync  # noqa: E402

POLL_SECONDS = 0.2
FIELD_NAMES = [name for name, _kind, _default in _protocol.ALLOCATE_FIELDS]


class MinerServer:
    """A miner's axon, started and stopped as its fault file says (offline stops it)."""

    def __init__(self, layout, uid, registered, executor):
        bt = _network.bittensor()
        self.layout = layout
        self.uid = uid
        self.registered = registered
        self.executor = executor
        self.wallet = bt.Wallet(name=layout.miner_wallet(uid), hotkey=MINER_HOTKEY, path=layout.wallet_path)
        self.miner = Miner(uid, Box(layout, uid), layout.day_seconds, layout.miner_file(uid, "allocation.json"),
                           build_seconds=layout.build_seconds, version=layout.miner_version,
                           fault_source=lambda: read_fault(layout, uid))
        self.server = None

    def _axon(self):
        bt = _network.bittensor()
        allocate_class = _network.allocate_synapse_class()
        ip, port = self.layout.ip(self.uid), self.layout.axon_port
        miner, layout, uid, executor, registered = self.miner, self.layout, self.uid, self.executor, self.registered

        # bittensor checks these signatures: the parameter must be named synapse.
        async def forward(synapse: allocate_class) -> allocate_class:
            fault = read_fault(layout, uid)
            if fault.delay:
                await asyncio.sleep(fault.delay)
            fields = dict((name, getattr(synapse, name)) for name in FIELD_NAMES)
            # A build waits on the loop, not in a box thread: other miners go on meanwhile.
            synapse.output = await miner.handle_async(fields, fault, executor)
            if fault.reply_delay(fields):
                await asyncio.sleep(fault.reply_delay(fields))
            return synapse

        # registered: {hotkey: stake}. v1.8.3 lets any caller past the blacklist; the priority
        # function then fails for an unregistered one, and the axon answers 500.
        def blacklist(synapse: allocate_class) -> typing.Tuple[bool, str]:
            return caller_blacklisted(miner.version, registered, synapse.dendrite.hotkey)

        def priority(synapse: allocate_class) -> float:
            return caller_priority(registered, synapse.dendrite.hotkey)

        axon = bt.Axon(wallet=self.wallet, ip=ip, port=port, external_ip=ip, external_port=port)
        axon.attach(forward_fn=forward, blacklist_fn=blacklist, priority_fn=priority)
        # bittensor binds 0.0.0.0 whatever ip says; localnet binds loopback only.
        axon.fast_config.host = ip
        # Queries nobody waits for any more are answered before bittensor's middleware works on them.
        axon.fast_config.app = DropStaleQueries(axon.app)
        return axon

    async def _serve(self, server):
        try:
            await server.serve()
        except (Exception, SystemExit):  # uvicorn exits when it cannot bind; retried on the next poll
            print("miner %d: axon stopped: %s" % (self.uid, traceback.format_exc(limit=1)), flush=True)
        if self.server is server:
            self.server = None

    def apply_fault(self):
        online = read_fault(self.layout, self.uid).mode != "offline"
        if online and self.server is None:
            self.server = self._axon().fast_server
            asyncio.get_running_loop().create_task(self._serve(self.server))
        elif not online and self.server is not None:
            # uvicorn closes the listener first: new connections are refused at once.
            self.server.should_exit = True
            self.server = None


async def supervise(servers, executor, supervisor_pid):
    loop = asyncio.get_running_loop()
    # A supervisor killed without `down` leaves its workers to init: end with it, so no axon
    # outlives the network.
    while os.getppid() == supervisor_pid:
        for server in servers:
            server.apply_fault()
        now = time.time()
        for server in servers:
            if server.miner.expiry_due(now):
                await loop.run_in_executor(executor, server.miner.expire, now)
        await asyncio.sleep(POLL_SECONDS)


def _run_loop(servers, executor, supervisor_pid):
    try:
        asyncio.run(supervise(servers, executor, supervisor_pid))
    except BaseException:
        traceback.print_exc()
    finally:
        # The loop is the worker: without it, end the process (the supervisor then ends the others).
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv):
    if len(argv) != 4:
        print("usage: python -m localnet.worker STATE_DIR INDEX SUPERVISOR_PID", file=sys.stderr)
        return 2
    layout, _record = Layout.load(argv[1])
    index, supervisor_pid = int(argv[2]), int(argv[3])
    # bittensor parses sys.argv when it builds an axon's config.
    del sys.argv[1:]
    # Only the main thread takes SIGTERM/SIGINT; threads started below inherit the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    registered = dict((neuron.hotkey, neuron.stake) for neuron in _metagraph.read_snapshot(layout.metagraph_file)[0])
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="box")
    uids = layout.worker_uids(index)
    servers = [MinerServer(layout, uid, registered, executor) for uid in uids]
    # Preallocations first; then the W&B self-release checks, in their own thread.
    wandb_sync.attach(layout, servers, index)
    threading.Thread(target=_run_loop, args=(servers, executor, supervisor_pid), name="axons", daemon=True).start()
    print("worker %d (pid %d) serving miners %d-%d" % (index, os.getpid(), uids[0], uids[-1]), flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    # Exit now: an unresponsive miner's pending answer must not delay `down`.
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
