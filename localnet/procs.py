"""Processes that `up` starts, identified by PID and start time so a reused PID is never killed."""

import os
import signal
import time


def start_time(pid):
    """The process's start time in clock ticks since boot, or None when it does not exist."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            # The command name (field 2) may hold spaces; fields after its ")" are fixed.
            return int(handle.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def identity(pid):
    return {"pid": pid, "start": start_time(pid)}


def alive(ident):
    """True while the recorded process runs (and is not a zombie)."""
    if ident.get("start") is None or start_time(ident["pid"]) != ident["start"]:
        return False
    try:
        with open("/proc/%d/stat" % ident["pid"]) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children_map():
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as handle:
                    ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    return children


def with_descendants(idents):
    """The recorded processes still alive plus everything they forked (sshd's session processes)."""
    live = [ident for ident in idents if alive(ident)]
    children = _children_map()
    found = list(live)
    queue = [ident["pid"] for ident in live]
    while queue:
        for child in children.get(queue.pop(), []):
            found.append(identity(child))
            queue.append(child)
    return found


def stop(idents, grace=5.0):
    """SIGTERM the processes, SIGKILL what remains after grace seconds; return what still runs."""
    targets = with_descendants(idents)
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 2.0)):
        for ident in targets:
            if alive(ident):
                try:
                    os.kill(ident["pid"], sig)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and any(alive(ident) for ident in targets):
            time.sleep(0.05)
        targets = [ident for ident in targets if alive(ident)]
        if not targets:
            break
    return targets
