"""ipc.linda from Lua, on every engine: in a runtime of this process, and in
luaipc children meeting Python and each other on one linda."""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
from helpers.children import (
    child_env,
    finish,
    interrupt,
    spawn_luaipc,
    still_blocked,
    wait_line,
)
from helpers.lua import ENGINES, lua_version, run, skip_if_missing
from helpers.names import SHM_DIR

from ipc import linda

pytestmark = pytest.mark.timeout(120)
L = 'local linda = require "ipc.linda"\n'


def test_the_verbs(lua, name):
    r = run(lua, L + """
      local l = assert(linda.create(...))
      local out = {}
      local function add(...) for i = 1, select("#", ...) do out[#out + 1] = tostring((select(i, ...))) end end
      add(l:send("k", 1, "two"))                 -- true
      add(l:count("k"))                          -- 2
      add(l:receive("k"))                        -- k 1
      add(l:receive(0, "none", "k"))             -- k two
      add(l:receive(0, "k"))                     -- nil timeout
      add(l:limit("k", 1))                       -- false under
      add(l:limit("k"))                          -- 1 under
      add(l:send("k", "a"))                      -- true
      add(l:send(0, "k", "b"))                   -- nil timeout
      add(l:set("k", "x", "y"))                  -- false over
      add(l:get("k", 5))                         -- x y
      add(l:count("k"))                          -- 2
      add(l:limit("k", "unlimited"))             -- true under
      add(l:count("zzz"))                        -- nil
      add(l:set("k"))                            -- false under
      add(l:count("k"))                          -- 0
      add(l:send(nil, 3, "three"))               -- true (a number key after the timeout)
      add(l:receive(nil, 3))                     -- 3 three
      add(l:name() == ...)
      add(l:close(), l:close())
      return table.concat(out, " ")
    """, name)
    assert r == ((b"true 2 k 1 k two nil timeout false under 1 under true nil timeout "
                 b"false over x y 2 true under nil false under 0 true 3 three true true true"),)
    assert not (SHM_DIR / f"linda.{name}").exists()


def test_receive_batched_and_count_table(lua, name):
    r = run(lua, L + """
      local l = assert(linda.create(...))
      l:send("a", 1, 2, 3)
      l:send("b", "x")
      local c = l:count()
      local k, x, y = l:receive_batched(0, "a", 2)
      local t, why = l:receive_batched(0, "a", 2)
      local k2, z = l:receive_batched(0, "a", 1, 5)
      l:close()
      return c.a, c.b, k, x, y, t, why, k2, z
    """, name)
    assert r == (3, 1, b"a", 1, 2, None, b"timeout", b"a", 3)


def test_timeout_waits_then_says_timeout(lua, name):
    r = run(lua, L + """
      local l = assert(linda.create(...))
      local sem = require "ipc.sem"
      local t0 = os.time()
      local a, b = l:receive(0.3, "k")
      l:close()
      return a, b
    """, name)
    assert r == (None, b"timeout")


def test_values_of_every_kind_from_python_to_lua(lua, name):
    with linda.create(name) as ld:
        ld.send("k", None, True, 7, 2.5, "txt", b"\xff\x00", [1, "two"], {"x": 3.5}, {})
        r = run(lua, L + """
          local l = assert(linda.open(...))
          local out = {}
          for i = 1, 9 do
            local _, v = l:receive(0, "k")
            out[i] = v
          end
          l:close()
          return out[1], out[2], out[3], out[4], out[5], out[6],
                 out[7][1], out[7][2], #out[7], out[8].x, next(out[9])
        """, name)
    assert r == (None, True, 7, 2.5, b"txt", b"\xff\x00", 1, b"two", 2, 3.5, None)


def test_values_of_every_kind_from_lua_to_python(lua, engine, name):
    with linda.create(name) as ld:
        run(lua, L + """
          local l = assert(linda.open(...))
          local shared = { "s" }
          assert(l:send("k", true, false, 7, 2.5, "txt", "\\255\\0", { 1, "two" },
                        { x = 3.5, [10] = "ten" }, {}, { a = shared, b = shared }))
          l:close()
        """, name)
        got = [ld.receive("k", timeout=0)[1] for _ in range(10)]
    assert got[:7] == [True, False, 7, 2.5, "txt", b"\xff\x00", [1, "two"]]
    assert got[7] == {"x": 3.5, 10: "ten"}
    assert got[8] == {}
    assert got[9] == {"a": ["s"], "b": ["s"]} and got[9]["a"] is got[9]["b"]


def test_ints_and_floats_stay_distinct_where_lua_has_both(lua, engine, name):
    if lua_version(engine) < (5, 3):
        pytest.skip("5.1, 5.2 and LuaJIT have one number type")
    with linda.create(name) as ld:
        run(lua, L + """
          local l = assert(linda.open(...))
          l:send("k", 3, 3.0, math.maxinteger, math.mininteger)
          l:close()
        """, name)
        got = [ld.receive("k", timeout=0)[1] for _ in range(4)]
        assert [type(v) for v in got] == [int, float, int, int]
        assert got == [3, 3.0, 2**63 - 1, -2**63]
        ld.send("k", 3, 3.0)
        r = run(lua, L + """
          local l = assert(linda.open(...))
          local _, a = l:receive(0, "k"); local _, b = l:receive(0, "k")
          l:close()
          return math.type(a), math.type(b)
        """, name)
    assert r == (b"integer", b"float")


def test_refusals_are_clear_errors_naming_what_and_where(lua, name):
    r = run(lua, L + """
      local l = assert(linda.create(...))
      local res = {}
      for i, v in ipairs({ function() end, coroutine.create(function() end), io.stdout,
                           { deep = { print } } }) do
        local ok, err = pcall(l.send, l, "k", v)
        res[i] = tostring(err)
      end
      local ok, err = pcall(l.send, l, {}, 1)
      res[#res + 1] = tostring(err)
      res[#res + 1] = tostring(select(2, pcall(l.send, l, "k")))
      res[#res + 1] = tostring(select(2, pcall(l.receive, l)))
      res[#res + 1] = tostring(l:count("k"))
      l:close()
      return table.concat(res, "\\n")
    """, name)[0].decode()
    lines = r.split("\n")
    assert "function" in lines[0]
    assert "coroutine" in lines[1] or "thread" in lines[1]
    assert "userdata" in lines[2]
    assert "deep" in lines[3] and "function" in lines[3]
    assert "key must be" in lines[4]
    assert "value after the key" in lines[5]
    assert "key expected" in lines[6]
    assert lines[7] == "nil"                   # nothing was sent


def test_handles_are_handles(lua, name):
    r = run(lua, L + """
      local l = assert(linda.create(...))
      local s = tostring(l)
      local t = type(l)
      l:close()
      return s, t, tostring(l), pcall(l.send, l, "k", 1)
    """, name)
    assert r[0] == f"ipc.linda ({name})".encode()
    assert r[1:4] == (b"userdata", b"ipc.linda (closed)", False)


def test_open_and_create_error_triples(lua, name):
    r = run(lua, L + """
      local name = ...
      local l = assert(linda.create(name))
      local a = { linda.create(name) }
      local b = { linda.open(name .. "-none") }
      local c = { linda.create("a/b") }
      local d = { pcall(linda.create, name .. "x", { capacity = 10 }) }
      l:close()
      return a[1], a[2], a[3], b[1], b[3], c[1], c[3], d[1], d[2]
    """, name)
    assert r[:7] == (None, b"File exists", 17, None, 2, None, 22)
    assert r[7] is False and b"capacity must be at least 4096" in r[8]
    assert not (SHM_DIR / f"linda.{name}x").exists()


def test_anonymous_linda(lua):
    r = run(lua, L + """
      local a, b = linda.new(), linda.new()
      local an, bn = a:name(), b:name()
      a:close(); b:close()
      return an ~= bn, an
    """)
    assert r[0] is True
    assert not (SHM_DIR / f"linda.{r[1].decode()}").exists()


_ECHO = """
local linda = require "ipc.linda"
local l = assert(linda.open(arg[1]))
io.write("ready\\n"); io.flush()
while true do
  local k, v = l:receive("job", "stop")
  if k == "stop" then break end
  assert(l:send("done", { from = arg[2], got = v }))
end
l:close()
"""


def test_mixed_engines_and_python_on_one_linda(name, tmp_path):
    """A Lua child on each of three engines serves one key; Python sends
    jobs and collects who did what."""
    engines = [e for e in ("lua5.1", "lua5.4", "luajit2.1") if e in ENGINES]
    for e in engines:
        skip_if_missing(e)
    script = tmp_path / "echo.lua"
    script.write_text(_ECHO)
    with linda.create(name) as ld:
        kids = [spawn_luaipc([script, name, e], engine=e) for e in engines]
        for k in kids:
            wait_line(k)
        jobs = [{"n": i, "s": "x" * i, "l": [i, i + 0.5]} for i in range(60)]
        for j in jobs:
            ld.send("job", j)
        got = [ld.receive("done", timeout=30)[1] for _ in jobs]
        for _ in kids:
            ld.send("stop", True)
        for k in kids:
            rc, _, err = finish(k)
            assert rc == 0, err
    assert sorted(g["got"]["n"] for g in got) == list(range(60))
    for g in got:
        j = g["got"]
        assert j == jobs[j["n"]]
    assert {g["from"] for g in got} <= set(engines)


def test_ctrl_c_ends_a_blocked_receive_with_interrupted(engine, name, tmp_path):
    skip_if_missing(engine)
    script = tmp_path / "wait.lua"
    script.write_text('local l = assert(require("ipc.linda").open(arg[1]))\n'
                      'io.write("ready\\n"); io.flush()\n'
                      'print(pcall(l.receive, l, "k"))\n')
    with linda.create(name) as ld:
        p = spawn_luaipc([script, name], engine=engine)
        wait_line(p)
        assert still_blocked(p)
        interrupt(p)
        _rc, out, err = finish(p)
        assert "interrupted!" in out + err
        ld.send("k", 1)
        assert ld.receive("k", timeout=0) == ("k", 1)      # nothing was taken


def test_lua_blocked_send_waits_for_python(engine, name, tmp_path):
    skip_if_missing(engine)
    script = tmp_path / "send.lua"
    script.write_text('local l = assert(require("ipc.linda").open(arg[1]))\n'
                      'l:limit("k", 1); assert(l:send("k", 1))\n'
                      'io.write("ready\\n"); io.flush()\n'
                      'print(l:send(20, "k", 2))\n')
    with linda.create(name) as ld:
        p = spawn_luaipc([script, name], engine=engine)
        wait_line(p)
        assert still_blocked(p)
        t0 = time.monotonic()
        assert ld.receive("k", timeout=10) == ("k", 1)
        rc, out, err = finish(p)
        assert (rc, out.strip()) == (0, "true"), err
        assert time.monotonic() - t0 < 10
        assert ld.receive("k", timeout=0) == ("k", 2)


def test_python_child_and_lua_runtime_share_a_linda(lua, name):
    p = subprocess.Popen([sys.executable, "-c", (
        "import sys, ipc.linda as L\n"
        "l = L.open(sys.argv[1])\n"
        "k, v = l.receive('ping', timeout=30)\n"
        "l.send('pong', {'echo': v, 'n': len(v['list'])})\n"), name],
        env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        r = run(lua, L + """
          local l = assert(linda.create(...))
          assert(l:send("ping", { list = { 1, 2, 3 }, name = "x" }))
          local k, v = l:receive(30, "pong")
          l:close()
          return k, v.n, v.echo.name, v.echo.list[3]
        """, name)
    finally:
        rc, _, err = finish(p)
    assert rc == 0, err
    assert r == (b"pong", 3, b"x", 3)


def test_huge_limit_and_capacity_are_clean_refusals(lua, name):
    # Found by the hostile-input fuzz: a limit of 2^64 (a float that
    # checkinteger lets through) failed in msgpack with Python's
    # OverflowError, and a capacity of 2^62 in os.ftruncate the same way.
    r = run(lua, L + """
      local l = assert(linda.create(...))
      local ok, e = pcall(function() local r = l:limit("k", 2^64); return r end)
      local limit = l:limit("k")                 -- unchanged
      l:close()
      return ok, e, limit, linda.create(nil, { capacity = 2^62 })
    """, name)
    assert r[0] is False
    assert b"bad argument #2 to 'limit' (number has no integer representation)" in r[1], r[1]
    assert r[2:] == (b"unlimited", None, b"File too large", 27)


def test_huge_capacity_from_python_is_efbig():
    with pytest.raises(OSError) as exc:
        linda.create(capacity=2 ** 62)
    assert exc.value.errno == 27
