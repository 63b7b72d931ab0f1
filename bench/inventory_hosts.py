"""The nicompute inventory plugin over 1,000 and 10,000 allocations, cold and cached.

Run from the collection root (no root, no localnet): .venv/bin/python bench/inventory_hosts.py [options]

For each size N, builds a validator database in a temp dir with N active allocations (the
collection's own records and upstream `allocation` rows, as nicompute_allocate leaves them) and N
miners' specs, then times `ansible-inventory -i SOURCE --graph` - loading the inventory, what every
playbook run pays - and `--list`, which also renders every host's variables as JSON:

- cold: no cache, the plugin reads the database (--flush-cache on a cached source);
- cached: the same source with `cache: true` (ansible.builtin.jsonfile), after a first run filled it;
- static: the same hosts with the same variables in a static YAML inventory (written from the
  plugin's own `--list --yaml`): what Ansible itself costs for this many hosts;
- baseline: `ansible-inventory -i <an empty static inventory> --list`, Ansible's floor.

Each figure is the median of R runs (default 5), all in the same process tree, so the ratios to the
baseline are what to compare across machines. Also times the plugin's own work in this process
(_inventory.allocation_entries + host_variables for every entry). Checks that every run listed N
hosts; exit status 1 when one did not. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

from localnet_cmd import REPO_ROOT

from ansible_collections.neuralinternet.compute.plugins.module_utils import _inventory
from ansible_collections.neuralinternet.compute.plugins.module_utils._store import AllocationStore

VENV_BIN = os.path.join(REPO_ROOT, ".venv", "bin")
COLLECTIONS_PATH = os.path.join(REPO_ROOT, ".build")
TARGET_S = 1.0
SPECS = json.dumps({"cpu": {"count": 64}, "gpu": {"count": 8, "capacity": 8 * 81559.0, "details": [
    {"name": "NVIDIA H100 80GB HBM3", "capacity": 81559.0}] * 8}, "hard_disk": {"free": 3e12}, "ram": {"available": 1e12}})
REGKEY = "-----BEGIN PUBLIC KEY-----\nbench %d\n-----END PUBLIC KEY-----\n"


def hotkey(index):
    # Unique, ss58-shaped enough for the plugin, which never checks them.
    return "5Bench%042d" % index


def build_database(path, count):
    """A database with count active allocations, written the way the store writes them, in one transaction."""
    AllocationStore(path, create=True).close()
    now = time.time()
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute("BEGIN")
    for index in range(count):
        key, ip = hotkey(index), "10.%d.%d.%d" % (index // 65536, index // 256 % 256, index % 256)
        details = {"username": "root", "password": "pw%08d" % index, "port": 4444, "version": 183, "ip": ip,
                   "resource": "nvidia h100 80gb hbm3", "regkey": REGKEY % index, "ssh_key": "", "uuid": str(index)}
        connection.execute("INSERT INTO allocation (hotkey, details) VALUES (?, ?)", (key, json.dumps(details)))
        connection.execute(
            "INSERT INTO nicompute_allocation (hotkey, name, state, uid, ip, regkey, ssh_key, resource, timeline, "
            "created_at, expires_at) VALUES (?, ?, 'active', ?, ?, ?, '', 'nvidia h100 80gb hbm3', 30, ?, ?)",
            (key, "box-%05d" % index, index % 256, ip, REGKEY % index, now, now + 30 * 86400))
        connection.execute("INSERT INTO miner_details (hotkey, details) VALUES (?, ?)", (key, SPECS))
    connection.execute("COMMIT")
    connection.close()


def write_sources(work_dir, db_path):
    sources = {"cold": {"plugin": "neuralinternet.compute.nicompute", "db_path": db_path, "private_key_files": []},
               "cached": {"plugin": "neuralinternet.compute.nicompute", "db_path": db_path, "private_key_files": [],
                          "cache": True, "cache_plugin": "ansible.builtin.jsonfile",
                          "cache_connection": os.path.join(work_dir, "cache"), "cache_timeout": 3600}}
    paths = {}
    for kind, config in sources.items():
        paths[kind] = os.path.join(work_dir, "%s.nicompute.yml" % kind)
        with open(paths[kind], "w") as handle:
            json.dump(config, handle)
    paths["baseline"] = os.path.join(work_dir, "empty.ini")
    with open(paths["baseline"], "w") as handle:
        handle.write("")
    return paths


def write_static_copy(work_dir, source):
    """A static YAML inventory with the hosts and variables the plugin makes from source."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_LOCAL_TEMP=os.path.join(work_dir, "tmp"))
    completed = subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", source, "--list", "--yaml"],
                               capture_output=True, text=True, env=env, cwd=work_dir, check=True)
    path = os.path.join(work_dir, "static.yml")
    with open(path, "w") as handle:
        handle.write(completed.stdout)
    return path


def list_inventory(work_dir, source, mode, *extra):
    """(seconds, number of hosts) of one ansible-inventory --graph or --list."""
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=COLLECTIONS_PATH, ANSIBLE_LOCAL_TEMP=os.path.join(work_dir, "tmp"))
    started = time.monotonic()
    completed = subprocess.run([os.path.join(VENV_BIN, "ansible-inventory"), "-i", source, mode] + list(extra),
                               capture_output=True, text=True, env=env, cwd=work_dir, check=False)
    seconds = time.monotonic() - started
    if completed.returncode != 0:
        raise RuntimeError("ansible-inventory failed: %s" % completed.stderr[-2000:])
    if mode == "--list":
        return seconds, len(json.loads(completed.stdout)["_meta"]["hostvars"])
    # --graph: one "|  |--host" line per host of the group, under @all and @nicompute or @ungrouped.
    return seconds, sum(1 for line in completed.stdout.splitlines() if line.startswith("  |  |--"))


def timed(work_dir, source, runs, expected, mode, *extra):
    seconds = []
    for _run in range(runs):
        elapsed, hosts = list_inventory(work_dir, source, mode, *extra)
        if hosts != expected:
            raise RuntimeError("%s %s found %d hosts, expected %d" % (source, mode, hosts, expected))
        seconds.append(elapsed)
    return statistics.median(seconds)


def plugin_work(db_path, runs):
    """Median seconds of the plugin's own work (entries and host variables) in this process."""
    seconds = []
    for _run in range(runs):
        started = time.monotonic()
        for entry in _inventory.allocation_entries(db_path):
            _inventory.host_variables(entry)
        seconds.append(time.monotonic() - started)
    return statistics.median(seconds)


def measure(size, runs):
    work_dir = tempfile.mkdtemp(prefix="nicompute-inventory-bench-")
    try:
        db_path = os.path.join(work_dir, "database.db")
        build_database(db_path, size)
        sources = write_sources(work_dir, db_path)
        list_inventory(work_dir, sources["cached"], "--graph")  # fills the cache
        static = write_static_copy(work_dir, sources["cold"])
        figures = {"size": size, "plugin_work_s": plugin_work(db_path, runs)}
        for mode in ("--graph", "--list"):
            label = mode.strip("-")
            figures.update({
                "%s_baseline_s" % label: timed(work_dir, sources["baseline"], runs, 0, mode),
                "%s_static_s" % label: timed(work_dir, static, runs, size, mode),
                "%s_cold_s" % label: timed(work_dir, sources["cold"], runs, size, mode),
                "%s_flushed_s" % label: timed(work_dir, sources["cached"], runs, size, mode, "--flush-cache"),
                "%s_cached_s" % label: timed(work_dir, sources["cached"], runs, size, mode)})
        return figures
    finally:
        shutil.rmtree(work_dir)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="allocation counts, comma-separated (1000,10000)")
    parser.add_argument("--runs", type=int, default=5, help="runs per figure, median taken (5)")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    figures = []
    print("%8s %-7s %12s %10s %10s %12s %10s" % ("hosts", "mode", "baseline s", "static s", "cold s", "flushed s",
                                                 "cached s"))
    try:
        for size in (int(item) for item in args.sizes.split(",")):
            item = measure(size, args.runs)
            figures.append(item)
            for label in ("graph", "list"):
                print("%8d %-7s %12.3f %10.3f %10.3f %12.3f %10.3f" % tuple(
                    [size, label] + [item["%s_%s_s" % (label, kind)] for kind in
                                     ("baseline", "static", "cold", "flushed", "cached")]))
            print("%8d plugin work in-process: %.3f s" % (size, item["plugin_work_s"]))
    except RuntimeError as error:
        print(error)
        return 1
    for item in figures:
        if item["size"] == 1000:
            verdict = "PASS" if item["graph_cold_s"] < TARGET_S else "FAIL"
            print("1,000 allocations loaded cold (--graph): %.3f s, target < %.1f s: %s; --list %.3f s"
                  % (item["graph_cold_s"], TARGET_S, verdict, item["list_cold_s"]))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
