"""proc.wait_all: several processes driven from one loop.  What crosses is
checked byte for byte; that they run together (not one after another) is
shown by children that can only finish if another one is fed meanwhile.
The speed (about the time of the slowest child) is a bench row, not a
timed test: bench/cases (proc waitall)."""
from __future__ import annotations

import sys

import pytest
from helpers.children import child_env

import ipc
import ipc.sem
from ipc import proc


def _collector(into: dict, key):
    def got(stream, data):
        into.setdefault((key, stream), []).append(data)
    return got


def test_outputs_and_statuses_of_many():
    got: dict = {}
    sizes = [70_000 * (i + 1) for i in range(4)]   # each more than a pipe holds
    hs = [proc.spawn(["sh", "-c", f"head -c {n} /dev/zero | tr '\\0' {i}; echo e{i} >&2; exit {i}"],
                     stdout=True, stderr=True, callback=_collector(got, i))
          for i, n in enumerate(sizes)]
    assert proc.wait_all(hs) == [0, 1, 2, 3]
    for i, n in enumerate(sizes):
        assert b"".join(got[(i, "stdout")]) == str(i).encode() * n
        assert b"".join(got[(i, "stderr")]) == f"e{i}\n".encode()
    assert proc.wait_all(hs) == [0, 1, 2, 3]            # finished handles: same answer


def test_input_is_fed_to_all_at_once():
    got: dict = {}
    data = [bytes([65 + i]) * 300_000 for i in range(3)]  # queued until waited on
    hs = [proc.spawn(["cat"], stdin=True, stdout=True, callback=_collector(got, i))
          for i in range(3)]
    for h, d in zip(hs, data, strict=True):
        h.write(d)
        h.close_stdin()
    p = proc.pipeline([["cat"], ["tr", "a-z", "A-Z"]], stdin=True, stdout=True,
                      callback=_collector(got, "pl"))
    p.write(b"pipe\n")
    p.close_stdin()
    assert proc.wait_all([*hs, p, hs[0]]) == [0, 0, 0, 0, 0]   # a duplicate is fine
    for i, d in enumerate(data):
        assert b"".join(got[(i, "stdout")]) == d
    assert b"".join(got[("pl", "stdout")]) == b"PIPE\n"


def test_children_that_need_each_other_finish(make_name):
    """The first child waits on a semaphore that the second posts only once
    it has read its input, which is sent only while it is waited on: one
    wait() after the other would stall; wait_all drives both."""
    name = make_name()
    sem = ipc.sem.open(name, 1)
    sem.acquire()                                 # the count is 0 now
    try:
        env = child_env()
        first = proc.spawn([sys.executable, "-c",
                            f"import ipc.sem; ipc.sem.open({name!r}).acquire(); print('got')"],
                           stdout=True, callback=_collector(got := {}, 1), env=env)
        second = proc.spawn([sys.executable, "-c",
                             ("import sys, ipc.sem; sys.stdin.readline(); "
                              f"ipc.sem.open({name!r}).release()")],
                            stdin=True, env=env)
        second.write(b"go\n")
        with pytest.raises(ipc.Timeout):
            first.wait(1)                          # alone: nobody feeds the second
        assert proc.wait_all([first, second], timeout=60) == [0, 0]
        assert got[(1, "stdout")] == [b"got\n"]
    finally:
        sem.close()                               # the creator's close removes it


def test_timeout_leaves_handles_to_wait_again():
    hs = [proc.spawn(["sleep", "30"]), proc.spawn(["true"])]
    with pytest.raises(ipc.Timeout, match=r"1 of 2 processes did not finish within 0\.2 s"):
        proc.wait_all(hs, timeout=0.2)
    assert hs[1].finished and not hs[0].finished
    hs[0].kill()
    assert proc.wait_all(hs) == [-9, 0]


def test_a_callback_error_goes_through():
    def boom(stream, data):
        raise RuntimeError("callback")
    h = proc.spawn(["echo", "x"], stdout=True, callback=boom)
    other = proc.spawn(["true"])
    with pytest.raises(RuntimeError, match="callback"):
        proc.wait_all([h, other])
    h.close()
    assert proc.wait_all([other]) == [0]


@pytest.mark.parametrize("bad", [None, 3, "abc", [object()], [1.5]])
def test_bad_arguments(bad):
    with pytest.raises(TypeError):
        proc.wait_all(bad)


def test_empty():
    assert proc.wait_all([]) == []
    with pytest.raises(TypeError, match="timeout"):
        proc.wait_all([], timeout="x")
