"""What one network task's module process costs at 8 miners: wall, peak RSS and what it imports.

Run as root from the collection root: .venv/bin/python bench/network_task.py [options]
Brings up its own 8-miner localnet (temp state dir; --ip-prefix 127.0.43, --user-prefix nint by
default; `--build-seconds 0`, so the miner answers an allocate at once and the figure is the
collection's, not a simulated docker build), then runs each network task as the module process a
playbook task on localhost runs, --runs times:

  allocate         nicompute_allocate (no requirement, check_timeout 2, W&B disabled)
  allocation_info  nicompute_allocation_info check_status: true (asks the miner)
  deallocate       nicompute_deallocate names: [the allocation]

(with --with-wandb also an allocate and a deallocate that publish to the localnet's W&B stand-in,
reported, not checked: the wandb client runs in a child process and costs the same whatever the
network's size)
and, in the same run, two reference processes: the floor (Python, ansible.module_utils.basic and
a 2048-bit RSA key: what any allocate task pays) and `import bittensor` alone (what every network
task paid before it spoke the wire format itself). One more run of each task under
`python -X importtime` lists which of bittensor, aiohttp, bittensor_wallet, cryptography and wandb
it imported (not timed). Prints median and max wall and peak RSS; checks each task's median
≤ 0.8 s (--limit). Exit status 1 when a task fails or a check fails. Not part of the test suite.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile

from localnet_cmd import BenchNetwork, address_options, require_root, timed_process

from localnet.concurrency import MODULE_PACKAGE, module_environment  # noqa: E402  pylint: disable=wrong-import-position

WATCHED = ("bittensor", "bittensor_wallet", "aiohttp", "cryptography", "wandb")
FLOOR = ("import json, sys\n"
         "from ansible.module_utils.basic import AnsibleModule\n"
         "from cryptography.hazmat.primitives.asymmetric import rsa\n"
         "rsa.generate_private_key(public_exponent=65537, key_size=2048)\n")
BITTENSOR = "import bittensor\n"


def task_args(name, with_wandb=False):
    published = [("allocate, W&B on", "nicompute_allocate", {"name": name + "-w", "check_timeout": 2}),
                 ("deallocate, W&B on", "nicompute_deallocate", {"names": [name + "-w"], "timeout": 10})]
    quiet = [("allocate", "nicompute_allocate", {"name": name, "check_timeout": 2, "wandb_mode": "disabled"}),
             ("allocation_info", "nicompute_allocation_info", {"check_status": True, "timeout": 2,
                                                               "wandb_mode": "disabled"}),
             ("deallocate", "nicompute_deallocate", {"names": [name], "wandb_mode": "disabled", "timeout": 10})]
    return (published if with_wandb else []) + quiet


def module_command(module, args_file, trace=False):
    return [sys.executable] + (["-X", "importtime"] if trace else []) + ["-m", MODULE_PACKAGE + module, args_file]


def run_task(workdir, env, label, module, args, trace=False):
    args_file = os.path.join(workdir, "%s.json" % label)
    with open(args_file, "w") as handle:
        json.dump({"ANSIBLE_MODULE_ARGS": args}, handle)
    measured = timed_process(module_command(module, args_file, trace), env, workdir)
    result = json.loads(measured["stdout"]) if measured["returncode"] == 0 else None
    if result is None or result.get("failed"):
        raise RuntimeError("%s failed: %s" % (label, (measured["stdout"] + measured["stderr"])[-1500:]))
    return measured


def imported(stderr):
    names = set()
    for line in stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip())
    return dict((package, any(n == package or n.startswith(package + ".") for n in names)) for package in WATCHED)


def figures(label, samples):
    walls = [s["wall_s"] for s in samples]
    return {"task": label, "n": len(samples), "median_s": statistics.median(walls), "max_s": max(walls),
            "peak_rss_mib": max(s["peak_rss_kib"] for s in samples) / 1024.0}


def measure(network, args, workdir):
    env = module_environment(network.state_dir)
    # The W&B stand-in's temporary files stay in the bench's directory.
    env["TMPDIR"] = workdir
    samples = dict((label, []) for label in ["floor", "import bittensor"]
                   + [label for label, _module, _args in task_args("x", args.with_wandb)])
    for run in range(args.runs):
        samples["floor"].append(timed_process([sys.executable, "-c", FLOOR], env, workdir))
        samples["import bittensor"].append(timed_process([sys.executable, "-c", BITTENSOR], env, workdir))
        for label, module, module_args in task_args("nt-%d" % run, args.with_wandb):
            samples[label].append(run_task(workdir, env, label, module, module_args))
    imports = {}
    for label, module, module_args in task_args("nt-trace"):
        imports[label] = imported(run_task(workdir, env, label, module, module_args, trace=True)["stderr"])
    return [figures(label, values) for label, values in samples.items()], imports


def show(rows, imports, limit):
    failed = False
    print("%-19s %4s %9s %7s %14s  %s" % ("process", "n", "median s", "max s", "peak RSS MiB", "check"))
    for row in rows:
        check = ""
        if row["task"] in imports and "W&B" not in row["task"]:
            ok = row["median_s"] <= limit
            failed |= not ok
            check = "%s (median <= %.1f s)" % ("PASS" if ok else "FAIL", limit)
        print("%-19s %4d %9.3f %7.3f %14.1f  %s" % (
            row["task"], row["n"], row["median_s"], row["max_s"], row["peak_rss_mib"], check))
    print("\nimported by one traced run of each task:")
    for label, packages in imports.items():
        print("  %-19s %s" % (label, ", ".join("%s %s" % (p, "yes" if hit else "no") for p, hit in packages.items())))
        failed |= packages["bittensor"]
    return failed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n", maxsplit=1)[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--limit", type=float, default=0.8, help="a task's median module-process seconds (0.8)")
    parser.add_argument("--json", help="also write the figures to this file")
    parser.add_argument("--with-wandb", action="store_true",
                        help="also allocate and deallocate publishing to the localnet's W&B stand-in (not checked)")
    address_options(parser, "127.0.43", "nint")
    args = parser.parse_args()
    require_root("network_task.py")
    with tempfile.TemporaryDirectory(prefix="bench-network-task-") as workdir:
        network = BenchNetwork(os.path.join(workdir, "localnet"), 8, args.ip_prefix, args.user_prefix,
                               "--build-seconds", "0")
        network.up()
        try:
            rows, imports = measure(network, args, workdir)
        finally:
            network.down()
    failed = show(rows, imports, args.limit)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"rows": rows, "imports": imports}, handle, indent=1)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
