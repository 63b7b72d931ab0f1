#!/usr/bin/env python
"""Run nicompute_allocate in its own process group and SIGKILL the whole group as soon as the
miner has granted the allocation, i.e. before the module could hear the answer and record it.

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
            os.killpg(process.pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.1)
    if not killed and process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    print(json.dumps({"killed": killed, "seconds": round(time.monotonic() - started, 2)}))


if __name__ == "__main__":
    main()
