#!/usr/bin/env python
"""Run nicompute_allocate and SIGKILL it, with every process it started, as soon as the miner has
granted the allocation, i.e. before the module could hear the answer and record it.

ansible-core's worker calls setsid(), so the module is not in the `ansible` process group:
the whole process tree is killed instead, found through /proc.

usage: kill_after_grant.py LOCALNET_CTL MINER_HOTKEY MODULE_ARGS_JSON
Prints JSON: {"killed": bool, "seconds": float}.
"""

import json
import os
import signal
import subprocess
import sys
import time

GRANT_TIMEOUT_S = 30.0


def miner_allocated(ctl, hotkey):
    status = json.loads(subprocess.run([ctl, "status", "--json"], check=True, capture_output=True, text=True).stdout)
    return any(m["hotkey"] == hotkey and m["allocated"] for m in status["miners"])


def descendants(root):
    """root and every process below it (read from /proc before anything is killed)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    stat = handle.read()
            except OSError:
                continue
            parent = int(stat[stat.rindex(")") + 2:].split()[1])
            children.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def kill_tree(root):
    for pid in descendants(root):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def main():
    ctl, hotkey, module_args = sys.argv[1:4]
    ansible = os.path.join(os.path.dirname(sys.executable), "ansible")
    started = time.monotonic()
    process = subprocess.Popen([ansible, "localhost", "-m", "neuralinternet.compute.nicompute_allocate",
                                "-a", module_args], start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    killed = False
    while time.monotonic() - started < GRANT_TIMEOUT_S and process.poll() is None:
        if miner_allocated(ctl, hotkey):
            kill_tree(process.pid)
            killed = True
            break
        time.sleep(0.1)
    if not killed and process.poll() is None:
        kill_tree(process.pid)
    process.wait()
    print(json.dumps({"killed": killed, "seconds": round(time.monotonic() - started, 2)}))


if __name__ == "__main__":
    main()
