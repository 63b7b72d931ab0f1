# -*- coding: utf-8 -*-
# Copyright: neuralinternet.compute contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# call_in_child with real forked children: answers, errors, deaths and the deadline. The only
# sleeps are children that must overrun a deadline of a fraction of a second.

from __future__ import annotations

import os
import time

import pytest

from ansible_collections.neuralinternet.compute.plugins.module_utils._child import (
    ChildFailed,
    ChildTimeout,
    call_in_child,
)


def add(a, b):
    return a + b


def test_the_return_value_comes_back():
    assert call_in_child(add, (2, 3), 10) == 5
    assert call_in_child(dict, (), 10) == {}


def test_the_child_runs_in_another_process_and_sees_the_parents_state():
    secret = {"key": "held by the parent, never pickled"}
    pid, seen = call_in_child(lambda: (os.getpid(), secret["key"]), (), 10)
    assert pid != os.getpid()
    assert seen == secret["key"]


def test_an_exception_becomes_child_failed_with_type_and_text():
    def fail():
        raise ValueError("no such project")

    with pytest.raises(ChildFailed) as caught:
        call_in_child(fail, (), 10)
    assert str(caught.value) == "ValueError: no such project"


def test_system_exit_is_reported_like_an_exception():
    def leave():
        raise SystemExit(2)

    with pytest.raises(ChildFailed, match="^SystemExit: 2$"):
        call_in_child(leave, (), 10)


def test_a_child_that_overruns_is_killed_at_its_deadline(tmp_path):
    pid_file = tmp_path / "pid"

    def hang():
        pid_file.write_text(str(os.getpid()))
        time.sleep(60)

    started = time.monotonic()
    with pytest.raises(ChildTimeout, match="did not answer within 0.5 s"):
        call_in_child(hang, (), 0.5)
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 2.5
    pid = int(pid_file.read_text())
    # Killed and reaped: the pid is gone, not a zombie left behind.
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def test_a_large_answer_comes_back_intact():
    # Far beyond a pipe buffer (64 KiB): a parent that waited for the child to exit before reading
    # would deadlock with a child blocked on writing, and time out.
    big = "".join(chr(ord("a") + i % 26) for i in range(5 * 2 ** 20))
    started = time.monotonic()
    answer = call_in_child(lambda: (big, b"\x00\xff" * 2 ** 20), (), 30)
    assert time.monotonic() - started < 10
    assert answer[0] == big
    assert answer[1] == b"\x00\xff" * 2 ** 20


def test_a_child_that_exits_without_an_answer_fails_with_its_exit_code():
    with pytest.raises(ChildFailed) as caught:
        call_in_child(os._exit, (3,), 10)
    assert str(caught.value) == "exited with 3 without an answer"


def test_a_child_killed_by_a_signal_fails_naming_the_signal():
    with pytest.raises(ChildFailed, match="exited with -9 without an answer"):
        call_in_child(lambda: os.kill(os.getpid(), 9), (), 10)


def test_an_answer_that_cannot_be_pickled_fails_instead_of_hanging():
    started = time.monotonic()
    with pytest.raises(ChildFailed, match="without an answer"):
        call_in_child(lambda: (lambda: None), (), 10)
    assert time.monotonic() - started < 5


def test_many_calls_leave_no_child_behind():
    before = set(_children())
    for value in range(20):
        assert call_in_child(add, (value, 1), 10) == value + 1
    assert set(_children()) - before == set()


def _children():
    """This process's live or zombie children, from /proc."""
    me = str(os.getpid())
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % entry) as handle:
                stat = handle.read()
        except OSError:
            continue
        if stat[stat.rindex(")") + 2:].split()[1] == me:
            found.append(int(entry))
    return found


def leave_a_temporary_directory():
    """What importing wandb does in a child: a TemporaryDirectory that only exit-time cleanup removes."""
    import tempfile

    made = tempfile.mkdtemp(suffix="wandb-media")
    return made


def test_temporary_directories_made_in_the_child_are_removed(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    made = call_in_child(leave_a_temporary_directory, (), 10)
    assert os.path.dirname(os.path.dirname(made)) == str(tmp_path)
    assert not os.path.exists(made)
    assert os.listdir(str(tmp_path)) == []


def prepare_marker(path):
    """Prepares (writes path) at once; the call it returns adds the late arguments."""
    with open(path, "w") as handle:
        handle.write("prepared")
    return lambda a, b: ("called", a + b)


def prepare_fails(_path):
    raise ValueError("W&B is down")


def _wait_for(path, seconds=10.0):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.path.exists(path)


def test_a_prepared_call_prepares_before_it_is_asked_and_runs_once(tmp_path):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._child import PreparedCall

    marker = str(tmp_path / "marker")
    prepared = PreparedCall(prepare_marker, (marker,))
    assert _wait_for(marker)  # before run(): the preparation overlaps the parent's work
    assert prepared.run((2, 3), 10) == ("called", 5)
    with pytest.raises(ChildFailed, match="already made its call"):
        prepared.run((1, 1), 10)


def test_a_failed_preparation_is_reported_when_the_call_is_asked_for(tmp_path):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._child import PreparedCall

    with pytest.raises(ChildFailed, match="ValueError: W&B is down"):
        PreparedCall(prepare_fails, (str(tmp_path),)).run((), 10)


def test_an_unused_prepared_call_is_ended_by_close_and_leaves_nothing(tmp_path, monkeypatch):
    from ansible_collections.neuralinternet.compute.plugins.module_utils._child import PreparedCall

    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    before = set(_children())
    prepared = PreparedCall(prepare_marker, (str(tmp_path / "marker"),))
    assert set(_children()) - before
    assert [entry for entry in os.listdir(str(tmp_path)) if entry.startswith("nicompute-child-")]
    prepared.close()
    assert set(_children()) - before == set()
    # Whether the child got to prepare before it was ended depends on the machine's load: only
    # its scratch directory is certain, and it must be gone.
    assert [entry for entry in os.listdir(str(tmp_path)) if entry.startswith("nicompute-child-")] == []
