"""How long `python -m localnet up` takes for 8, 64 and 240 miners, and what they then answer.

Run as root from the collection root: .venv/bin/python bench/localnet_up.py [options]
For each miner count: `up`, a dendrite availability query of every miner (the collection's
`_network.MinerQuery`), a second one right after (a backlog of stale requests left by the
first would slow it), the RSS of the supervisor and its workers, and `down`.
Not part of the test suite. The state dir is a temp dir (set TMPDIR to choose where).
"""

import argparse
import os
import shlex
import tempfile
import time

from localnet_cmd import address_options, localnet, require_root

from ansible_collections.neuralinternet.compute.plugins.module_utils import _metagraph, _network  # noqa: E402
from localnet import procs  # noqa: E402
from localnet.layout import read_json  # noqa: E402

# Away from the default 127.0.0.x and nicm users and from the other benches' prefixes, so a
# running localnet is left alone.
IP_PREFIX, USER_PREFIX = "127.0.29", "nibn"
# What nicompute_allocate's check_timeout defaults to.
QUERY_TIMEOUT = 5.0


def measure(miners, args):
    with tempfile.TemporaryDirectory(prefix="localnet-bench-") as state_dir:
        # No foreign validators: every neuron but uid 0 is a miner to query (the miners' W&B read stays on).
        up = localnet("up", "--miners", str(miners), "--state-dir", state_dir, "--ip-prefix", args.ip_prefix,
                      "--user-prefix", args.user_prefix, "--no-foreign-validators", *shlex.split(args.up_args))
        try:
            neurons, _document = _metagraph.read_snapshot(os.path.join(state_dir, "metagraph.json"))
            miners_only = [n for n in neurons if n.uid != 0]
            query = _network.MinerQuery(_network.load_hotkey("operator", "validator",
                                                             os.path.join(state_dir, "wallets")))
            first = timed_query(query, miners_only, args.timeout)
            second = timed_query(query, miners_only, args.timeout)
            rss, processes = supervisor_rss_mib(state_dir)
        finally:
            down = localnet("down", "--state-dir", state_dir)
    print("%3d miners: up %.2fs | query all %.2fs (%d/%d available) | again %.2fs (%d/%d) | "
          "RSS %.0f MiB in %d processes | down %.2fs"
          % (miners, up, first[0], first[1], miners, second[0], second[1], miners, rss, processes, down),
          flush=True)


def timed_query(query, neurons, timeout):
    """(seconds, miners that answered available) for one availability query of every miner."""
    started = time.monotonic()
    replies = query.check_available(neurons, timeout)
    return time.monotonic() - started, sum(1 for reply in replies if reply.status is True)


def supervisor_rss_mib(state_dir):
    """(MiB, count) of the supervisor and every process under it (axon workers, the W&B SDK's service)."""
    pids = read_json(os.path.join(state_dir, "localnet.json"))["pids"]
    total, count = 0.0, 0
    for ident in procs.with_descendants([pids["supervisor"]]):
        try:
            with open("/proc/%d/status" % ident["pid"]) as handle:
                total += next(int(line.split()[1]) for line in handle if line.startswith("VmRSS:")) / 1024.0
            count += 1
        except (OSError, StopIteration):
            pass
    return total, count


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, nargs="+", default=[8, 64, 240], help="miner counts (8 64 240)")
    parser.add_argument("--timeout", type=float, default=QUERY_TIMEOUT,
                        help="each availability query's timeout in seconds (%g)" % QUERY_TIMEOUT)
    parser.add_argument("--up-args", default="", help="more `localnet up` options, e.g. '--workers 2'")
    address_options(parser, IP_PREFIX, USER_PREFIX)
    args = parser.parse_args()
    require_root("bench/localnet_up.py")
    for count in args.miners:
        measure(count, args)


if __name__ == "__main__":
    main()
