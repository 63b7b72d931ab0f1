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


def _error(exc):
    return ("error", "%s: %s" % (type(exc).__name__, exc))


def _serve(prepare, args, late, answers, scratch):
    """The child: prepare(*args) at once, then the call it returned with the late arguments."""
    # Libraries make temporary directories at import (wandb: two per process) and remove them at
    # exit, which a multiprocessing child skips: they go into scratch, which the parent removes.
    os.environ["TMPDIR"] = scratch
    tempfile.tempdir = scratch
    parent = os.getppid()
    try:
        call, failure = prepare(*args), None
    except BaseException as exc:  # reported once the parent asks for the call
        call, failure = None, _error(exc)
    while True:
        try:
            late_args = late.get(timeout=POLL_S * 10)
            break
        except queue.Empty:
            if os.getppid() != parent:
                return  # the task ended without asking
    if failure is not None:
        answers.put(failure)
        return
    try:
        answers.put(("ok", call(*late_args)))
    except BaseException as exc:  # reported to the parent, which decides
        answers.put(_error(exc))


class PreparedCall:
    """One call in a child forked now: prepare(*args) runs at once (imports, connections) and returns
    the call, which runs when run() hands over the late arguments (picklable). One call per child.

    fork: the child inherits what the parent holds (a signing key, settings); nothing secret is pickled.
    """

    def __init__(self, prepare, args):
        # Loaded when a child is needed: tasks with W&B off never pay for it.
        import multiprocessing

        context = multiprocessing.get_context("fork")
        self._late = context.Queue()
        self._answers = context.Queue()
        self._scratch = tempfile.mkdtemp(prefix="nicompute-child-")
        # Daemonic: a task that ends without the call does not wait for the child at exit.
        self._child = context.Process(target=_serve, daemon=True,
                                      args=(prepare, args, self._late, self._answers, self._scratch))
        self._child.start()

    def run(self, late_args, timeout):
        """The call's (picklable) return value, or ChildTimeout / ChildFailed; the child is gone after.

        The answer is read while the child runs: a child cannot exit before a large answer left the pipe.
        """
        if self._child is None:
            raise ChildFailed("the child already made its call")
        deadline = time.monotonic() + timeout
        try:
            self._late.put(tuple(late_args))
            kind, value = _answer(self._child, self._answers, deadline, timeout)
        finally:
            self.close()
        if kind == "error":
            raise ChildFailed(value)
        return value

    def close(self):
        """End the child (if it still runs) and remove its temporary files."""
        if self._child is None:
            return
        if self._child.is_alive():
            self._child.kill()
        self._child.join()
        shutil.rmtree(self._scratch, ignore_errors=True)
        self._child = None


def _bound(function, args):
    return lambda: function(*args)


def call_in_child(function, args, timeout):
    """function(*args) in a forked child; its (picklable) return value, or ChildTimeout / ChildFailed."""
    return PreparedCall(_bound, (function, args)).run((), timeout)


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
