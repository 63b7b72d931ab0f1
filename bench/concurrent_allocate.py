"""Concurrent nicompute_allocate processes against one validator database, and the `late` race.

Run as root from the collection root: .venv/bin/python bench/concurrent_allocate.py [options]
Brings up its own 21-miner localnet (temp state dir; --ip-prefix, default 127.0.94, --user-prefix,
default nicq). Each allocation is the real module run as its own process (`python -m
...nicompute_allocate ARGS.json`, settings from the localnet's env file); `python -m localnet
validator-writer` rewrites miner_details and stats throughout, as the validator does. Scenarios
(M, the miners that match, comes from a check-mode run of the module):

  N=8  and N=16 at once, no requirement     M=19 >= N
  N=8  at once, gpu_type a100               M=5  <  N
  N=16 at once, gpu_count 2                 M=11 <  N
  late race: A allocates B's first choice by hotkey, that miner answers after 8 s, B starts 4 s later

and after each, one nicompute_deallocate of everything. Prints per scenario: successes, distinct
miners, orphans, "database is locked" count, clean failures, median and max wall time per module
process, the writer's committed/failed transactions, and PASS/FAIL against what a correct
client achieves (tests/localnet/test_concurrency.py asserts the same). Exit status 1 when a
check fails. About 2 minutes on 2 cores. Not part of the test suite.
"""

import argparse
import json
import os
import sys
import tempfile

from localnet_cmd import BenchNetwork, address_options, require_root

from localnet import concurrency

# Away from the default 127.0.0.x / nicm users, the other benches' prefixes and the tests (127.50-249.x).
IP_PREFIX, USER_PREFIX = "127.0.94", "nicq"
MINERS = 21
CHECK_TIMEOUT = 5
ALLOCATE_TIMEOUT = 30
ROUND_TIMEOUT_S = 120.0
LATE_S = 8
RACE_DELAY_S = 4
# (label, N, requirement): M follows from the requirement on this network.
SCENARIOS = (
    ("N=8, M>=N", 8, {}),
    ("N=16, M>=N", 16, {}),
    ("N=8, M<N", 8, {"gpu_type": "a100"}),
    ("N=16, M<N", 16, {"gpu_count": 2}),
)
RACE_REQUIREMENT = {"gpu_count": 1}
COLUMNS = (("successes", "ok"), ("distinct_miners", "distinct"), ("orphans", "orphans"),
           ("database_locked", "locked"), ("clean_failures", "clean fail"), ("unclean_failures", "unclean"),
           ("wall_median_s", "median s"), ("wall_max_s", "max s"), ("writer_committed", "writer ok"),
           ("writer_failed", "writer fail"))


class Network(BenchNetwork):
    """The bench's localnet, restarted when a scenario left it dirty."""

    def __init__(self, state_dir, ip_prefix, user_prefix):
        super().__init__(state_dir, MINERS, ip_prefix, user_prefix)
        self.restarts = 0

    def fresh(self):
        if concurrency.is_clean(concurrency.audit(self.state_dir)):
            return False
        print("  (the last scenario left allocations behind: restarting localnet)")
        self.down()
        self.up()
        self.restarts += 1
        return True


def module_args(check_timeout, allocate_timeout, **extra):
    return dict({"check_timeout": check_timeout, "allocate_timeout": allocate_timeout}, **extra)


def show_round(label, count, matching, result, verdict):
    print("%-12s N=%-3d M=%-3d %s  %s" % (label, count, matching, "  ".join(
        "%s %s" % (title, result[key]) for key, title in COLUMNS), verdict))
    if result["failure_messages"]:
        print("    failures: %s" % json.dumps(result["failure_messages"]))
    if result["orphan_details"]:
        print("    orphans: %s" % json.dumps(result["orphan_details"]))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1, help="repetitions of every scenario (default 1)")
    parser.add_argument("--check-timeout", type=float, default=CHECK_TIMEOUT, help="module check_timeout (5)")
    parser.add_argument("--allocate-timeout", type=float, default=ALLOCATE_TIMEOUT, help="module allocate_timeout (30)")
    parser.add_argument("--writer-interval", type=float, default=0.05,
                        help="seconds between the validator writer's rounds (default 0.05)")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    address_options(parser, IP_PREFIX, USER_PREFIX)
    args = parser.parse_args()
    require_root("bench/concurrent_allocate.py")

    results, verdicts = [], []
    with tempfile.TemporaryDirectory(prefix="localnet-concurrent-") as state_dir:
        network = Network(state_dir, args.ip_prefix, args.user_prefix)
        workdir = os.path.join(state_dir, "runs")
        os.makedirs(workdir)
        try:
            print("localnet up, %d miners: %.2fs" % (MINERS, network.up()))
            env = concurrency.module_environment(state_dir)
            base = module_args(args.check_timeout, args.allocate_timeout)
            print("check_timeout %gs, allocate_timeout %gs, max_attempts: module default, validator writer every %gs"
                  % (args.check_timeout, args.allocate_timeout, args.writer_interval))
            for run in range(args.runs):
                for label, count, requirement in SCENARIOS:
                    network.fresh()
                    matching = len(concurrency.plan(env, workdir, dict(base, **requirement)))
                    prefix = "b%d-%d-%s" % (run, count, "more" if matching >= count else "fewer")
                    result = concurrency.allocation_round(state_dir, env, workdir, count, prefix,
                                                          dict(base, **requirement), ROUND_TIMEOUT_S,
                                                          args.writer_interval)
                    failed = concurrency.failed_checks(concurrency.round_checks(result, count, matching))
                    verdict = "PASS" if not failed else "FAIL (%s)" % "; ".join(failed)
                    show_round(label, count, matching, result, verdict)
                    result.update(scenario=label, n=count, m=matching, requirement=requirement, run=run,
                                  verdict=verdict)
                    results.append(result)
                    verdicts.append(not failed)
                network.fresh()
                race = concurrency.late_race(state_dir, env, workdir, network.fault, base, RACE_REQUIREMENT, LATE_S,
                                             RACE_DELAY_S, ROUND_TIMEOUT_S, prefix="race%d" % run)
                failed = concurrency.failed_checks(concurrency.race_checks(race))
                verdict = "PASS" if not failed else "FAIL (%s)" % "; ".join(failed)
                print("late race    target uid %s: A %s, B %s; same miner %s, A's name kept %s, A's login %s, "
                      "orphans %d, locked %d  %s" % (
                          race["target_uid"], json.dumps(race["a"]), json.dumps(race["b"]), race["same_miner"],
                          race["a_name_kept"], "ok" if race["a_login_ok"] else race["a_login"], race["orphans"],
                          race["database_locked"], verdict))
                race.update(scenario="late race", run=run, verdict=verdict)
                results.append(race)
                verdicts.append(not failed)
        finally:
            network.down()

    print()
    print("%-12s %4s %4s %s" % ("scenario", "N", "M", " ".join("%10s" % title for _key, title in COLUMNS)))
    for result in results:
        if result["scenario"] == "late race":
            continue
        print("%-12s %4d %4d %s" % (result["scenario"], result["n"], result["m"], " ".join(
            "%10s" % result[key] for key, _title in COLUMNS)))
    print("localnet restarts after a scenario left allocations behind: %d" % network.restarts)
    print("checks: %d of %d scenarios PASS" % (sum(verdicts), len(verdicts)))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(results, handle, indent=1, sort_keys=True, default=str)
    return 0 if all(verdicts) else 1


if __name__ == "__main__":
    sys.exit(main())
