"""ipc.lanes on every engine: lanes are real processes; what crosses is
checked on the other side."""
from __future__ import annotations

import os
import time

import psutil
import pytest
from helpers.children import run_luaipc
from helpers.lua import is_luajit, run, skip_if_missing
from helpers.names import our_anonymous_lindas

from ipc import linda

pytestmark = pytest.mark.timeout(120)
LANES = 'local lanes = require "ipc.lanes"\n'
#: A lane's own pid, from Lua (no getpid in the standard library).
PID = ('local function pid() local f = io.open("/proc/self/stat"); '
       'local n = f:read("*n"); f:close(); return n end\n')


def _anonymous() -> set[str]:
    return {p.name for p in our_anonymous_lindas()}


@pytest.fixture
def no_leftovers():
    """The test's lanes leave no process and no linda behind."""
    before = _anonymous()
    me = psutil.Process()
    yield
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        kids = [c for c in me.children(recursive=True) if c.status() != psutil.STATUS_ZOMBIE]
        if not kids and _anonymous() <= before:
            break
        time.sleep(0.05)
    assert not kids, f"lane processes left: {kids}"
    assert _anonymous() <= before, f"lindas left: {_anonymous() - before}"


def test_source_lane_results_and_status(lua, no_leftovers):
    r = run(lua, LANES + """
      local h = lanes.gen("local a, b = ... ; return a + b, 'x', nil, { a, b }")(2, 3)
      local s0 = h.status
      local ok, a, b, c, d = h:join()
      local s1 = h.status
      local again = { h:join() }             -- the results are kept
      local first = h[1]
      h:close()
      return s0, ok, a, b, c, d[1], d[2], s1, again[2], first
    """)
    assert r[0] in (b"pending", b"running")
    assert r[1:] == (True, 5, b"x", None, 2, 3, b"done", 5, 5)


def test_function_lane_with_upvalues_deep_copied(lua, engine, no_leftovers):
    r = run(lua, LANES + """
      local shared = { n = 1 }
      local cyc = { name = "cyc" }; cyc.self = cyc
      local data = { a = shared, b = shared, list = { 1, 2, { 3 } }, cyc = cyc }
      local count = 10
      local function work(x, y)
        local same = data.a == data.b
        data.a.n = 99                       -- the lane's copy, not ours
        return same, data.cyc.self == data.cyc, data.list[3][1], count + x, y.k,
               string.format("%d", 42), math.floor(2.5)
      end
      local h = lanes.gen(work)(5, { k = "arg" })
      local res = { h:join() }
      h:close()
      return res[1], res[2], res[3], res[4], res[5], res[6], res[7], res[8], shared.n
    """)
    assert r == (True, True, True, 3, 15, b"arg", b"42", 2, 1)


def test_lane_error_carries_message_and_traceback(lua, no_leftovers):
    r = run(lua, LANES + """
      local function inner() error("boom in lane") end
      local h = lanes.gen(function() inner() end)()
      local ok, msg, tb = h:join()
      local status = h.status
      local raised = { pcall(function() return h[1] end) }
      h:close()
      return ok, msg, tb, status, raised[1], raised[2]
    """)
    ok, msg, tb, status, raised_ok, raised = r
    assert ok is None and b"boom in lane" in msg
    assert b"stack traceback" in tb and b"inner" in tb
    assert b"_serve" not in tb                 # the runner's frames are cut
    assert status == b"error"
    assert raised_ok is False and b"boom in lane" in raised


def test_error_values_that_are_tables_arrive_as_tables(lua, no_leftovers):
    r = run(lua, LANES + """
      local h = lanes.gen(function() error({ code = 7 }) end)()
      local ok, e = h:join()
      h:close()
      return ok, type(e), e.code
    """)
    assert r == (None, b"table", 7)


def test_what_cannot_cross_is_refused_in_the_parent_before_anything_starts(
        lua, no_leftovers):
    r = run(lua, LANES + """
      local t = { deep = { f = print } }
      local ok1, e1 = pcall(lanes.gen(function() return t end))
      local co = coroutine.create(function() end)
      local ok2, e2 = pcall(lanes.gen(function(x) return x end), co)
      local ok3, e3 = pcall(lanes.gen(function(x) return x end), io.stdout)
      return ok1, e1, ok2, e2, ok3, e3
    """)
    assert r[0] is False and b"cannot start the lane" in r[1]
    assert b"deep" in r[1] and b"function" in r[1]
    assert r[2] is False and (b"coroutine" in r[3] or b"thread" in r[3])
    assert r[4] is False and b"userdata" in r[5]


def test_cancel_a_busy_lane_and_a_stubborn_one(lua, no_leftovers):
    r = run(lua, LANES + """
      local busy = lanes.gen("while true do end")()
      local t0 = os.time()
      while busy.status ~= "running" do end
      local c1 = busy:cancel(5)
      local s1 = busy.status
      local j1 = { busy:join() }
      -- a lane that swallows the interrupt: killed when the timeout passes
      local stubborn = lanes.gen("while true do pcall(function() while true do end end) end")()
      while stubborn.status ~= "running" do end
      local c2 = stubborn:cancel(0.5)
      local s2 = stubborn.status
      busy:close(); stubborn:close()
      return c1, s1, j1[1], j1[2], c2, s2
    """)
    assert r == (True, b"cancelled", None, b"cancelled", True, b"cancelled")


def test_a_killed_lane_says_killed_with_the_signal(lua, no_leftovers):
    r = run(lua, LANES + PID + """
      local l = lanes.linda()
      local h = lanes.gen(function() l:send("pid", pid()); while true do end end)()
      local _, p = l:receive(30, "pid")
      os.execute("kill -9 " .. p)
      local ok, what, sig = h:join(30)
      local status = h.status
      h:close(); l:close()
      return ok, what, sig, status
    """)
    assert r == (None, b"killed", 9, b"killed")


def test_status_waiting_while_the_lane_blocks_in_a_call(lua, no_leftovers):
    r = run(lua, LANES + """
      local l = lanes.linda()
      local h = lanes.gen(function() l:send("up", true); return l:receive(30, "go") end)()
      l:receive(30, "up")
      local seen, t0 = {}, os.clock()
      repeat seen[#seen + 1] = h.status until h.status == "waiting" or #seen > 100000
      local waiting = h.status
      l:send("go", "now")
      local ok, k, v = h:join(30)
      h:close(); l:close()
      return waiting, ok, k, v
    """)
    assert r == (b"waiting", True, b"go", b"now")


def test_join_timeout(lua, no_leftovers):
    r = run(lua, LANES + """
      local h = lanes.gen("local s = require 'ipc.sem'; while true do end")()
      local a, b = h:join(0.2)
      h:cancel(0)
      h:close()
      return a, b
    """)
    assert r == (None, b"timeout")


def test_linda_as_upvalue_and_as_argument_arrives_connected(lua, no_leftovers):
    r = run(lua, LANES + """
      local up = lanes.linda()
      local arg = lanes.linda()
      local h = lanes.gen(function(l2)
        up:send("from-upvalue", "one")
        l2:send("from-arg", { two = 2 })
        local _, v = up:receive(30, "reply")
        return v
      end)(arg)
      local _, a = up:receive(30, "from-upvalue")
      local _, b = arg:receive(30, "from-arg")
      up:send("reply", "thanks")
      local ok, v = h:join(30)
      h:close(); up:close(); arg:close()
      return a, b.two, ok, v
    """)
    assert r == (b"one", 2, True, b"thanks")


def test_python_meets_a_lane_on_a_named_linda(lua, name, no_leftovers):
    with linda.create(name) as ld:
        r = run(lua, LANES + """
          local name = ...
          H = lanes.gen(function()
            local l = require("ipc.linda").open(name)
            local _, job = l:receive(30, "job")
            l:send("result", { sum = job[1] + job[2], engine = _VERSION })
            return true
          end)()
        """, name)
        ld.send("job", [20, 22])
        _, res = ld.receive("result", timeout=30)
        assert res["sum"] == 42
        assert run(lua, "local ok = H:join(30); H:close(); H = nil; return ok") == (True,)
        del r


def test_pool_reuses_its_processes(lua, no_leftovers):
    r = run(lua, LANES + PID + """
      local p = lanes.pool(2)
      local g = p:gen(function(i) return i * 2, pid() end)
      local hs = {}
      for i = 1, 30 do hs[i] = g(i) end
      local sum, pids, n = 0, {}, 0
      for i = 1, 30 do
        local ok, v, who = hs[i]:join(60)
        assert(ok, v)
        sum = sum + v
        if not pids[who] then pids[who] = true; n = n + 1 end
      end
      p:close()
      return sum, n
    """)
    assert r == (930, 2) or (r[0] == 930 and r[1] <= 2)


def test_pool_replaces_a_killed_process(lua, no_leftovers):
    r = run(lua, LANES + PID + """
      local p = lanes.pool(1)
      local g = p:gen(function(die) if die then os.execute("kill -9 " .. pid()) end
                                     return pid() end)
      local a = g(true)
      local ok1, what = a:join(30)
      local b = g(false)
      local ok2, who = b:join(30)
      p:close()
      return ok1, what, ok2, type(who)
    """)
    assert r == (None, b"killed", True, b"number")


def test_collecting_handles_leaves_nothing(lua, no_leftovers):
    run(lua, LANES + """
      for i = 1, 3 do lanes.gen("while true do end")() end   -- dropped at once
      local p = lanes.pool(2)
      p = nil
      collectgarbage(); collectgarbage()
    """)
    lua.execute("collectgarbage(); collectgarbage()")
    import gc
    gc.collect()


def test_nproc(lua):
    assert run(lua, LANES + "return lanes.nproc()") == (len(os.sched_getaffinity(0)),)


def test_source_lane_on_another_engine(lua, engine, no_leftovers):
    other = "luajit2.1" if not is_luajit(engine) else "lua5.4"
    skip_if_missing(other)
    r = run(lua, LANES + """
      local h = lanes.gen({ engine = ... }, "return _VERSION, jit and jit.version")()
      local res = { h:join(60) }
      h:close()
      return res[1], res[2], res[3]
    """, other)
    assert r[0] is True
    assert (r[2] is not None) == is_luajit(other)
    r = run(lua, LANES + """
      return pcall(lanes.gen, { engine = ... }, function() end)
    """, other)
    assert r[0] is False and b"pass Lua source" in r[1]


def test_lane_gets_package_path_and_env(lua, tmp_path, no_leftovers):
    (tmp_path / "mymod.lua").write_text("return { answer = 42 }")
    r = run(lua, LANES + """
      package.path = ... .. "/?.lua;" .. package.path
      local h = lanes.gen({ env = { LANE_SAYS = "hi", PATH = os.getenv("PATH") } }, function()
        return require("mymod").answer, os.getenv("LANE_SAYS"), os.getenv("HOME")
      end)()
      local res = { h:join(60) }
      h:close()
      return res[1], res[2], res[3], res[4]
    """, str(tmp_path))
    assert r[:3] == (True, 42, b"hi")
    assert r[3] is None or "HOME" in os.environ


def test_bad_arguments(lua):
    r = run(lua, LANES + """
      local out = {}
      for _, f in ipairs({ function() return lanes.gen(42) end,
                           function() return lanes.gen("syntax error here") end,
                           function() return lanes.pool(0) end,
                           function() return lanes.gen({ env = { 1 } }, "return 1") end,
                           function() return lanes.gen({ engine = 5 }, "return 1") end }) do
        local ok, e = pcall(f)
        out[#out + 1] = tostring(ok) .. ":" .. tostring(e)
      end
      return table.concat(out, "\\n")
    """)[0].decode().split("\n")
    assert all(line.startswith("false:") for line in r), r
    assert "function or Lua source" in r[0]
    assert "does not compile" in r[1]
    assert "at least one process" in r[2]


def test_script_with_lanes_under_luaipc(tmp_path, engine):
    skip_if_missing(engine)
    script = tmp_path / "par.lua"
    script.write_text(LANES + """
      local gen = lanes.gen(function(a, b)
        local s = 0
        for i = a, b do s = s + i end
        return s
      end)
      local hs = {}
      for k = 0, 3 do hs[#hs + 1] = gen(k * 1000 + 1, (k + 1) * 1000) end
      local total = 0
      for _, h in ipairs(hs) do total = total + h[1] end
      print(total)
    """)
    r = run_luaipc([str(script)], engine=engine, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() in ("8002000", "8002000.0")



def test_a_forked_child_does_not_kill_the_parents_lanes(lua, no_leftovers):
    first = run(lua, LANES + PID + "P = lanes.pool(1); G = P:gen(function(x) return x + 1, pid() end)"
                " local h = G(0); local ok, _, who = h:join(30); return who")[0]
    pid = os.fork()
    if pid == 0:  # pragma: no cover (the child)
        import atexit
        try:
            atexit._run_exitfuncs()      # what its exit would run: the finalizers
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    r = run(lua, "local h = G(41); local ok, v, who = h:join(30); P:close(); P, G = nil, nil; "
                 "return ok, v, who")
    assert r == (True, 42, first)           # the same process: not killed


def test_a_lane_whose_process_cannot_start_says_killed(lua, no_leftovers):
    # Its one process ended before it took the job: the watcher reports
    # that job, where join() and close() used to wait forever for it.
    r = run(lua, LANES + """
      local h = lanes.gen({ env = { PYTHONHOME = "/nonexistent" } }, "return 1")()
      local ok, what, sig = h:join(60)
      local status = h.status
      h:close()
      return ok, what, sig, status
    """)
    assert r == (None, b"killed", 0, b"killed")


def test_pool_checks_once_and_env_before_starting_anything(no_leftovers):
    # `once` is spelled into the lane's command line, and a bad env used to
    # fail in Popen with AttributeError.
    from ipc.lanes import Pool
    for kwargs in ({"once": "true); os.exit(3"}, {"once": None}, {"env": True},
                   {"env": ["A=1"]}):
        with pytest.raises(TypeError):
            Pool(1, "lua5.4", **kwargs)


def test_take_and_done_check_their_arguments(no_leftovers):
    from ipc.lanes import done, take
    with linda.create() as ld:
        for bad in ((None, 1), (ld, "1"), (ld, True)):
            with pytest.raises(TypeError):
                take(*bad)
        for bad in ((None, 1, 1, b""), (ld, 1, "1", b""), (ld, 1, 1, "not bytes"),
                    (ld, 1, 1, [b"x"])):
            with pytest.raises(TypeError):
                done(*bad)
        assert ld.count() == {}                 # nothing was written
