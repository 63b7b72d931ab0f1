"""Each of the collection's tasks against ansible.builtin.ping, per task, in one playbook run.

Run from the collection root: .venv/bin/python bench/task_ratio.py [options]

Tasks that need no network (issue 11's target: each at most 1.2x ping), against the state
bench/resources_listing.py builds in a temp dir (localnet's seeding of N miners, no miner started,
W&B disabled, 8 upstream allocations and 8 penalties planted):

  resources        nicompute_resources, source database
  allocation_info  nicompute_allocation_info (no check_status, no in_metagraph)
  penalty_info     nicompute_penalty_info
  penalty          nicompute_penalty state present on a miner already penalized (changes nothing)
  deallocate_none  nicompute_deallocate of a name that has no allocation (nothing to release)

nicompute_allocate has no such task: even a dry run asks the miners whether they are free.

With --localnet-env STATE_DIR/env (a running localnet; start it with `--build-seconds 0
--sync-seconds 0 --no-foreign-validators` for steady figures: no simulated docker build, and no
miner releases the bench's unpublished boxes), the network tasks too, each repetition on a box of
its own, W&B disabled (publishing is not a miner round trip) and every other setting from the env
file (target: at most 1.5x ping plus the task's miner round trips):

  allocate        nicompute_allocate, no requirement, check_timeout 2: 3 round trips (the ranked
                  availability check, the chosen miner asked again right before the request, the
                  allocate request)
  info_status     nicompute_allocation_info check_status for that box: 1 (the status request)
  container       nicompute_container action status for that box: 1
  deallocate      nicompute_deallocate of that box: 1 (the deallocate request)

A round trip is counted at what it costs on the wire: one status request to a localnet miner,
timed in this process on a warm client (wallet loaded, nothing imported any more), median of
--rt-samples; the allocate request is counted at the time the miner took to answer it, which the
task reports (`attempts[].elapsed`; it includes the miner's build). A network task's net time is its
time less its round trips; its ratio is net time / ping. What a task spends on a round trip besides
the wire (its network code's imports, the wallet, the event loop) counts against its ratio.

One ansible-playbook run on localhost (gather_facts off, connection local): a warm-up ping, an
untimed check of each listing (every miner, the planted allocations and penalties), then K
repetitions of ping and every task kind, interleaved, so machine noise hits every kind alike. The
stdout callback (the default one, subclassed: bench/_playbook_timing.py) records each task's wall
time on the controller, task start to result. Prints the median and p90 per kind and each kind's
ratio of medians to ping. Exit status 0 when the measurement ran (1 with --require-ratio when a
no-network task is above 1.2x), 1 when something broke. About 1 minute on 2 cores with K = 20
(1.5 with a localnet). Not part of the test suite.
"""

import argparse
import os
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import ansible
import yaml
from _playbook_timing import (
    localhost_inventory,
    measured_in_work_dir,
    require_venv,
    run_playbook,
    show_failure,
    summary,
    timed_records,
    write_callback,
    write_file,
)
from allocate_failover import settings_from_env
from resources_listing import build_state, planted_status, settings_options

from ansible_collections.neuralinternet.compute.plugins.module_utils._client import ComputeClient
from ansible_collections.neuralinternet.compute.plugins.module_utils._store_read import StoreReader
from localnet.concurrency import read_env

PING = "ansible.builtin.ping"
COLLECTION = "neuralinternet.compute."
LOCAL_TARGET = 1.2
NETWORK_TARGET = 1.5
# Any text: a miner that does not hold this key answers "not held", a full round trip all the same.
UNKNOWN_KEY = "-----BEGIN PUBLIC KEY-----\nnot held by anyone\n-----END PUBLIC KEY-----\n"
ALLOCATION_NAME = "tr-ratio-%d"


@dataclass(frozen=True)
class Kind:
    """A kind of timed task: a module with its options (ALLOCATION_NAME takes the repetition's index)."""

    name: str
    module: str
    args: dict = field(default_factory=dict)
    # Miner round trips on the task's path, the allocate request included.
    round_trips: int = 0

    def task(self, index, defaults=None):
        args = dict(defaults or {})
        args.update((key, _indexed(value, index)) for key, value in self.args.items())
        return {"name": "%s %d" % (self.name, index), self.module: args}


def _indexed(value, index):
    if isinstance(value, list):
        return [_indexed(item, index) for item in value]
    return value % index if isinstance(value, str) and "%d" in value else value


def local_kinds(penalized_hotkey):
    return (
        Kind("resources", COLLECTION + "nicompute_resources", {"source": "database"}),
        Kind("allocation_info", COLLECTION + "nicompute_allocation_info"),
        Kind("penalty_info", COLLECTION + "nicompute_penalty_info"),
        Kind("penalty", COLLECTION + "nicompute_penalty", {"hotkeys": [penalized_hotkey], "state": "present"}),
        Kind("deallocate_none", COLLECTION + "nicompute_deallocate", {"names": ["tr-ratio-none"]}),
    )


NETWORK_KINDS = (
    Kind("allocate", COLLECTION + "nicompute_allocate", {"name": ALLOCATION_NAME, "check_timeout": 2}, 3),
    Kind("info_status", COLLECTION + "nicompute_allocation_info",
         {"names": [ALLOCATION_NAME], "check_status": True, "timeout": 5}, 1),
    Kind("container", COLLECTION + "nicompute_container", {"name": ALLOCATION_NAME, "action": "status",
                                                           "timeout": 10}, 1),
    Kind("deallocate", COLLECTION + "nicompute_deallocate", {"names": [ALLOCATION_NAME], "timeout": 10}, 1),
)


def checks(layout, local_defaults):
    """Untimed tasks that fail unless the no-network tasks see the state as planted."""
    planted = Counter(planted_status(uid) for uid in layout.miner_uids)
    listing = {"name": "check: resources lists %d miners" % layout.miners,
               COLLECTION + "nicompute_resources": dict(local_defaults), "register": "listing",
               "failed_when": "listing.resources | default([]) | length != %d" % layout.miners}
    allocations = {"name": "check: allocation_info lists the %d planted allocations" % planted["allocated"],
                   COLLECTION + "nicompute_allocation_info": dict(local_defaults), "register": "info",
                   "failed_when": "info.allocations | default([]) | length != %d" % planted["allocated"]}
    penalties = {"name": "check: penalty_info lists the %d planted penalties" % planted["penalized"],
                 COLLECTION + "nicompute_penalty_info": dict(local_defaults), "register": "penalties",
                 "failed_when": "penalties.penalties | default([]) | length != %d" % planted["penalized"]}
    return [listing, allocations, penalties]


def playbook(layout, kinds, network_kinds, network_env, repeat):
    """The play: warm-up, checks, then `repeat` rounds of ping and every kind. The no-network tasks get
    the bench state's settings as options; the network tasks the localnet's through the environment,
    as the modules' fallbacks read it, with W&B disabled."""
    local_defaults = settings_options(layout)
    tasks = [{"name": "warm-up: ping", PING: {}}] + checks(layout, local_defaults)
    for index in range(repeat):
        tasks.append({"name": "ping %d" % index, PING: {}})
        tasks.extend(kind.task(index, local_defaults) for kind in kinds)
        for kind in network_kinds:
            task = kind.task(index, {"wandb_mode": "disabled"})
            task["environment"] = network_env
            tasks.append(task)
    return [{"name": "collection tasks against ping", "hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def penalized_hotkey(layout):
    with StoreReader(layout.db_path) as store:
        return sorted(store.penalties())[0]


def round_trip_seconds(settings, samples):
    """Median seconds of one status request to a serving miner, on a warm client, in this process."""
    client = ComputeClient(settings)
    neuron = min((n for n in client.neurons().values() if n.serving and n.uid > 0), key=lambda n: n.uid)
    client.query.still_allocated(neuron, UNKNOWN_KEY, 5)  # warm-up: the wallet, imports, first connection
    times = []
    for _sample in range(samples):
        started = time.monotonic()
        reply = client.query.still_allocated(neuron, UNKNOWN_KEY, 5)
        times.append(time.monotonic() - started)
        if reply.status is None:
            raise RuntimeError("miner uid %d did not answer a status request: %s" % (neuron.uid, reply.describe()))
    return statistics.median(times)


def net_seconds(record, kind, round_trip_s):
    """A network task's time less its round trips: the allocate request at what the miner took, the rest at round_trip_s."""
    allocate_request_s = record["attempts_elapsed_s"]
    wire = (kind.round_trips - (1 if allocate_request_s else 0)) * round_trip_s + allocate_request_s
    return record["seconds"] - wire


def kind_figures(records, ping_median_s, kind, round_trip_s):
    seconds = [record["seconds"] for record in records]
    figures = dict(summary(seconds), module=kind.module, args=kind.args, round_trips=kind.round_trips,
                   ratio=statistics.median(seconds) / ping_median_s)
    if kind.round_trips:
        net = [net_seconds(record, kind, round_trip_s) for record in records]
        figures.update(net_median_s=statistics.median(net), net_ratio=statistics.median(net) / ping_median_s,
                       target=NETWORK_TARGET, passed=statistics.median(net) / ping_median_s <= NETWORK_TARGET)
    else:
        figures.update(target=LOCAL_TARGET, passed=figures["ratio"] <= LOCAL_TARGET)
    return figures


def machine():
    with open("/proc/cpuinfo") as handle:
        models = [line.split(":", 1)[1].strip() for line in handle if line.startswith("model name")]
    return {"cpu": models[0] if models else platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "ansible_core": ansible.__version__, "system": platform.platform()}


def show_figures(figures):
    print("machine: %(cpu)s, %(cores)d cores, Python %(python)s, ansible-core %(ansible_core)s" % figures["machine"])
    print("%-16s %-48s %4s %9s %9s %7s   %s" % ("kind", "module", "n", "median s", "p90 s", "ratio", "target"))
    ping = figures["ping"]
    print("%-16s %-48s %4d %9.3f %9.3f %6.2fx" % ("ping", PING, ping["n"], ping["median_s"], ping["p90_s"], 1.0))
    for name, kind in figures["kinds"].items():
        if kind["round_trips"]:
            verdict = "net %.3fs, %.2fx <= %.1fx + %d round trip%s: %s" % (
                kind["net_median_s"], kind["net_ratio"], kind["target"], kind["round_trips"],
                "" if kind["round_trips"] == 1 else "s", "PASS" if kind["passed"] else "FAIL")
        else:
            verdict = "<= %.1fx: %s" % (kind["target"], "PASS" if kind["passed"] else "FAIL")
        print("%-16s %-48s %4d %9.3f %9.3f %6.2fx   %s" % (
            name, kind["module"], kind["n"], kind["median_s"], kind["p90_s"], kind["ratio"], verdict))
    if figures.get("round_trip_s") is not None:
        print("round trip: %.4fs, one status request to a localnet miner on a warm client in this process (median "
              "of %d); the allocate request at the miner's own elapsed time" % (
                  figures["round_trip_s"], figures["rt_samples"]))


def measure(work_dir, args):
    """Build the state, run the playbook (and time a round trip); returns the figures, or None when it broke."""
    started = time.monotonic()
    layout = build_state(os.path.join(work_dir, "state"), args.miners)
    kinds = local_kinds(penalized_hotkey(layout))
    network_env, network_kinds, round_trip_s = {}, (), None
    if args.localnet_env:
        network_env = read_env(os.path.dirname(os.path.abspath(args.localnet_env)))
        network_kinds = NETWORK_KINDS
    print("state: %d miners, built in %.2fs" % (args.miners, time.monotonic() - started))
    write_callback(work_dir)
    book = write_file(os.path.join(work_dir, "playbook.yml"), yaml.safe_dump(
        playbook(layout, kinds, network_kinds, network_env, args.repeat), sort_keys=False, width=160))
    completed, playbook_s = run_playbook(work_dir, book, localhost_inventory(work_dir, "timed"), "timed")
    if completed.returncode != 0:
        show_failure(completed)
        return None
    print("playbook: a warm-up ping, %d checks, %d rounds of ping and %d kinds interleaved: %.1fs in all"
          % (len(checks(layout, {})), args.repeat, len(kinds) + len(network_kinds), playbook_s))
    every_kind = dict((kind.name, kind) for kind in kinds + network_kinds)
    found = timed_records(work_dir, ["ping"] + list(every_kind), args.repeat)
    if found is None:
        return None
    if network_kinds:
        round_trip_s = round_trip_seconds(settings_from_env(network_env), args.rt_samples)
    ping = summary([record["seconds"] for record in found["ping"]])
    return {"machine": machine(), "miners": args.miners, "repeat": args.repeat, "playbook_s": playbook_s,
            "ping": ping, "round_trip_s": round_trip_s, "rt_samples": args.rt_samples,
            "kinds": dict((name, kind_figures(found[name], ping["median_s"], kind, round_trip_s))
                          for name, kind in every_kind.items())}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--miners", type=int, default=240, help="miners in the bench state (240)")
    parser.add_argument("--repeat", type=int, default=20, help="timed tasks of each kind, at least 2 (20)")
    parser.add_argument("--localnet-env", metavar="FILE",
                        help="a running localnet's STATE_DIR/env: also time the network tasks against it")
    parser.add_argument("--rt-samples", type=int, default=10, help="status requests timed for the round trip (10)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (state, playbook, records) and print it")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    parser.add_argument("--require-ratio", action="store_true",
                        help="exit status 1 when a task that needs no network is above %.1fx" % LOCAL_TARGET)
    args = parser.parse_args()
    if args.repeat < 2 or args.miners < 1 or args.rt_samples < 1:
        parser.error("--repeat must be at least 2, --miners and --rt-samples at least 1")
    if args.localnet_env and os.path.basename(args.localnet_env) != "env":
        parser.error("--localnet-env takes a localnet's STATE_DIR/env file")
    require_venv()

    figures = measured_in_work_dir("nicompute-task-ratio-", args.keep, args.json,
                                   lambda work_dir: measure(work_dir, args), show_figures)
    if figures is None:
        return 1
    local_failed = [name for name, kind in figures["kinds"].items() if not kind["round_trips"] and not kind["passed"]]
    return 1 if args.require_ratio and local_failed else 0


if __name__ == "__main__":
    sys.exit(main())
