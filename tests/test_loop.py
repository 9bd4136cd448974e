"""ipc.loop from Lua, on every engine: tasks waiting at once on semaphores,
queues, children, locks and sleeps, one thread running all Lua; what other
processes see of it; cancellation that loses no unit; errors, Ctrl-C,
nesting; and the same calls outside a loop, unchanged."""
from __future__ import annotations

import sys

import pytest
from helpers.children import ctrl_c, finish, read_line, spawn_luaipc, spawn_py, wait_line
from helpers.lua import run

import ipc.mq
import ipc.sem

pytestmark = pytest.mark.timeout(120)

HEAD = """
local loop = require "ipc.loop"
local sem = require "ipc.sem"
local mq = require "ipc.mq"
local proc = require "ipc.proc"
local filelock = require "ipc.filelock"
"""

#: A child that holds an exclusive lock on argv[1] until its stdin closes.
HOLDER = ("import fcntl, sys; f = open(sys.argv[1], 'r+b'); "
          "fcntl.lockf(f, fcntl.LOCK_EX); print('held', flush=True); sys.stdin.read()")


def _free_elsewhere(path) -> bool:
    """Whether another process can lock ``path`` now (and lets go at once)."""
    code, out, err = finish(spawn_py(
        "import fcntl, sys\nf = open(sys.argv[1], 'r+b')\n"
        "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
        "except OSError:\n    print('locked')\nelse:\n    print('free')", path))
    assert code == 0, err
    return out.strip() == "free"


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "data"
    p.write_bytes(b"x" * 16)
    return p


# -- many tasks, mixed waits ---------------------------------------------------

def test_mixed_waits_wake_in_the_order_their_objects_become_ready(lua, make_name, data):
    """Five tasks wait at once (sem, queue, lock held by another process,
    child, sleep); main makes each ready in turn and each wakes then, so the
    order is the order of the causes.  Two timed waits run out meanwhile."""
    s, q, other = make_name(), make_name(), make_name()
    r = run(lua, HEAD + """
      local sname, qname, oname, path, py, HOLDER = ...
      local s = assert(sem.open(sname, 1)); assert(s:dec())
      local o = assert(sem.open(oname, 1)); assert(o:dec())
      local q = assert(mq.open(qname, 4, 64))
      local log = {}
      local function note(x) log[#log + 1] = x end
      local f = assert(io.open(path, "r+b"))
      local holder = assert(proc.spawn(py .. " -c \\"" .. HOLDER .. "\\" " .. path,
                                       { stdin = true, stdout = true,
                                         callback = function(_, d)
                                           if d:match("%S") then note("holder:" .. d:gsub("%s", "")) end
                                         end }))
      local child_out = {}
      local child = assert(proc.spawn("read x; echo got $x",
                                      { stdin = true, stdout = true,
                                        callback = function(_, d) child_out[#child_out + 1] = d end }))
      return loop.run(function()
        local t = {
          loop.spawn(function() assert(s:dec()); note("sem") end),
          loop.spawn(function() local m = q:receive(); note("mq:" .. m) end),
          false,                             -- the lock's, once the holder has it
          loop.spawn(function() child:wait(); note("child") end),
          loop.spawn(function() loop.sleep(0.05); note("sleep") end),
          loop.spawn(function() note("timed sem " .. tostring(o:dec(0.02))) end),
          loop.spawn(function() note("timed mq " .. tostring(q:receive(0.02))) end),
        }
        local ht = loop.spawn(function() holder:wait() end)
        while not table.concat(log, ","):match("holder") do loop.sleep(0.01) end
        t[3] = loop.spawn(function() assert(filelock.lock(f, "w")); note("lock") end)
        loop.sleep(0.1)                      -- every task is in its wait now
        local waiting = {}
        for i = 1, 4 do waiting[i] = t[i]:status() end
        s:inc(); assert(t[1]:join())
        q:send("hi"); assert(t[2]:join())
        holder:write(proc.EOF); assert(t[3]:join())   -- the write wakes ht
        child:write("y\\n", proc.EOF); assert(t[4]:join())
        for i = 5, 7 do assert(t[i]:join()) end
        f:close(); o:inc(); o:close(); s:close(); q:close()
        assert(ht:join())
        return table.concat(waiting, ","), table.concat(log, ","), table.concat(child_out)
      end)
    """, s, q, other, str(data), sys.executable, HOLDER)
    statuses, log, child = r
    assert statuses == b"waiting,waiting,waiting,waiting"
    events = log.split(b",")
    # the timers run out and the holder speaks first, in no fixed order
    assert sorted(events[:4]) == [b"holder:held", b"sleep", b"timed mq false",
                                  b"timed sem false"]
    assert events[4:] == [b"sem", b"mq:hi", b"lock", b"child"]
    assert child == b"got y\n"


def test_other_processes_wake_tasks_while_others_run(lua, make_name):
    """A Python process sends on a queue and gives a semaphore; the tasks
    waiting on them wake while a third task goes on ticking: one thread,
    no call blocking the loop."""
    s, q, go = make_name(), make_name(), make_name()
    sh, gh = ipc.sem.open(s, 1), ipc.sem.open(go, 1)
    sh.dec()
    gh.dec()
    qh = ipc.mq.open(q, 4, 64)
    try:
        p = spawn_py("import ipc, sys, time\n"
                     "s = ipc.sem.open(sys.argv[1]); q = ipc.mq.open(sys.argv[2])\n"
                     "g = ipc.sem.open(sys.argv[3]); print('ready', flush=True); g.dec()\n"
                     "time.sleep(0.2); q.send(b'from python'); time.sleep(0.1); s.inc()\n",
                     s, q, go)
        wait_line(p)
        r = run(lua, HEAD + """
          local sname, qname, go = ...
          local s, q = assert(sem.open(sname)), assert(mq.open(qname))
          local ticks, done = 0, false
          local got = loop.run(function()
            local a = loop.spawn(function() return q:receive() end)
            local b = loop.spawn(function() return s:dec() end)
            loop.spawn(function() while not done do ticks = ticks + 1; loop.sleep(0.005) end end)
            go()
            local _, m = a:join()
            local _, ok = b:join()
            done = true
            return m .. " " .. tostring(ok)
          end)
          s:close(); q:close()
          return got, ticks
        """, s, q, gh.inc)
        code, _, err = finish(p)
        assert code == 0, err
    finally:
        sh.close()
        gh.close()
        qh.close()
    assert r[0] == b"from python true"
    assert r[1] > 10, "the ticking task did not run while the others waited"


def test_many_children_driven_by_one_loop(lua):
    """h:wait() in ten tasks and proc.waitall in one: all in one loop."""
    r = run(lua, HEAD + """
      local out = {}
      local function cb(i) return function(_, d) out[i] = (out[i] or "") .. d end end
      return loop.run(function()
        local hs, ts = {}, {}
        for i = 1, 10 do
          hs[i] = assert(proc.spawn("sleep 0.1; echo " .. i .. "; exit " .. i,
                                    { stdout = true, callback = cb(i) }))
          ts[i] = loop.spawn(function() local ok, k, c = hs[i]:wait(); return c end)
        end
        local a = assert(proc.spawn("sleep 0.1; echo a", { stdout = true, callback = cb(11) }))
        local b = assert(proc.spawn("echo b; exit 4", { stdout = true, callback = cb(12) }))
        local w = loop.spawn(function() return proc.waitall(a, b) end)
        local sum = 0
        for i = 1, 10 do local _, c = ts[i]:join(); sum = sum + c end
        local _, sa, sb = w:join()
        return sum, sa.code, sb.code, table.concat(out, ",")
      end)
    """)
    assert r == (55, 0, 4, b"1\n,2\n,3\n,4\n,5\n,6\n,7\n,8\n,9\n,10\n,a\n,b\n")


# -- cancellation: nothing taken, nothing lost --------------------------------------

def test_cancel_in_every_kind_of_wait_takes_nothing(lua, make_name, data):
    """Each task is cancelled inside its wait; then what it waited for is
    made available, and another process finds it all there."""
    s, q = make_name(), make_name()
    r = run(lua, HEAD + """
      local sname, qname, path, py, HOLDER = ...
      local s = assert(sem.open(sname, 1)); assert(s:dec())
      local q = assert(mq.open(qname, 4, 64))
      local f = assert(io.open(path, "r+b"))
      local holder = assert(proc.spawn(py .. " -c \\"" .. HOLDER .. "\\" " .. path,
                                       { stdin = true, stdout = true, callback = function() end }))
      local child = assert(proc.spawn("read x; echo $x", { stdin = true, stdout = true,
                                                           callback = function() end }))
      local res = { loop.run(function()
        loop.sleep(0.3)                       -- the holder has its lock
        local other = loop.spawn(loop.sleep, 10)
        local ts = {
          loop.spawn(function() s:dec() end),
          loop.spawn(function() q:receive() end),
          loop.spawn(function() filelock.lock(f, "w") end),
          loop.spawn(function() child:wait() end),
          loop.spawn(function() loop.sleep(10) end),
          loop.spawn(function() other:join() end),
          loop.spawn(function() loop.select(nil, function() s:dec() end, other) end),
        }
        loop.sleep(0.1)
        local r = {}
        for i = 1, #ts do r[#r + 1] = ts[i]:status(); r[#r + 1] = tostring(ts[i]:cancel()) end
        for i = 1, #ts do
          local ok, why = ts[i]:join()
          r[#r + 1] = tostring(ok) .. ":" .. tostring(why)
        end
        other:cancel()
        s:inc()                               -- each now has what it waited for
        q:send("still here")
        holder:write(proc.EOF); holder:wait()
        loop.sleep(0.1)                       -- time for a stray helper to take it
        return table.concat(r, " ")
      end) }
      child:write("done\\n", proc.EOF)
      local ok, kind, code = child:wait()     -- the same handle, outside the loop
      f:close()
      return res[1], kind, code, sname, qname
    """, s, q, str(data), sys.executable, HOLDER)
    assert r[0].split(b" ") == [b"waiting", b"true"] * 7 + [b"nil:cancelled"] * 7
    assert r[1:3] == (b"exit", 0)
    # Another process: the unit, the message and the lock are all there.
    code, out, err = finish(spawn_py(
        "import ipc, sys\ns = ipc.sem.open(sys.argv[1]); q = ipc.mq.open(sys.argv[2])\n"
        "print(s.value, q.receive(0)[0].decode())", s, q))
    assert code == 0, err
    assert out.split() == ["1", "still", "here"]
    assert _free_elsewhere(data)
    ipc.sem.unlink(s)
    ipc.mq.unlink(q)


@pytest.mark.timeout(180)
def test_racing_timeouts_and_cancels_lose_no_unit(lua, make_name):
    """A Python process gives 200 units, one at a time, while 6 tasks take
    them with short timeouts and a seventh cancels them at random; at the
    end what the tasks took plus what is left is exactly what was given."""
    s = make_name()
    sh = ipc.sem.open(s, 1)
    sh.dec()
    try:
        p = spawn_py("import ipc, sys, time, random\ns = ipc.sem.open(sys.argv[1])\n"
                     "for i in range(200):\n    s.inc(); time.sleep(random.random() * 0.004)\n"
                     "print('given', flush=True)\n", s)
        r = run(lua, HEAD + """
          local sname, given = ...
          local s = assert(sem.open(sname))
          local took, cancels, stop = 0, 0, false
          local function taker()
            while not stop do
              local ok = s:dec(math.random() * 0.01)
              if ok then took = took + 1 end
            end
          end
          loop.run(function()
            local ts = {}
            for i = 1, 6 do ts[i] = loop.spawn(taker) end
            while not given() do
              loop.sleep(math.random() * 0.01)
              local i = math.random(6)
              if ts[i]:cancel() then
                cancels = cancels + 1
                ts[i] = loop.spawn(taker)
              end
            end
            stop = true
          end)
          local left = 0
          while s:dec(0) do left = left + 1 end
          s:close()
          return took, left, cancels
        """, s, lambda: p.poll() is not None)
        code, out, err = finish(p)
        assert code == 0 and out.strip() == "given", err
    finally:
        sh.close()
    took, left, cancels = r
    assert took + left == 200, r
    assert cancels > 0


# -- errors, nesting, select, deadlock -------------------------------------------------

def test_an_unjoined_failure_ends_run_with_its_traceback(lua):
    r = run(lua, HEAD + """
      local other_ran = false
      local function deep() error("task broke") end
      local ok, e = pcall(loop.run, function()
        loop.spawn(function() loop.sleep(0.01); deep() end)
        loop.spawn(function() loop.sleep(0.5); other_ran = true end)
        loop.sleep(5)
      end)
      return ok, e, other_ran
    """)
    assert r[0] is False
    assert b"task broke" in r[1] and b"stack traceback" in r[1] and b"deep" in r[1], r[1]
    assert r[2] is False   # run ended at once, the rest dropped


def test_a_joined_failure_is_the_joiners_to_handle(lua):
    r = run(lua, HEAD + """
      return loop.run(function()
        local t = loop.spawn(function() error({ code = 7 }) end)
        local ok, e, tb = t:join()
        local t2 = loop.spawn(function() error("plain") end)
        local _, e2, tb2 = t2:join()
        return ok, e.code, type(tb), e2, tb2:match("stack traceback") ~= nil, t:status()
      end)
    """)
    assert r[0] is None and r[1] == 7 and r[2] == b"string"
    assert r[3].endswith(b"plain") and r[4] is True and r[5] == b"failed"


def test_select_returns_the_first_and_cancels_its_own(lua, make_name):
    s = make_name()
    r = run(lua, HEAD + """
      local s = assert(sem.open(..., 1)); assert(s:dec())
      local res = { loop.run(function()
        local slow_done = false
        local i, ok, v = loop.select(nil, function() s:dec(); return "sem" end,
                                      function() loop.sleep(0.05); return "sleep" end)
        local j = loop.select(0.05, function() loop.sleep(1) end)
        s:inc()
        loop.sleep(0.05)
        assert(ok)
        return i, v, j
      end) }
      local free = s:dec(0)                   -- the cancelled select took nothing
      s:close()
      return res[1], res[2], res[3], free
    """, s)
    assert r == (2, b"sleep", False, True)   # i, then what join gives: true, results


def test_nesting_and_misuse_are_refused_clearly(lua):
    r = run(lua, HEAD + """
      local res = {}
      local function try(f, ...) local ok, e = pcall(f, ...); res[#res + 1] = e end
      loop.run(function()
        try(loop.run, function() end)
        local h = assert(proc.spawn("echo x", { stdout = true, callback = function()
          try(loop.run, function() end)
        end }))
        h:wait()
        local me = loop.spawn(function() end)
        try(loop.select, nil)
      end)
      local t = loop.spawn(function() end)
      try(t.join, t)
      try(loop.select, nil, t)
      try(loop.run, 5)
      try(loop.spawn, "x")
      try(loop.sleep, "x")
      loop.run()                              -- runs t, pending since
      res[#res + 1] = t:status()
      local ok, e = pcall(loop.run, function()
        local a; local b = loop.spawn(function() return a:join() end)
        a = loop.spawn(function() return b:join() end)
        return b:join()
      end)
      res[#res + 1] = e
      return (table.unpack or unpack)(res)
    """)
    assert b"already running" in r[0] and b"already running" in r[1]
    assert b"bad argument #2" in r[2]
    assert b"outside a task" in r[3] and b"outside a task" in r[4]
    assert b"bad argument #1" in r[5] and b"function expected" in r[5]
    assert b"bad argument #1" in r[6] and b"bad argument #1" in r[7]
    assert r[8] == b"done"
    assert b"deadlock" in r[9]


# -- outside a loop, and inside a task's own coroutine ------------------------------------

def test_calls_outside_a_task_block_as_before(lua, make_name):
    s = make_name()
    r = run(lua, HEAD + """
      local s = assert(sem.open(..., 1)); assert(s:dec())
      local plain = s:dec(0.05)                -- no loop: a plain timed wait
      local inner = loop.run(function()
        -- a coroutine of the task's own is not a task: its waits block
        local co = coroutine.wrap(function() return s:dec(0.05) end)
        return co()
      end)
      local slept = loop.sleep(0.01)
      s:close()
      return plain, inner, slept
    """, s)
    assert r == (False, False, True)


# -- Ctrl-C -----------------------------------------------------------------------------------

def test_ctrl_c_ends_run_and_gives_back_what_helpers_took(engine, tmp_path, make_name):
    s = make_name()
    sh = ipc.sem.open(s, 1)
    sh.dec()
    script = tmp_path / "ctrlc.lua"
    script.write_text(HEAD + """
      local s = assert(sem.open(arg[1]))
      loop.run(function()
        for i = 1, 3 do loop.spawn(function() s:dec() end) end
        loop.spawn(function() loop.sleep(60) end)
        loop.sleep(0.1)                        -- every task in its wait
        print("waiting"); io.stdout:flush()
        loop.sleep(60)
      end)
      print("not reached")
    """)
    p = spawn_luaipc([script, s], engine=engine)
    try:
        assert read_line(p) == "waiting"
        out, _ = ctrl_c(p)
    finally:
        sh.inc()                               # one unit, after the interrupt
        value = sh.value
        sh.close()
    assert "not reached" not in out
    assert value == 1


def test_fcntl_lock_taken_by_a_helper_is_the_processs(lua, data):
    """An fcntl lock taken by a helper thread belongs to the process, so the
    task holds it: another process is refused until the task unlocks."""
    r = run(lua, HEAD + """
      local path, probe = ...
      local f = assert(io.open(path, "r+b"))
      return loop.run(function()
        assert(filelock.lock(f, "w", 0, 4))
        local during = probe()
        assert(filelock.unlock(f, 0, 4))
        local after = probe()
        f:close()
        return during, after
      end)
    """, str(data), lambda: _free_elsewhere(data))
    assert r == (False, True)
