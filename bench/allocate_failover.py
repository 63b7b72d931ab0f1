"""Allocation among 32 localnet miners, healthy and with the 8 best ones unresponsive.

Run as root from the collection root: .venv/bin/python bench/allocate_failover.py [options]
Brings up its own 32-miner localnet (temp state dir; --ip-prefix, default 127.0.3, --user-prefix,
default nicb), times `_allocation.allocate` + `_allocation.deallocate` (the modules' code path) in
two scenarios:

  A  no fault
  B  the 8 top-ranked candidates `unresponsive` (accept the connection, never answer)

and, in the same run, an upstream-style baseline that checks the same ranked candidates one
at a time with the same per-query timeout and allocates on the first available one.
Prints median and max seconds, checks B's median <= check_timeout + 3 s, and gives the
baseline/ours ratio for B. Takes about 1.5 minutes on 2 cores. Not part of the test suite.
"""

import argparse
import statistics
import sys
import tempfile
import time

from localnet_cmd import BenchNetwork, address_options, require_root

from localnet.concurrency import read_env  # noqa: E402

from ansible_collections.neuralinternet.compute.plugins.module_utils import (  # noqa: E402
    _allocation,
    _crypto,
    _protocol,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient  # noqa: E402
from ansible_collections.neuralinternet.compute.plugins.module_utils._requirements import (  # noqa: E402
    DeviceRequirement,
)
from ansible_collections.neuralinternet.compute.plugins.module_utils._settings import (  # noqa: E402
    ENV_FALLBACKS,
    Settings,
)

# Away from the default 127.0.0.x / nicm users and from the other benches' prefixes.
IP_PREFIX, USER_PREFIX = "127.0.3", "nicb"
MINERS = 32
FAULTED = 8
REQUIREMENTS = {"cpu_count": 1}
ALLOCATE_TIMEOUT = 10.0
MAX_ATTEMPTS = 3


def settings_from_env(env):
    # The same option -> environment variable table the modules fall back to.
    params = dict((option, env.get(names[0])) for option, names in ENV_FALLBACKS.items())
    for option in ("netuid", "metagraph_cache_ttl", "wandb_timeout", "miner_sync_period", "unconfirmed_grace"):
        if params[option] is not None:
            params[option] = int(params[option])
    # Both clients are timed without publishing: W&B's cost is the same for both and not the
    # availability check's (bench/network_task.py shows it).
    params["wandb_mode"] = "disabled"
    return Settings.from_params(params)


def request(name, check_timeout):
    return _allocation.AllocationRequest(name=name, requirements=dict(REQUIREMENTS), check_timeout=check_timeout,
                                         allocate_timeout=ALLOCATE_TIMEOUT, max_attempts=MAX_ATTEMPTS)


def ranked_uids(settings, check_timeout):
    """Candidate uids in the order allocate would try them (check mode: nothing allocated)."""
    result = _allocation.allocate(settings, request("bench-rank", check_timeout), check_mode=True)
    return [c["uid"] for c in result["candidates"]]


def ours(settings, name, check_timeout):
    """One allocate + deallocate through the module code path; (seconds to allocate, uid)."""
    started = time.monotonic()
    result = _allocation.allocate(settings, request(name, check_timeout), check_mode=False)
    elapsed = time.monotonic() - started
    _allocation.deallocate(settings, [], [name])
    return elapsed, result["allocation"]["uid"]


def baseline(settings, ranked, check_timeout):
    """Upstream style: ask the ranked candidates one at a time, allocate on the first free one."""
    started = time.monotonic()
    client = ComputeClient(settings)
    neurons = dict((n.uid, n) for n in client.neurons().values())
    device_requirement = DeviceRequirement.from_options(**REQUIREMENTS).to_wire()
    docker_req = _protocol.docker_requirement()
    for uid in ranked:
        neuron = neurons[uid]
        if client.query.check_available([neuron], check_timeout)[0].status is not True:
            continue
        private_pem, public_pem = _crypto.generate_key_pair()
        reply = client.query.allocate(neuron, device_requirement, 1, public_pem, docker_req, ALLOCATE_TIMEOUT)
        if reply.status is True:
            _crypto.decrypt_credentials(private_pem, reply.output.get("info"))
            elapsed = time.monotonic() - started
            released = client.query.deallocate(neuron, public_pem, ALLOCATE_TIMEOUT)
            if released.status is not True:
                raise RuntimeError("baseline: miner %d did not confirm the release: %s" % (uid, released.describe()))
            return elapsed, uid
        # Granted or not, release with our key before moving on (nothing is left held).
        client.query.deallocate(neuron, public_pem, ALLOCATE_TIMEOUT)
    raise RuntimeError("baseline: no candidate could be allocated")


def repeat(label, runs, measure):
    times, uids = [], set()
    for _run in range(runs):
        elapsed, uid = measure()
        times.append(elapsed)
        uids.add(uid)
    row = (label, statistics.median(times), max(times), runs, sorted(uids))
    print("  %-38s median %6.2fs  max %6.2fs  (n=%d, miner uid %s)"
          % (label, row[1], row[2], runs, ",".join(map(str, row[4]))))
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check-timeout", type=float, default=2.0,
                        help="per-query availability timeout, ours and baseline (default 2 s)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions per scenario (default 5)")
    parser.add_argument("--baseline-runs", type=int, default=3,
                        help="repetitions of the slow sequential baseline under fault (default 3)")
    address_options(parser, IP_PREFIX, USER_PREFIX)
    args = parser.parse_args()
    require_root("bench/allocate_failover.py")
    limit = args.check_timeout + 3.0

    with tempfile.TemporaryDirectory(prefix="localnet-failover-") as state_dir:
        # Miners grant at once (no simulated 1 s build): the figures are the clients'.
        network = BenchNetwork(state_dir, MINERS, args.ip_prefix, args.user_prefix, "--build-seconds", "0")
        try:
            up = network.up()
            print("localnet up, %d miners: %.2fs" % (MINERS, up))
            settings = settings_from_env(read_env(state_dir))

            ranked = ranked_uids(settings, args.check_timeout)
            faulted = ranked[:FAULTED]
            print("%d candidates for %s; top %d (to be unresponsive): uids %s"
                  % (len(ranked), REQUIREMENTS, FAULTED, ",".join(map(str, faulted))))
            print("check_timeout %.1fs, allocate_timeout %.0fs, max_attempts %d"
                  % (args.check_timeout, ALLOCATE_TIMEOUT, MAX_ATTEMPTS))

            rows = []
            print("A: no fault")
            rows.append(repeat("A ours (concurrent check)", args.runs,
                               lambda: ours(settings, "bench-a", args.check_timeout)))
            rows.append(repeat("A baseline (sequential check)", args.runs,
                               lambda: baseline(settings, ranked, args.check_timeout)))

            network.set_faults(faulted, "unresponsive")
            print("B: uids %s unresponsive" % ",".join(map(str, faulted)))
            ours_b = repeat("B ours (concurrent check)", args.runs,
                            lambda: ours(settings, "bench-b", args.check_timeout))
            rows.append(ours_b)
            base_b = repeat("B baseline (sequential check)", args.baseline_runs,
                            lambda: baseline(settings, ranked, args.check_timeout))
            rows.append(base_b)
        finally:
            network.down()

    print()
    print("%-32s %9s %9s %4s" % ("scenario", "median s", "max s", "n"))
    for label, median, worst, runs, _uids in rows:
        print("%-32s %9.2f %9.2f %4d" % (label, median, worst, runs))
    verdict = "PASS" if ours_b[1] <= limit else "FAIL"
    print()
    print("up (%d miners): %.2fs" % (MINERS, up))
    print("check: B ours median %.2fs <= check_timeout + 3 = %.1fs: %s" % (ours_b[1], limit, verdict))
    print("ratio baseline_B / ours_B (medians): %.1fx" % (base_b[1] / ours_b[1]))
    return 0 if verdict == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())
