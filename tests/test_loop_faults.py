"""ipc.loop under faults, for real: a fork while helpers wait (os.fork from
Python inside a task, and a ``proc`` child), descriptor exhaustion (EMFILE)
in a child whose RLIMIT_NOFILE is lowered, a SIGKILL of a process whose
loop tasks wait on a semaphore, and a cancel that comes after the helper
took its unit.  Every outcome is checked by counting units and descriptors.
"""
from __future__ import annotations

import random
import signal
import time

import pytest
from helpers.children import finish, read_line, run_py, spawn_luaipc
from helpers.lua import TWO_ENGINES, run

import ipc
import ipc.loop as aio
import ipc.sem

pytestmark = pytest.mark.timeout(120)

HEAD = """
local loop = require "ipc.loop"
local sem = require "ipc.sem"
local mq = require "ipc.mq"
local proc = require "ipc.proc"
"""

# -- fork ------------------------------------------------------------------------

#: A Python program whose Lua task forks (os.fork, from a Python function)
#: while three tasks wait on a semaphore and a helper has just taken a unit
#: for the first of them.  The child goes on in its copy of the task.
FORKER = """
import os, sys, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)   # fork() of a threaded process
import ipc.lua, ipc.sem
engine, sname, s2name = sys.argv[1:4]
lua = ipc.lua.new_runtime(engine)
probe = ipc.sem.open(sname)

def fork():
    sys.stdout.flush()
    return os.fork()

def reaped(pid):
    done, status = os.waitpid(pid, os.WNOHANG)
    return os.waitstatus_to_exitcode(status) if done else None

def kill(pid):
    os.kill(pid, 9)
    os.waitpid(pid, 0)

r = lua.execute(HEAD + '''
  local fork, reaped, kill, value, pause, sname, s2name = ...
  local s, s2 = assert(sem.open(sname)), assert(sem.open(s2name))
  local forked = false
  local ok, a, b, c = pcall(loop.run, function()
    local ts = {}
    for i = 1, 3 do ts[i] = loop.spawn(function() return s:dec() end) end
    loop.sleep(0.1)                      -- three helpers wait in sem_wait
    s:inc()
    while value() > 0 do end             -- a helper took it; its task not yet resumed
    pause(0.02)
    local pid = fork()
    if pid == 0 then
      forked = true
      loop.sleep(0.01)                   -- the child waits in its copy of the loop
      return "went on"
    end
    local deadline = os.time() + 20
    local code = reaped(pid)
    while not code and os.time() < deadline do loop.sleep(0.01); code = reaped(pid) end
    if not code then kill(pid); code = "hung" end
    s:inc(); s:inc()                     -- the parent's loop goes on: all three wake
    local n = 0
    for i = 1, 3 do if select(2, ts[i]:join()) == true then n = n + 1 end end
    return code, n
  end)
  if not forked then return "parent", ok, a, b end
  -- the child: the parent's loop has ended with an error; a fresh one works
  local fresh = { loop.run(function()
    local t = loop.spawn(function() return s2:dec() end)
    loop.sleep(0.05)
    s2:inc()
    return t:join()
  end) }
  return "child", ok, a, tostring(fresh[1]) .. " " .. tostring(fresh[2])
''', fork, reaped, kill, lambda: probe.value, time.sleep, sname.encode(), s2name.encode())
r = [x.decode() if isinstance(x, bytes) else x for x in r]
if r[0] == "child":
    print("child", r[1], r[2], "|", r[3], "|", probe.value, flush=True)
    os._exit(0)
print("parent", r[1], r[2], r[3], probe.value, flush=True)
"""


@pytest.mark.timeout(180)
def test_a_forked_child_cannot_use_its_parents_loop(engine, make_name):
    """The child sees a clear error at its first wait in the copied loop
    (its helpers did not survive the fork), gives back nothing it does not
    hold, steals no wake-up from the shared epoll, and can run a loop of its
    own; the parent's loop goes on and every unit is where counting says."""
    s, s2 = make_name(), make_name()
    held = [ipc.sem.open(n, 1) for n in (s, s2)]
    for h in held:
        h.dec()
    try:
        r = run_py(FORKER.replace("HEAD + ", repr(HEAD) + " + "), engine, s, s2, timeout=90)
        value = held[0].value
    finally:
        for h in held:
            h.close()
    assert r.returncode == 0, r.stderr
    lines = dict(line.split(" ", 1) for line in r.stdout.splitlines())
    assert "child" in lines, (r.stdout, r.stderr)
    child = lines["child"].split(" | ")
    assert child[0].startswith("False "), child
    assert "fork" in child[0], child
    assert child[1] == "true true", child        # a loop of its own
    # the child exited (0); all three tasks of the parent got their unit;
    # the one a helper took before the fork is not given back by the child
    assert lines["parent"].split() == ["True", "0", "3", "0"], (lines, r.stderr)
    assert value == 0


def test_a_proc_child_inherits_none_of_the_loop(lua, make_name):
    """A child started from a task while helpers wait holds no descriptor of
    the loop (epoll, eventfd, the dup-ed queue descriptors), so it can
    neither read the loop's wake-ups nor keep its registrations alive."""
    s, q = make_name(), make_name()
    r = run(lua, HEAD + """
      local sname, qname = ...
      local s = assert(sem.open(sname, 1)); assert(s:dec())
      local q = assert(mq.open(qname, 4, 64))
      local out = {}
      local res = { loop.run(function()
        local a = loop.spawn(function() return s:dec() end)
        local b = loop.spawn(function() return q:receive() end)
        loop.sleep(0.05)
        local h = assert(proc.spawn("ls -l /proc/self/fd/", { stdout = true,
                                    callback = function(_, d) out[#out + 1] = d end }))
        local _, _, code = h:wait()             -- a third wait, in the same loop
        s:inc(); q:send("on")
        local _, got = a:join()
        local _, m = b:join()
        return code, got, m
      end) }
      s:close(); q:close()
      return res[1], res[2], res[3], table.concat(out)
    """, s, q)
    code, got, m, listing = r
    assert (code, got, m) == (0, True, b"on")
    assert b"eventpoll" not in listing and b"eventfd" not in listing, listing
    assert q.encode() not in listing, listing


# -- EMFILE ------------------------------------------------------------------------

#: A Python program that runs Lua with a low RLIMIT_NOFILE and a hoard of
#: descriptors that takes every free one (exhaust) until it is freed.
EMFILE = """
import errno, os, resource, sys
import ipc.lua
engine, qname = sys.argv[1:3]
lua = ipc.lua.new_runtime(engine)
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
hoard = []

def exhaust(keep=0):
    while True:
        try:
            hoard.append(os.open("/dev/null", os.O_RDONLY))
        except OSError as e:
            assert e.errno == errno.EMFILE, e
            break
    for _ in range(keep):
        os.close(hoard.pop())

def free():
    while hoard:
        os.close(hoard.pop())

def nfds():
    return len(os.listdir("/proc/self/fd"))

r = lua.execute(HEAD + '''
  local exhaust, free, nfds, qname = ...
  local q = assert(mq.open(qname, 4, 64))
  local res = {}
  local function note(...)
    local t = { ... }
    for i = 1, select("#", ...) do t[i] = tostring(t[i]) end
    res[#res + 1] = table.concat(t, " ")
  end
  local before = nfds()
  exhaust()
  note("run", loop.run(function() end))             -- no epoll to be had
  free(); exhaust(1)
  note("run1", loop.run(function() end))            -- an epoll, no eventfd
  free()
  note("fds", nfds() - before)
  loop.run(function()
    local h = assert(proc.spawn("read x; echo $x", { stdin = true, stdout = true,
                                                     callback = function() end }))
    local inside = nfds()
    exhaust()
    note("receive", q:receive())                    -- a dup for the epoll: EMFILE
    for _ = 1, 4 do assert(q:send("x")) end           -- room: no wait, no descriptor
    note("send", q:send("x", 1))                      -- full: a wait, EMFILE
    note("wait", h:wait())                          -- the pipes' dups: EMFILE
    local t = loop.spawn(function() return q:receive(0.05) end)
    note("task", t:join())
    free()
    note("fds", nfds() - inside)
    -- the same loop, descriptors freed: each kind of wait works again
    for _ = 1, 3 do assert(q:receive()) end
    local r = loop.spawn(function() return q:receive() end)
    loop.sleep(0.05)
    q:send("late")
    note("after", (select(2, r:join())))
    h:write("y\\\\n", proc.EOF)
    note("wait", h:wait())
  end)
  note("fds", nfds() - before)
  q:close()
  return table.concat(res, "\\\\n")
''', exhaust, free, nfds, qname.encode())
print(r.decode())
"""


def test_emfile_in_a_wait_is_an_error_triple_and_leaks_nothing(engine, make_name):
    """With no descriptor left, a wait that needs one (a queue's, a child's
    pipes) returns nil, "Too many open files", EMFILE as any OS failure
    does, the loop leaves no descriptor behind, and once some are freed the
    same loop waits again.  loop.run itself fails the same way."""
    q = make_name()
    r = run_py(EMFILE.replace("HEAD + ", repr(HEAD) + " + "), engine, q)
    assert r.returncode == 0, r.stderr
    emfile = f"nil Too many open files {24}"
    assert r.stdout.splitlines() == [
        f"run {emfile}",
        f"run1 {emfile}",
        "fds 0",
        f"receive {emfile}",
        f"send {emfile}",
        f"wait {emfile}",
        "task true x 0",                          # the queue was full, no wait
        "fds 0",
        "after late",
        "wait true exit 0",
        "fds 0",
    ], (r.stdout, r.stderr)


# -- SIGKILL -------------------------------------------------------------------------

#: Four tasks take units one by one and say so at once; the loop is killed
#: by the test.  A unit a helper took and its task has not yet reported is
#: the dead process's: at most one per task.
TAKER = HEAD + """
local s = assert(sem.open(arg[1]))
loop.run(function()
  for i = 1, 4 do
    loop.spawn(function()
      while true do assert(s:dec()); io.stdout:write("took\\n"); io.stdout:flush() end
    end)
  end
  loop.sleep(0.1)
  print("ready"); io.stdout:flush()
  loop.sleep(60)
end)
"""


@pytest.mark.parametrize("engine", TWO_ENGINES, indirect=True)
@pytest.mark.parametrize("when", ["idle", "streaming"])
def test_sigkill_of_a_loop_waiting_on_a_semaphore(engine, tmp_path, make_name, when):
    """SIGKILL while four tasks wait on a semaphore (idle), or while units
    stream in: afterwards every unit given is either reported taken, left
    in the semaphore, or was in the dead process's hands (at most one per
    task); and a unit given after the death stays (no waiter outlives its
    process)."""
    name = make_name()
    s = ipc.sem.open(name, 1)
    s.dec()
    script = tmp_path / "taker.lua"
    script.write_text(TAKER)
    p = spawn_luaipc([script, name], engine=engine)
    try:
        assert read_line(p) == "ready"
        given = 0
        if when == "streaming":
            stop = random.randrange(20, 60)
            for _ in range(stop):
                s.inc()
                given += 1
                time.sleep(random.random() * 0.002)
        p.send_signal(signal.SIGKILL)
        code, out, _ = finish(p)
        assert code == -signal.SIGKILL
        took = out.split().count("took")
        held = given - took - s.value
        assert 0 <= held <= 4, (given, took, s.value)
        if when == "idle":
            assert held == 0
        before = s.value
        s.inc()
        time.sleep(0.1)
        assert s.value == before + 1
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        s.close()


# -- a cancel after the helper's take ------------------------------------------------

def test_cancel_after_the_helper_took_the_unit_gives_it_back(lua, make_name):
    """The helper has taken the unit, and its task has not yet run (the
    canceller holds the only Lua thread): the cancel gives the unit back.
    A timeout that runs out in the same instant keeps it instead (the task
    returns true): either way the count is exact."""
    name = make_name()
    probe = ipc.sem.open(name, 1)
    probe.dec()
    try:
        r = run(lua, HEAD + """
          local sname, value, pause = ...
          local s = assert(sem.open(sname))
          local function taken() while value() > 0 do end; pause(0.02) end
          local res = { loop.run(function()
            local t = loop.spawn(function() return s:dec() end)
            loop.sleep(0.05)                   -- its helper waits in sem_wait
            s:inc(); taken()
            local was = t:status()
            local cancelled = t:cancel()
            local _, why = t:join()
            local after_cancel = value()
            assert(s:dec(0))                   -- the unit back: take it again
            local u = loop.spawn(function() return s:dec(0.1) end)
            loop.sleep(0.02)                   -- its helper waits in sem_wait
            s:inc(); taken(); pause(0.2)       -- its helper took it; its time ran out
            local _, kept = u:join()
            return was, cancelled, why, after_cancel, kept, value()
          end) }
          s:close()
          return (table.unpack or unpack)(res)
        """, name, lambda: probe.value, time.sleep)
    finally:
        probe.close()
    assert r == (b"waiting", True, b"cancelled", 1, True, 0)


def test_asyncio_cancel_after_the_helper_took_the_unit_gives_it_back(make_name):
    """The same in asyncio: the helper took the unit and its wake-up is
    queued on the loop when the task is cancelled."""
    s = ipc.sem.open(make_name(), 1)
    s.dec()
    try:
        async def main():
            import asyncio
            t = asyncio.ensure_future(aio.acquire(s))
            await asyncio.sleep(0.05)             # its helper waits in sem_wait
            s.inc()
            while s.value > 0:                    # blocks the loop: the wake-up waits
                pass
            time.sleep(0.02)
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
            return t.cancelled(), s.value
        import asyncio
        assert asyncio.run(main()) == (True, 1)
    finally:
        s.close()
