"""The process `up` starts: ``python -m localnet.supervisor STATE_DIR``.

It starts the axon workers (localnet/worker.py), one per block of miners, writes them to
STATE/workers.json for `up` to record, and stays while they run. When a worker ends, it ends the
others and exits 1, so a broken network shows as not running; SIGTERM or SIGINT ends them all at
once. Workers end by themselves when the supervisor is gone.

It also reads W&B for all miners, once per period, in a thread (localnet/wandb_sync.py): one
read and one wandb service, however many workers act on it.
"""

import os
import signal
import subprocess
import sys

from localnet import _collection

_collection.ensure_importable()

from localnet import procs, wandb_sync  # noqa: E402
from localnet.layout import Layout, write_json  # noqa: E402

SIGNALS = {signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
# Workers exit at once on SIGTERM; this is for one that hangs.
STOP_GRACE_S = 5.0


def spawn_worker(layout, index):
    # Output goes where the supervisor's goes: supervisor.log.
    return subprocess.Popen([sys.executable, "-m", "localnet.worker", layout.state_dir, str(index), str(os.getpid())],
                            stdin=subprocess.DEVNULL)


def record_workers(layout, workers):
    write_json(layout.workers_file, {
        "supervisor": procs.identity(os.getpid()),
        "workers": [dict(procs.identity(worker.pid), index=index,
                         uids=[layout.worker_uids(index)[0], layout.worker_uids(index)[-1]])
                    for index, worker in enumerate(workers)]})


def stop(workers):
    for worker in workers:
        if worker.poll() is None:
            worker.terminate()
    for worker in workers:
        try:
            worker.wait(STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def main(argv):
    if len(argv) != 2:
        print("usage: python -m localnet.supervisor STATE_DIR", file=sys.stderr)
        return 2
    layout, _record = Layout.load(argv[1])
    # Started before the signals are blocked, so the workers do not inherit the mask; a worker that
    # ends meanwhile is found by the poll below.
    workers = [spawn_worker(layout, index) for index in range(layout.workers)]
    signal.pthread_sigmask(signal.SIG_BLOCK, SIGNALS)
    record_workers(layout, workers)
    wandb_sync.start_reading(layout)
    print("supervisor %d: %d workers for %d miners" % (os.getpid(), len(workers), layout.miners), flush=True)
    while True:
        ended = [index for index, worker in enumerate(workers) if worker.poll() is not None]
        if ended:
            print("supervisor: worker %s exited (status %s); stopping the others" % (
                ", ".join(map(str, ended)), ", ".join(str(workers[index].returncode) for index in ended)), flush=True)
            stop(workers)
            return 1
        if signal.sigwait(SIGNALS) != signal.SIGCHLD:
            stop(workers)
            return 0


if __name__ == "__main__":
    status = main(sys.argv)
    # Exit now: no waiting on the wandb SDK's exit hooks (its service ends with this process).
    os._exit(status)
