"""nicompute_allocate among 240 localnet miners: all healthy, the top quarter silent, 120 silent.

Run as root from the collection root: .venv/bin/python bench/allocate_at_scale.py [options]
Brings up its own localnet of --miners (240) miners (temp state dir; --ip-prefix, default
127.0.41, --user-prefix, default nisc; miners grant at once, `--build-seconds 0`, so the time
is the client's). Every run is the real module as its own process (`python -m
...nicompute_allocate ARGS.json`, settings from the localnet's env file, as a playbook task on
localhost runs it) with no requirement, check_timeout --check-timeout (2 s) and W&B
--wandb-mode (disabled: publishing costs the same at any size, see network_task.py); then one
nicompute_deallocate (not timed) releases it, so the next run starts clean. The ranking comes
from a check-mode run of the module. Scenarios, --runs (10) runs each:

  A       no fault
  B       the top-ranked quarter of the candidates `unresponsive` (accept, never answer)
  C       the --many-silent (120) top-ranked candidates `unresponsive`: more than a connection
          pool's default (aiohttp: 100), so healthy miners must not wait behind silent ones
  B busy  B and C again while another process keeps one core busy (only with --busy)
  C busy

Prints per scenario: successes, runs on the best-ranked healthy miner (the first candidate in
ranking order that is not silent), median and max wall of the module process, its peak RSS;
and checks: every run succeeds, each on that miner, median <= check_timeout + 1.5 s.
Exit status 1 when a check fails. About 5 minutes (8.5 with --busy) on 2 cores. Not part of the
test suite. While developing: --miners 32 --runs 2.
"""

import argparse
import collections
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile

from localnet_cmd import BenchNetwork, address_options, require_root

from localnet import concurrency  # noqa: E402

# Away from the default 127.0.0.x / nicm users, the other benches' prefixes and the tests (127.50-249.x).
IP_PREFIX, USER_PREFIX = "127.0.41", "nisc"
MINERS = 240
SILENT_SHARE = 0.25
MANY_SILENT = 120
# What the module may spend beyond one check_timeout: start, imports, ranking, one allocate request, records.
SLACK_S = 1.5
ALLOCATE_TIMEOUT = 10
# The ranking run waits for every miner, so that its plan lists them all even on a loaded machine.
PLAN_CHECK_TIMEOUT = 30
# Bound on one module process (check + max_attempts allocate requests, with room).
RUN_TIMEOUT_S = 120.0

Scenario = collections.namedtuple("Scenario", "label silent busy")


class Silence:
    """Which miners are `unresponsive`: a new set changes only the difference, so moving between
    scenarios (B's miners are C's first ones) writes few fault files."""

    def __init__(self, network):
        self.network = network
        self.uids = set()

    def set(self, uids):
        wanted = set(uids)
        self.network.set_faults(sorted(self.uids - wanted), "healthy")
        self.network.set_faults(sorted(wanted - self.uids), "unresponsive")
        self.uids = wanted


@contextlib.contextmanager
def cpu_burner(on):
    """Another process keeping one core busy meanwhile (a controller running other work)."""
    if not on:
        yield
        return
    burner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        burner.kill()
        burner.wait()


def module_args(name, check_timeout):
    return {"name": name, "check_timeout": check_timeout, "allocate_timeout": ALLOCATE_TIMEOUT}


def ranking(env, workdir):
    """Candidate uids in the order the module tries them (check mode allocates nothing)."""
    return [candidate["uid"] for candidate in
            concurrency.plan(env, workdir, module_args("sc-plan", PLAN_CHECK_TIMEOUT), name="sc-plan")]


def scenarios(ranked, many_silent, busy):
    quarter = round(len(ranked) * SILENT_SHARE)
    # A small network (while developing) cannot silence 120: keep one candidate healthy.
    many = min(many_silent, len(ranked) - 1)
    plain = [Scenario("A", 0, False), Scenario("B", quarter, False), Scenario("C", many, False)]
    loaded = [Scenario("B busy", quarter, True), Scenario("C busy", many, True)] if busy else []
    # B's silent miners stay silent into C: B busy follows B, C busy follows C.
    return sorted(plain + loaded, key=lambda s: s.silent)


def release(state_dir, env, workdir, run):
    """Leave nothing allocated for the next run (not timed): nicompute_deallocate by name, or,
    after a failed run, whatever the database still records."""
    if run.succeeded:
        done = concurrency.run_module("nicompute_deallocate", {"names": [run.name]}, env, workdir, RUN_TIMEOUT_S,
                                      name=run.name + "-release")
        if not done.succeeded:
            raise RuntimeError("releasing %s failed: %s" % (run.name, done.message))
        return
    _done, after = concurrency.release_all(state_dir, env, workdir, name=run.name + "-cleanup")
    if not concurrency.is_clean(after):
        raise RuntimeError("after %s the network is not clean: %s" % (run.name, after))


def allocate_once(state_dir, env, workdir, name, check_timeout):
    """One nicompute_allocate process (timed, its peak RSS kept), then its release."""
    run = concurrency.ModuleRun(name, "nicompute_allocate", module_args(name, check_timeout), workdir).start(env)
    concurrency.wait_all([run], RUN_TIMEOUT_S)
    release(state_dir, env, workdir, run)
    return run


def figures(scenario, runs, best, limit):
    ok = [run for run in runs if run.succeeded]
    walls = [run.wall_s for run in runs]
    rss = [run.peak_rss_kib for run in runs if run.peak_rss_kib]
    result = {
        "scenario": scenario.label,
        "silent": scenario.silent,
        "best_uid": best,
        "runs": len(runs),
        "successes": len(ok),
        "on_best": sum(1 for run in ok if run.allocation["uid"] == best),
        "uids": dict(collections.Counter(run.allocation["uid"] for run in ok)),
        "median_s": statistics.median(walls),
        "max_s": max(walls),
        "peak_rss_mib": max(rss) / 1024.0 if rss else None,
        "failures": dict(collections.Counter(run.message[:200] for run in runs if not run.succeeded)),
    }
    checks = [
        ("%d/%d succeed" % (len(runs), len(runs)), result["successes"] == len(runs)),
        ("each on uid %d" % best, result["on_best"] == len(runs)),
        ("median <= %.1fs" % limit, result["median_s"] <= limit),
    ]
    result["failed_checks"] = [label for label, passed in checks if not passed]
    return result


def show(result):
    print("%-7s silent %3d  ok %2d/%-2d  on best uid %3d: %2d/%-2d  median %5.2fs  max %5.2fs  peak RSS %s  %s" % (
        result["scenario"], result["silent"], result["successes"], result["runs"], result["best_uid"],
        result["on_best"], result["runs"], result["median_s"], result["max_s"],
        "%.0f MiB" % result["peak_rss_mib"] if result["peak_rss_mib"] else "-",
        "FAIL (%s)" % "; ".join(result["failed_checks"]) if result["failed_checks"] else "PASS"), flush=True)
    if result["on_best"] != result["successes"]:
        print("    allocated on uids (runs): %s" % result["uids"])
    for message, count in result["failures"].items():
        print("    %d x %s" % (count, message))


def run_scenarios(network, args):
    env = concurrency.module_environment(network.state_dir)
    workdir = os.path.join(network.state_dir, "runs")
    os.makedirs(workdir)
    # The runs' temporary files stay in the state dir, removed with it.
    env["TMPDIR"] = workdir
    # Publishing costs the same at any network size (bench/network_task.py --with-wandb shows it):
    # disabled by default, so the figures are the availability check's.
    env["NICOMPUTE_WANDB_MODE"] = args.wandb_mode
    ranked = ranking(env, workdir)
    print("%d candidates (ranked, check mode); check_timeout %gs, allocate_timeout %ds, max_attempts: module default"
          % (len(ranked), args.check_timeout, ALLOCATE_TIMEOUT), flush=True)
    silence = Silence(network)
    limit = args.check_timeout + SLACK_S
    results = []
    for scenario in scenarios(ranked, args.many_silent, args.busy):
        silence.set(ranked[:scenario.silent])
        prefix = "sc-%s" % scenario.label.replace(" ", "-")
        with cpu_burner(scenario.busy):
            runs = [allocate_once(network.state_dir, env, workdir, "%s-%02d" % (prefix, index), args.check_timeout)
                    for index in range(args.runs)]
        results.append(figures(scenario, runs, ranked[scenario.silent], limit))
        show(results[-1])
    return results


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=MINERS, help="miners in the localnet (default %d)" % MINERS)
    parser.add_argument("--check-timeout", type=float, default=2.0, help="module check_timeout (default 2 s)")
    parser.add_argument("--runs", type=int, default=10, help="module runs per scenario (default 10)")
    parser.add_argument("--many-silent", type=int, default=MANY_SILENT,
                        help="top-ranked candidates silent in C (default %d)" % MANY_SILENT)
    parser.add_argument("--busy", action="store_true", help="also run B and C with one core kept busy")
    parser.add_argument("--wandb-mode", choices=("disabled", "online"), default="disabled",
                        help="disabled (default), or online: publish to the localnet's W&B stand-in")
    address_options(parser, IP_PREFIX, USER_PREFIX)
    args = parser.parse_args()
    require_root("bench/allocate_at_scale.py")

    print("%d cores, load average %s" % (os.cpu_count(), " ".join("%.2f" % x for x in os.getloadavg())))
    with tempfile.TemporaryDirectory(prefix="sc-at-scale-") as state_dir:
        network = BenchNetwork(state_dir, args.miners, args.ip_prefix, args.user_prefix, "--build-seconds", "0")
        try:
            print("localnet up, %d miners: %.1fs" % (args.miners, network.up()), flush=True)
            results = run_scenarios(network, args)
        finally:
            network.down()

    print()
    print("%-7s %6s %5s %7s %8s %7s %8s  %s" % ("", "silent", "ok", "on best", "median s", "max s", "RSS MiB", "check"))
    for result in results:
        print("%-7s %6d %2d/%-2d %4d/%-2d %8.2f %7.2f %8s  %s" % (
            result["scenario"], result["silent"], result["successes"], result["runs"], result["on_best"],
            result["runs"], result["median_s"], result["max_s"],
            "%.0f" % result["peak_rss_mib"] if result["peak_rss_mib"] else "-",
            "FAIL" if result["failed_checks"] else "PASS"))
    print("load average %s" % " ".join("%.2f" % x for x in os.getloadavg()))
    return 1 if any(result["failed_checks"] for result in results) else 0


if __name__ == "__main__":
    sys.exit(main())
