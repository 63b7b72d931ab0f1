"""How long `python -m localnet up` takes for 8 and 64 miners, and what they then answer.

Run as root from the collection root: python bench/localnet_up.py [N ...]
Prints wall-clock figures for up, a dendrite availability query of every miner, and down.
Not part of the test suite.
"""

import json
import os
import sys
import tempfile
import time

from localnet_cmd import localnet

from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph, _network  # noqa: E402

# Away from the default 127.0.0.x and nicm users, so a running localnet is left alone.
# No foreign validators: every neuron but uid 0 is a miner to query (the miners' W&B read stays on).
OPTIONS = ["--ip-prefix", "127.0.29", "--user-prefix", "nibn", "--no-foreign-validators"]


def measure(miners):
    with tempfile.TemporaryDirectory(prefix="localnet-bench-") as state_dir:
        up = localnet("up", "--miners", str(miners), "--state-dir", state_dir, *OPTIONS)
        try:
            neurons, _document = _metagraph.read_snapshot(os.path.join(state_dir, "metagraph.json"))
            query = _network.MinerQuery(_network.load_hotkey("operator", "validator", os.path.join(state_dir, "wallets")))
            started = time.monotonic()
            replies = query.check_available([n for n in neurons if n.uid != 0], 12)
            queried = time.monotonic() - started
            answered = sum(1 for reply in replies if reply.status is True)
            rss = supervisor_rss_mib(state_dir)
        finally:
            down = localnet("down", "--state-dir", state_dir)
    print("%3d miners: up %.2fs, query all %.2fs (%d/%d available), supervisor RSS %.0f MiB, down %.2fs"
          % (miners, up, queried, answered, miners, rss, down))


def supervisor_rss_mib(state_dir):
    with open(os.path.join(state_dir, "localnet.json")) as handle:
        pid = json.load(handle)["pids"]["supervisor"]["pid"]
    with open("/proc/%d/status" % pid) as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


if __name__ == "__main__":
    for count in [int(arg) for arg in sys.argv[1:]] or [8, 64]:
        measure(count)
