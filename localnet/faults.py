"""Per-miner faults: a small file in the miner's state dir, read by the supervisor per request."""

import os

from localnet.layout import write_file

MODES = ("healthy", "unresponsive", "slow", "late", "refuse", "garbage", "offline",
         "refuse-busy", "old", "paused", "release-fails")
MODE_HELP = {
    "healthy": "a strict v1.8.3 miner (the default): evicts on allocate, slow grants, no ownership on docker actions",
    "unresponsive": "accepts the connection and never answers; clients time out",
    "slow": "answers every request correctly after SECONDS",
    "late": "grants an allocation but answers that request only after SECONDS",
    "refuse": "says it is available, then answers an allocation with status false (touches nothing)",
    "garbage": "allocates for real, but info is not base64 or is encrypted for another key",
    "offline": "the axon is stopped: connections are refused",
    "refuse-busy": "the kind miner of old: an allocation while busy answers status false and evicts nobody",
    "old": "a miner before v1.8.0: the credentials JSON has no version",
    "paused": "docker says the container is paused: still-allocated and availability checks read false/free, "
              "while the allocation and its logins stay",
    "release-fails": "every kill fails: deallocate and self-release answer false and the allocation stays; "
                     "an allocation on a busy miner fails; an expiry falling now is lost",
}
TIMED_MODES = ("slow", "late")
# Longer than any sane dendrite timeout; `down` kills the supervisor, so nothing waits on it.
UNRESPONSIVE_SECONDS = 3600.0


class Fault:
    def __init__(self, mode="healthy", seconds=0.0):
        if mode not in MODES:
            raise ValueError("unknown fault %r; expected one of %s" % (mode, ", ".join(MODES)))
        if mode in TIMED_MODES and seconds <= 0:
            raise ValueError("fault %s needs a positive number of SECONDS" % mode)
        self.mode = mode
        self.seconds = float(seconds) if mode in TIMED_MODES else 0.0

    def __str__(self):
        return "%s %g" % (self.mode, self.seconds) if self.mode in TIMED_MODES else self.mode

    @property
    def delay(self):
        """Seconds to wait before handling the request."""
        if self.mode == "unresponsive":
            return UNRESPONSIVE_SECONDS
        return self.seconds if self.mode == "slow" else 0.0

    def reply_delay(self, fields):
        """Seconds to wait after handling an allocate request: the miner granted, the answer is late."""
        allocating = not fields["checking"] and not fields["docker_change"] and fields["timeline"] > 0
        return self.seconds if self.mode == "late" and allocating else 0.0


def fault_file(layout, uid):
    return layout.miner_file(uid, "fault")


def read_fault(layout, uid):
    """The miner's current fault; a missing or unreadable file means healthy."""
    try:
        with open(fault_file(layout, uid)) as handle:
            words = handle.read().split()
        return Fault(words[0], float(words[1]) if len(words) > 1 else 0.0)
    except (OSError, IndexError, ValueError):
        return Fault()


def write_fault(layout, uid, fault):
    if fault.mode == "healthy":
        if os.path.exists(fault_file(layout, uid)):
            os.unlink(fault_file(layout, uid))
        return
    write_file(fault_file(layout, uid), str(fault) + "\n")
