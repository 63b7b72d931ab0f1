# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API, may change
# without notice. Who owns a claim: the host, pid and start time of the process that
# made it, so another run can tell a live run's record from a crashed run's leftover.
# A pid alone is not enough: pids are reused, so the start time must match too.

from __future__ import annotations

import os
import socket
from dataclasses import dataclass


def _boot_time():
    with open("/proc/stat") as handle:
        for line in handle:
            if line.startswith("btime "):
                return int(line.split()[1])
    raise OSError("no btime in /proc/stat")


def process_started(pid):
    """Unix time the process started (10 ms resolution on Linux), or None when it is not running.

    A zombie is not running: a killed run whose parent died too may stay one for good where
    nothing reaps orphans (a container whose pid 1 is not an init). Raises OSError where /proc
    cannot tell (not Linux).
    """
    try:
        with open("/proc/%d/stat" % pid) as handle:
            stat = handle.read()
    except FileNotFoundError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    fields = stat[stat.rindex(")") + 2:].split()
    if fields[0] in ("Z", "X", "x"):
        return None
    return round(_boot_time() + int(fields[19]) / os.sysconf("SC_CLK_TCK"), 2)


@dataclass(frozen=True)
class Owner:
    host: str
    pid: int
    started: float = None

    @classmethod
    def current(cls):
        try:
            started = process_started(os.getpid())
        except OSError:
            started = None
        return cls(socket.gethostname(), os.getpid(), started)

    def alive(self):
        """True or False when this host can tell; None for another host's process."""
        if self.host != socket.gethostname():
            return None
        if self.pid <= 0:
            return False
        try:
            started = process_started(self.pid)
        except OSError:
            return _pid_exists(self.pid)
        return started is not None and (self.started is None or abs(started - self.started) < 0.05)

    def describe(self):
        return "pid %s on %s" % (self.pid, self.host)


def _pid_exists(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
