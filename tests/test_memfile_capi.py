"""Big copies (64 KiB and more) between shm/mmap handles and Lua strings
through Lua's own C API (ipc/lua/capi.py; issue 14, item 4), on every
engine: writes on PUC-Lua 5.2+, reads on 5.4+, lupa's path elsewhere.

Each test counts the copies that really went through the C API (a
wrapper around ``capi.copiers``), so a path that silently fell back to
lupa's cannot pass for the fast one, and checks every byte that crossed,
in this process and in another one.
"""
from __future__ import annotations

import hashlib
import os

import pytest
from helpers.children import finish, spawn_py
from helpers.lua import is_luajit, lua_version, run

from ipc.lua import capi, new_runtime

pytestmark = pytest.mark.timeout(120)

BIG = 65536          # _memfile.lua's BIG


@pytest.fixture
def copies(monkeypatch):
    """How many big copies each way went through the C API, and returned
    True (the string went through the registry slot)."""
    counts = {"pull": 0, "push": 0}
    real = capi.copiers

    def counting(*args):
        pull, push = real(*args)

        def cpull(*a):
            done = pull(*a)
            counts["pull"] += bool(done)
            return done

        def cpush(*a):
            done = push(*a)
            counts["push"] += bool(done)
            return done
        return (cpull if pull else None), (cpush if push else None)

    monkeypatch.setattr(capi, "copiers", counting)
    return counts


def expected_paths(engine: str) -> tuple[bool, bool]:
    """(reads, writes) through the C API on this engine."""
    if is_luajit(engine):
        return False, False             # the FFI copies once already
    v = lua_version(engine)
    return v >= (5, 4), v >= (5, 2)


def check_counts(engine: str, copies: dict, reads: int, writes: int) -> None:
    pull, push = expected_paths(engine)
    assert copies == {"pull": reads if pull else 0, "push": writes if push else 0}


# A pattern of every byte value, unlike at each offset: a copy that lands
# one byte off, or drops a NUL, shows.
PATTERN = """
local function pattern(n, seed)
  local t, k = {}, 0
  for i = 1, n, 4096 do
    k = k + 1
    local m = math.min(4096, n - i + 1)
    local chunk = {}
    for j = 1, m do chunk[j] = string.char((i + j * 7 + seed) % 256) end
    t[k] = table.concat(chunk)
  end
  return table.concat(t)
end
"""


@pytest.mark.parametrize("size", [BIG - 1, BIG, BIG + 1, 1024 * 1024 + 3])
def test_big_writes_and_reads_keep_every_byte(lua, engine, name, copies, size):
    r = run(lua, PATTERN + """
      local name, size = ...
      local h = assert(require("ipc.shm").create(name, size + 10))
      local s = pattern(size, 3)
      assert(h:seek("set", 5) == 5)
      assert(h:write(s) == h)
      assert(h:seek("cur") == 5 + size)
      h:seek("set", 5)
      local back = h:read(size)
      h:seek("set", 5)
      local all = h:read("a")                      -- to the end: size + 5
      h:seek("set", 0)
      local head = h:read(5)
      h:close()
      return back == s, all == s .. string.rep("\\0", 5), head == string.rep("\\0", 5)
    """, name, size)
    assert r == (True, True, True)
    check_counts(engine, copies, reads=(size >= BIG) + (size + 5 >= BIG), writes=size >= BIG)


def test_a_write_past_the_end_stores_what_fits(lua, engine, name, copies):
    r = run(lua, PATTERN + """
      local h = assert(require("ipc.shm").create(..., 3 * 65536))
      local s = pattern(4 * 65536, 1)
      h:seek("set", 65536)
      local ok, msg = h:write(s)
      h:seek("set", 65536)
      local got = h:read(2 * 65536)
      h:close()
      return ok, msg, got == s:sub(1, 2 * 65536)
    """, name)
    assert r == (None, b"not enough space", True)
    check_counts(engine, copies, reads=1, writes=1)


def test_copies_inside_coroutines_go_to_the_right_thread(lua, engine, name, copies):
    """Each coroutine is a lua_State of its own: strings pushed for one must
    arrive in it, whatever the nesting and the interleaving."""
    r = run(lua, PATTERN + """
      local h = assert(require("ipc.shm").create(..., 8 * 65536))
      local function worker(slot, seed)
        return coroutine.wrap(function()
          local s = pattern(65536, seed)
          for round = 1, 3 do
            h:seek("set", slot * 65536); assert(h:write(s))
            coroutine.yield(true)
            h:seek("set", slot * 65536)
            if h:read(65536) ~= s then return "slot " .. slot .. " round " .. round end
            local inner = coroutine.wrap(function()            -- nested, too
              h:seek("set", slot * 65536)
              return h:read(65536) == s
            end)
            if not inner() then return "inner " .. slot end
          end
          return "ok"
        end)
      end
      local ws, out = {}, {}
      for i = 1, 4 do ws[i] = worker(i, i * 11) end
      local live = 4
      while live > 0 do
        for i = 1, 4 do
          if ws[i] then
            local v = ws[i]()
            if v ~= true then out[#out + 1] = v; ws[i] = nil; live = live - 1 end
          end
        end
      end
      h:close()
      table.sort(out)
      return table.concat(out, ",")
    """, name)
    assert r == (b"ok,ok,ok,ok",)
    check_counts(engine, copies, reads=4 * 3 * 2, writes=4 * 3)


def test_bytes_cross_to_another_process_and_back(lua, engine, name, copies):
    """Lua writes 1 MiB through the C API, a Python process reads it from
    the shm and writes its own; Lua reads that back."""
    size = 1024 * 1024
    digest = run(lua, PATTERN + """
      local name, size = ...
      H = assert(require("ipc.shm").create(name, size))
      assert(H:write(pattern(size, 5)))
      return #pattern(size, 5)
    """, name, size)
    assert digest == (size,)
    child = spawn_py(
        "import hashlib, sys, ipc.shm\n"
        "h = ipc.shm.attach(sys.argv[1])\n"
        "data = bytes(h.buf)\n"
        "print(hashlib.sha256(data).hexdigest())\n"
        "h.buf[:] = bytes(255 - b for b in data)\n"
        "h.close()\n", name)
    rc, out, err = finish(child, timeout=60)
    assert rc == 0, err
    mine = run(lua, PATTERN + """
      local size = ...
      return pattern(size, 5), (function() H:seek("set", 0); return H:read(size) end)()
    """, size)
    assert out.strip() == hashlib.sha256(mine[0]).hexdigest()
    assert mine[1] == bytes(255 - b for b in mine[0])
    run(lua, "H:close(); H = nil")
    check_counts(engine, copies, reads=1, writes=1)


def test_read_only_mmap_reads_big_and_never_writes(lua, engine, tmp_path, copies):
    path = tmp_path / "ro.bin"
    data = os.urandom(3 * BIG + 17)
    path.write_bytes(data)
    r = run(lua, """
      local h = assert(require("ipc.mmap").open(..., "r"))
      local a = h:read(3 * 65536 + 17)
      h:seek("set", 0)
      local ok, msg = h:write(string.rep("x", 65536))
      h:close()
      return a, ok, msg
    """, path)
    assert r == (data, None, b"permission denied")
    assert path.read_bytes() == data
    check_counts(engine, copies, reads=1, writes=0)


def test_a_memory_limited_runtime_takes_lupas_path(engine, name, copies):
    """lupa's restricted allocator may refuse, and a refusal inside the C
    API would cross Python's frames: a state that has one copies the old
    way."""
    if is_luajit(engine):
        pytest.skip("LuaJIT's states have no restricted allocator in lupa (and copy by FFI)")
    lua = new_runtime(engine, max_memory=64 * 1024 * 1024)
    r = run(lua, PATTERN + """
      local h = assert(require("ipc.shm").create(..., 2 * 1024 * 1024))
      local s = pattern(1024 * 1024, 9)
      assert(h:write(s)); h:seek("set", 0)
      local same = h:read(#s) == s
      h:close()
      return same
    """, name)
    assert r == (True,)
    assert copies == {"pull": 0, "push": 0}
    # (A read past such a limit is not tried here: lupa 2.8 hangs when the
    # string it makes of a Python result meets the limit, on its own path.)


def test_finalizers_that_fail_during_a_big_read_are_warnings(lua, engine, name, copies):
    """A big read allocates, which may run finalizers; on 5.4+ (the engines
    that read through the C API) their errors are warnings and never cross
    the Python frames of the copy."""
    if not expected_paths(engine)[0]:
        pytest.skip("reads take lupa's path here (5.2 and 5.3 raise finalizer errors)")
    r = run(lua, PATTERN + """
      local h = assert(require("ipc.shm").create(..., 4 * 65536))
      local s = pattern(4 * 65536, 2)
      assert(h:write(s))
      local bad = 0
      local mt = { __gc = function() bad = bad + 1; error("finalizer fails") end }
      local same = true
      for i = 1, 200 do
        for _ = 1, 50 do setmetatable({}, mt) end          -- garbage that fails
        h:seek("set", 0)
        same = same and h:read(#s) == s
      end
      collectgarbage()
      h:close()
      return same, bad > 0
    """, name)
    assert r == (True, True)
    check_counts(engine, copies, reads=200, writes=1)


def test_replaced_globals_do_not_reach_the_c_api(engine, name, copies):
    """A script that replaces tostring, string.format or coroutine.running
    before its first require cannot hand the C API a wrong address: the
    memory faces use the functions that were there at install()."""
    lua = new_runtime(engine)
    r = run(lua, PATTERN + """
      tostring = function() return "thread: 0x10" end
      string.format = function() return "0x10" end
      coroutine.running = function() return nil end
      _VERSION = "Lua 5.4"
      local h = assert(require("ipc.shm").create(..., 2 * 65536))
      local s = pattern(2 * 65536, 4)
      assert(h:write(s)); h:seek("set", 0)
      local same = h:read(#s) == s
      h:close()
      return same
    """, name)
    assert r == (True,)
    check_counts(engine, copies, reads=1, writes=1)


def test_a_thread_with_a_metatable_copies_the_old_way(engine, name, copies):
    """On 5.2 and 5.3 the thread's address comes from tostring, which a
    thread metatable could change: such a state takes lupa's path."""
    lua = new_runtime(engine)
    r = run(lua, PATTERN + """
      debug.setmetatable(coroutine.create(function() end), { __tostring = function() return "0x10" end })
      local h = assert(require("ipc.shm").create(..., 2 * 65536))
      local s = pattern(2 * 65536, 6)
      assert(h:write(s)); h:seek("set", 0)
      local same = h:read(#s) == s
      h:close()
      return same
    """, name)
    assert r == (True,)
    v = lua_version(engine)
    if is_luajit(engine) or v < (5, 4):
        assert copies == {"pull": 0, "push": 0}
    else:                               # "%p" is no metamethod
        check_counts(engine, copies, reads=1, writes=1)


def test_a_closed_handle_copies_nothing(lua, engine, name, copies):
    r = run(lua, """
      local h = assert(require("ipc.shm").create(..., 2 * 65536))
      assert(h:write(string.rep("y", 65536)))
      h:close()
      local ok1, e1 = pcall(h.write, h, string.rep("z", 65536))
      local ok2, e2 = pcall(h.read, h, 65536)
      return ok1, e1, ok2, e2
    """, name)
    assert r[0] is False and b"closed" in r[1]
    assert r[2] is False and b"closed" in r[3]
    check_counts(engine, copies, reads=0, writes=1)
