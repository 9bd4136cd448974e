"""proc.wait_all: several processes driven from one loop.  What crosses is
checked byte for byte; that they run together (not one after another) is
shown by children that can only finish if another one is fed meanwhile.
The speed (about the time of the slowest child) is a bench row, not a
timed test: bench/cases (proc waitall)."""
from __future__ import annotations

import errno
import os
import resource
import signal
import sys

import pytest
from helpers.children import child_env, ctrl_c, pid_gone, read_line, spawn_luaipc
from helpers.lua import run

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


def test_shutdown_all_of_some_handles_leaves_the_others():
    """The handles named go (SIGTERM, then SIGKILL for what ignores it);
    the rest run on."""
    a = proc.spawn(["sleep", "30"])
    b = proc.spawn(["sh", "-c", "trap '' TERM; sleep 30"])   # needs the SIGKILL
    keep = proc.spawn(["sleep", "30"])
    try:
        proc.shutdown_all(0.3, [a, b])
        assert a.finished and b.finished and not keep.finished
        assert a.returncode == -signal.SIGTERM and b.returncode == -signal.SIGKILL
    finally:
        keep.close()


@pytest.mark.parametrize("bad", [(0.1, [1]), (0.1, "ab"), ("x", None), (float("nan"), None)])
def test_shutdown_all_bad_arguments_signal_nothing(bad):
    h = proc.spawn(["sleep", "30"])
    try:
        grace, handles = bad
        with pytest.raises((TypeError, ValueError)):
            proc.shutdown_all(grace, handles)
        h.step(0)
        assert not h.finished
    finally:
        h.close()


# -- Lua: proc.waitall, on every engine ----------------------------------------

PROC = 'local proc = require "ipc.proc"\n'

MANY = PROC + """
  local got = {}
  local function collect(i)
    got[i] = {}
    return function(stream, data, msg)
      assert(data, msg)
      got[i][#got[i] + 1] = stream .. ":" .. data
    end
  end
  local hs = {}
  for i = 1, 4 do
    hs[i] = assert(proc.spawn("head -c " .. 70000 * i .. " /dev/zero | tr '\\\\0' " .. i ..
                              "; echo e" .. i .. " >&2; cat; exit " .. i,
                              { stdin = true, stdout = true, stderr = true, callback = collect(i) }))
    hs[i]:write(string.rep("in" .. i, 50000), proc.EOF)  -- more than a pipe holds
  end
"""


def _status(t) -> tuple:
    return (t[b"ok"], t[b"kind"], t[b"code"])


def test_lua_waitall_delivers_everything_and_each_status(lua):
    r = run(lua, MANY + """
      local a, b, c, d, again = proc.waitall(hs[1], hs[2], hs[3], hs[4], hs[2])
      local out = {}
      for i = 1, 4 do
        local s = { stdout = {}, stderr = {} }
        for _, v in ipairs(got[i]) do
          local stream, data = v:match("^(%a+):(.*)$")
          s[stream][#s[stream] + 1] = data
        end
        out[i] = table.concat(s.stdout) .. "|" .. table.concat(s.stderr)
      end
      return a, b, c, d, again, out[1], out[2], out[3], out[4]
    """)
    for i, t in enumerate(r[:4], 1):
        assert _status(t) == (None, b"exit", i)
    assert _status(r[4]) == (None, b"exit", 2)          # a duplicate is fine
    for i, text in enumerate(r[5:], 1):
        assert text == (str(i).encode() * 70000 * i + f"in{i}".encode() * 50000
                        + f"|e{i}\n".encode())


def test_lua_waitall_takes_a_list_and_finished_handles(lua):
    r = run(lua, PROC + """
      local ok = assert(proc.spawn("exit 0", {}))
      local bad = assert(proc.spawn("kill -9 $$", {}))
      local s = { proc.waitall{ ok, bad } }
      local again = { proc.waitall(ok, bad) }          -- reaped: the same statuses
      return #s, s[1].ok, s[1].kind, s[1].code, s[2].ok, s[2].kind, s[2].code,
             again[1].code, again[2].kind, select("#", proc.waitall())
    """)
    assert r == (2, True, b"exit", 0, None, b"signal", 9, 0, b"signal", 0)


def test_lua_waitall_drives_children_that_need_each_other(lua, tmp_path):
    """The first child can only end once the second has read all its input,
    which is handed over only while it is waited on: waiting on one and then
    the other would never end (the test's timeout would fail it)."""
    flag = tmp_path / "flag"
    r = run(lua, PROC + """
      local flag = ...
      local first = assert(proc.spawn("while [ ! -e '" .. flag .. "' ]; do sleep 0.01; done", {}))
      local second = assert(proc.spawn("cat >/dev/null; touch '" .. flag .. "'", { stdin = true }))
      second:write(string.rep("x", 200000), proc.EOF)
      local a, b = proc.waitall(first, second)
      return a.code, b.code
    """, str(flag))
    assert r == (0, 0)


def test_lua_waitall_callback_yields_inside_a_coroutine(lua):
    r = run(lua, PROC + """
      local chunks, yields = 0, 0
      local hs = {}
      for i = 1, 3 do
        hs[i] = assert(proc.spawn("printf a; sleep 0.05; printf b", {
          stdout = true,
          callback = function(s, d) chunks = chunks + #d; coroutine.yield(d) end }))
      end
      local co = coroutine.create(function()
        local a, b, c = proc.waitall(hs)
        return a.code + b.code + c.code
      end)
      while true do
        local ok, v = coroutine.resume(co)
        assert(ok, v)
        if coroutine.status(co) == "dead" then return v, chunks, yields end
        yields = yields + 1
      end
    """)
    assert r[0] == 0 and r[1] == 6 and r[2] >= 2


def test_lua_waitall_bad_arguments(lua):
    r = run(lua, PROC + """
      local ok, e1 = pcall(proc.waitall, 1)
      local h = assert(proc.spawn("true", {}))
      local ok2, e2 = pcall(proc.waitall, h, "x")
      local ok3, e3 = pcall(proc.waitall, { h, {} })
      local s = proc.waitall(h)                  -- the good one still waits
      return ok, e1, ok2, e2, ok3, e3, s.code
    """)
    assert r[0] is False and b"bad argument #1" in r[1] and b"ipc.proc expected" in r[1], r
    assert r[2] is False and b"bad argument #2" in r[3], r
    assert r[4] is False and b"ipc.proc expected" in r[5], r
    assert r[6] == 0


def test_lua_waitall_ctrl_c_interrupts_and_kills_children(engine, tmp_path):
    script = tmp_path / "ctrlc.lua"
    script.write_text(PROC + """
      local a = proc.spawn("exec sleep 60", { stdout = true, callback = function() end })
      local b = proc.spawn("exec sleep 60", {})
      io.stdout:write(tostring(a):match("pid (%d+)"), " ", tostring(b):match("pid (%d+)"), "\\n")
      io.stdout:flush()
      proc.waitall(a, b)
      print("not reached")
    """)
    p = spawn_luaipc([script], engine=engine)
    children = [int(x) for x in read_line(p).split()]
    out, _ = ctrl_c(p, blocked=0.3)  # once it blocks in the poll
    assert "not reached" not in out
    assert all(pid_gone(c) for c in children), "a child outlived Ctrl-C"


# -- Python: faults during wait_all --------------------------------------------

def test_signals_during_wait_all_change_nothing():
    """A handler that runs every 5 ms interrupts the poll many times: each
    EINTR is retried (PEP 475) and nothing is lost or repeated."""
    fired = []
    old = signal.signal(signal.SIGALRM, lambda *_: fired.append(1))
    got: dict = {}
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.005, 0.005)
        hs = [proc.spawn(["sh", "-c", f"sleep 0.2; head -c 200000 /dev/zero; exit {i}"],
                         stdout=True, callback=_collector(got, i)) for i in range(3)]
        assert proc.wait_all(hs) == [0, 1, 2]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0, 0)
        signal.signal(signal.SIGALRM, old)
    assert len(fired) > 10
    for i in range(3):
        assert sum(map(len, got[(i, "stdout")])) == 200000


def test_no_descriptor_for_a_pidfd_is_an_ipc_error():
    """EMFILE from pidfd_open (a child whose pipes are all closed is waited
    on through a pidfd) is an ipc error naming the cause, not a crash, and
    the handles can be waited on again once descriptors are free."""
    hs = [proc.spawn(["sleep", "0.2"]) for _ in range(2)]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    used = len(os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (used + 16, hard))  # few to use up
    hogs = []
    try:
        while True:                      # use every descriptor there is
            try:
                hogs.append(os.open("/dev/null", os.O_RDONLY))
            except OSError:
                break
        with pytest.raises(ipc.IPCError) as info:
            proc.wait_all(hs)
        assert info.value.errno == errno.EMFILE
    finally:
        for fd in hogs:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert proc.wait_all(hs) == [0, 0]
