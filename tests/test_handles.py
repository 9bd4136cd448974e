"""Lua handles are full userdata, as LuaIPC's, on every engine: their state
is out of a script's reach, and collecting them leaks nothing and still
runs the Python finalizers (support.lua, "handles")."""
from __future__ import annotations

import gc

import pytest
from helpers.names import SHM_DIR, queue_exists

from ipc.lua import support

pytestmark = pytest.mark.timeout(120)

# One handle of every kind: `h[kind]`.
OPEN_ALL = """
  local name, path = ...
  local f = assert(io.open(path, "wb")); f:write("data"); f:close()
  local h = {
    shm = assert(require("ipc.shm").create(name, 16)),
    mmap = assert(require("ipc.mmap").open(path, "rw")),
    strfile = require("ipc.strfile").open("data"),
    sem = assert(require("ipc.sem").open(name, 1)),
    mq = assert(require("ipc.mq").open(name, 1, 8)),
    proc = assert(require("ipc.proc").spawn("exit 0", {})),
  }
"""
KINDS = ["shm", "mmap", "strfile", "sem", "mq", "proc"]


def test_every_handle_is_an_opaque_userdata(lua, name, tmp_path):
    r = lua.execute(OPEN_ALL + """
      local out = {}
      for _, kind in ipairs { "shm", "mmap", "strfile", "sem", "mq", "proc" } do
        local x = h[kind]
        local assigned, aerr = pcall(function() x.secret = 1 end)
        local iterated = pcall(function() for _ in pairs(x) do end end)
        out[#out + 1] = table.concat({
          kind, type(x), tostring(io.type(x)), tostring(getmetatable(x)),
          tostring(assigned), tostring(aerr:find("attempt to index", 1, true) ~= nil),
          tostring(iterated), tostring((pcall(rawget, x, "secret"))),
          tostring((pcall(rawset, x, "secret", 1))), tostring(x.secret),
          tostring(pcall(setmetatable, x, {})),
          (tostring(x):gsub("%(0x%x+%)", "(ADDR)"):gsub("pid %d+", "pid N")),
        }, " ")
      end
      h.proc:wait()
      for _, kind in ipairs { "shm", "mmap", "strfile", "sem", "mq" } do
        h[kind]:close()
        out[#out + 1] = tostring(h[kind])
      end
      return table.concat(out, "\\n")
    """, name.encode(), str(tmp_path / "m").encode())
    rows = r.decode().split("\n")
    for kind, row in zip(KINDS, rows, strict=False):
        shown = "(pid N)" if kind == "proc" else "(ADDR)"
        assert row == (f"{kind} userdata nil false false true false false false nil "
                       f"false ipc.{kind} {shown}"), row
    assert rows[len(KINDS):] == [f"ipc.{k} (closed)" for k in KINDS if k != "proc"]


def test_metamethods_on_what_is_no_handle_change_nothing(lua):
    # Reached through the debug library, as the fuzz does.
    r = lua.execute("""
      local mt = debug.getmetatable(require("ipc.strfile").open("x"))
      return mt.__tostring(42), mt.__tostring({}), debug.getmetatable(42) == nil
    """)
    assert r == (b"ipc.strfile (?)", b"ipc.strfile (?)", True)


def test_handles_are_distinct_and_keep_their_state(lua):
    r = lua.execute("""
      local strfile = require "ipc.strfile"
      local a, b = strfile.open("a"), strfile.open("b")
      return a ~= b, tostring(a) ~= tostring(b), a:read("a"), b:read("a")
    """)
    assert r == (True, True, b"a", b"b")


def test_collected_creator_handles_remove_their_names(lua, name):
    # Dropped without close(): the Python finalizers still run, within the
    # two full collections a finalized object needs in Lua.
    lua.execute("""
      local name = ...
      local shm, sem, mq = require "ipc.shm", require "ipc.sem", require "ipc.mq"
      assert(shm.create(name, 16)); assert(sem.open(name, 1)); assert(mq.open(name, 1, 8))
    """, name.encode())
    assert (SHM_DIR / name).exists() and (SHM_DIR / f"sem.{name}").exists()
    assert queue_exists(name)
    lua.execute("collectgarbage(); collectgarbage()")
    assert not (SHM_DIR / name).exists()
    assert not (SHM_DIR / f"sem.{name}").exists()
    assert not queue_exists(name)


def _tokens() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if type(o) is support._Token)


def test_many_handles_leak_no_python_object(lua, name):
    # PUC-Lua 5.2+ make each handle from a Python object (support.py:
    # token); 5.1 and LuaJIT with newproxy, and there the Lua heap must
    # stay flat as well once its tables have grown to the load.  (On 5.2+
    # it does not: lupa's table of references loses slots under churn of
    # any Python objects, with or without our handles.)
    churn = lua.eval("""function(n, name)
      local strfile, shm = require "ipc.strfile", require "ipc.shm"
      for i = 1, n do local h = strfile.open("x") end
      if name then
        for i = 1, n / 20 do local h = assert(shm.create(name, 16)); h:close() end
      end
      collectgarbage(); collectgarbage()
      return (collectgarbage("count"))
    end""")
    before = _tokens()
    churn(100_000, name.encode())
    objects = len(gc.get_objects())
    churn(100_000, name.encode())
    assert _tokens() == before
    assert len(gc.get_objects()) < objects + 1000
    if lua.eval("newproxy") is not None:
        heap = churn(100_000, None)
        assert churn(100_000, None) <= heap * 1.1, heap
