# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Private module_utils of neuralinternet.compute: not a public API.
# Runs one call in a forked child that is killed at its deadline, so a task never hangs on a
# service that does not answer (wandb waits about 19 s per request without a network, and
# retries). The child imports what it needs; the parent stays light.

from __future__ import annotations

import os
import queue
import shutil
import tempfile
import time

# How often the parent looks whether the child is still there.
POLL_S = 0.05


class ChildTimeout(Exception):
    """The child did not finish within its time."""


class ChildFailed(Exception):
    """The child raised (message: "Type: text") or exited without an answer."""


def _call(function, args, queue, scratch):
    # Libraries make temporary directories at import (wandb: two per process) and remove them at
    # exit, which a multiprocessing child skips: they go into scratch, which the parent removes.
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch
    try:
        queue.put(("ok", function(*args)))
    except BaseException as exc:  # reported to the parent, which decides
        queue.put(("error", "%s: %s" % (type(exc).__name__, exc)))


def call_in_child(function, args, timeout):
    """function(*args) in a forked child; its (picklable) return value, or ChildTimeout / ChildFailed.

    fork: the child inherits what the parent holds (a signing key, settings); nothing secret is pickled.
    The answer is read while the child runs: a child cannot exit before a large answer left the pipe.
    """
    # Loaded when a child is needed: tasks with W&B off never pay for it.
    import multiprocessing

    context = multiprocessing.get_context("fork")
    answers = context.Queue()
    scratch = tempfile.mkdtemp(prefix="nicompute-child-")
    child = context.Process(target=_call, args=(function, args, answers, scratch))
    child.start()
    deadline = time.monotonic() + timeout
    try:
        kind, value = _answer(child, answers, deadline, timeout)
    finally:
        if child.is_alive():
            child.kill()
        child.join()
        shutil.rmtree(scratch, ignore_errors=True)
    if kind == "error":
        raise ChildFailed(value)
    return value


def _answer(child, answers, deadline, timeout):
    while True:
        try:
            return answers.get(timeout=max(0.0, min(POLL_S, deadline - time.monotonic())))
        except queue.Empty:
            pass
        if not child.is_alive():
            try:  # it may have answered just before it exited
                return answers.get(timeout=POLL_S)
            except queue.Empty:
                raise ChildFailed("exited with %s without an answer" % child.exitcode)
        if time.monotonic() >= deadline:
            raise ChildTimeout("did not answer within %s s" % timeout)
