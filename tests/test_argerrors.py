"""Misuse errors read as the engine's own C functions' (luaL_argerror's rule),
compared on every engine with what its io library says for the same misuse.

The rule: the argument number counts ``self`` unless the call is a method
call with a known name; a function its call site does not name (handed to
pcall) is '?' on 5.1 and LuaJIT, found in the globals on 5.2 and in
package.loaded on 5.3+.  Each comparison runs the same Lua line once on an
io object and once on ours, so even the positions must agree.  What may
differ is said case by case: the function and module name where that is
the point, LuaIPC's own words for a bad read format ("invalid format",
memfile.c) where older io libraries say "invalid option", and the type a
bad ``self`` should have been ("in-memory file" where io wants "FILE*").
"""
from __future__ import annotations

import pytest
from helpers.lua import is_luajit, lua_version, run

pytestmark = pytest.mark.timeout(120)


# Lua that defines `forms` (each a function of one object that misuses it
# and returns the error) and `pairs_of(a, b)`: the errors of every form for
# a, then for b, interleaved.
FORMS = """
local function err(f, ...) local ok, e = pcall(f, ...) assert(not ok) return e end
local function pairs_of(forms, a, b)
  local out = {}
  for _, form in ipairs(forms) do out[#out + 1] = form(a); out[#out + 1] = form(b) end
  return (unpack or table.unpack)(out)
end
"""


def compare(r: tuple, *normal) -> None:
    """r = io's, ours, io's, ours...; `normal`: (io's words, ours) to swap in
    io's message first."""
    for io_said, ours in zip(r[::2], r[1::2], strict=False):
        theirs = io_said
        for a, b in normal:
            theirs = theirs.replace(a, b)
        assert ours == theirs


def test_memory_handle_methods_as_io_files(lua, name):
    r = run(lua, FORMS + """
      local shm = require "ipc.shm"
      local f, h = io.tmpfile(), assert(shm.create(..., 16))
      f:write("abc\\n"); h:write("abc\\n")
      return pairs_of({
        function(x) return err(x.read, x, "x") end,
        function(x) return err(function() local a = x:read("x") return a end) end,
        function(x) return err(function() local a = x.read(x, "x") return a end) end,
        function(x) return err(function() local r = x.read; local a = r(x, "x") return a end) end,
        function(x) x:seek("set"); return err(x.read, x, "*l", "x") end,
        function(x) x:seek("set"); return err(function() local a = x:read("*l", "x") return a end) end,
        function(x) return err(function() x:seek("bogus") end) end,
        function(x) return err(x.seek, x, "bogus") end,
        function(x) return err(x.seek, x, "set", "x") end,
        function(x) return err(function() x:seek("set", {}) end) end,
        function(x) return err(function() x:write({}) end) end,
        function(x) return err(x.write, x, "a", {}) end,
        function(x) return err(function() x:setvbuf() end) end,
        function(x) return err(x.setvbuf, x) end,
        function(x) return err(function() x:setvbuf("no", "x") end) end,
      }, f, h)
    """, name)
    assert len(r) == 30
    compare(r, (b"(invalid option)", b"(invalid format)"))
    # and what the rule gives, spelled out once
    assert r[1] == b"bad argument #2 to '?' (invalid format)"
    assert r[3].endswith(b": bad argument #1 to 'read' (invalid format)")
    assert r[5].endswith(b": bad argument #2 to 'read' (invalid format)")
    assert r[7].endswith(b": bad argument #2 to 'r' (invalid format)")


def test_bad_self_as_io_files(lua):
    r = run(lua, FORMS + """
      local f, h = io.tmpfile(), require("ipc.strfile").open("abc")
      return pairs_of({
        function(x) return err(x.read, {}, 1) end,
        function(x) return err(function() local a = x.read("abc") return a end) end,
        function(x) return err(function() local t = { read = x.read } local a = t:read() return a end) end,
        function(x) return err(function() local t = { seek = x.seek } return (t:seek()) end) end,
      }, f, h)
    """)
    compare(r, (b"FILE*", b"in-memory file"))
    assert r[5].endswith(b": calling 'read' on bad self (in-memory file expected, got table)")


@pytest.mark.parametrize("module", ["mmap", "strfile", "sem", "mq"])
def test_module_functions_as_io_open(lua, engine, module):
    # Every module function named `open`, beside io.open.  On 5.2 the name of
    # an unnamed function comes from the globals: make the module a global.
    r = run(lua, FORMS + """
      local m = ...
      _G[m] = require("ipc." .. m)
      return pairs_of({
        function(x) return err(x.open) end,
        function(x) return err(x.open, {}) end,
        function(x) return err(function() local a = x.open(nil) return a end) end,
        function(x) return err(function() local a = x.open() return a end) end,
        function(x) return err(function() local o = x.open; local a = o(true) return a end) end,
      }, io, _G[m])
    """, module)
    assert len(r) == 10
    compare(r, (_unnamed(engine, "io.open"), _unnamed(engine, f"{module}.open")))
    assert r[1] == b"bad argument #1 to %s (string expected, got no value)" % (
        _unnamed(engine, f"{module}.open"))
    assert r[5].endswith(b": bad argument #1 to 'open' (string expected, got nil)")
    assert r[9].endswith(b": bad argument #1 to 'o' (string expected, got boolean)")


def _unnamed(engine: str, name: str) -> bytes:
    """The quoted name luaL_argerror gives a function pcall called: its
    global name on 5.2 (io.open, or a module made a global), its name under
    package.loaded on 5.3+ ("ipc." + name for ours), '?' on 5.1 and LuaJIT."""
    if lua_version(engine) == (5, 2):
        return f"'{name}'".encode()
    if lua_version(engine) >= (5, 3):
        return f"'{name if name.startswith('io.') else 'ipc.' + name}'".encode()
    return b"'?'"


def test_type_names_as_io(lua, name):
    # 5.3+ name a value by its metatable's __name ("got FILE*", "got
    # ipc.shm"); older engines say "userdata".
    r = run(lua, FORMS + """
      local shm = require "ipc.shm"
      local h = assert(shm.create(..., 16))
      local f = io.tmpfile()
      local r = { pairs_of({
        function(x) return err(function() local a = x.open(h) return a end) end,
        function(x) return err(function() local a = x.open(f) return a end) end,
      }, io, require "ipc.strfile") }
      r[#r + 1], r[#r + 2] = pairs_of({
        function(x) return err(function() local a = x:seek("set", h) return a end) end,
      }, f, h)
      return (unpack or table.unpack)(r)
    """, name)
    assert len(r) == 6
    compare(r)
    assert r[0].endswith((b"(string expected, got ipc.shm)", b"(string expected, got userdata)"))


def test_methods_of_every_kind_count_self(lua, name, make_name):
    # sem, mq and proc methods follow the same rule as the memory handles.
    r = run(lua, FORMS + """
      local sem, mq, proc = require "ipc.sem", require "ipc.mq", require "ipc.proc"
      local s = assert(sem.open(..., 1))
      local q = assert(mq.open(select(2, ...), 1, 8))
      local p = assert(proc.spawn("cat", { stdin = true }))
      local out = {
        err(s.dec, s, "soon"), err(function() s:dec("soon") end),
        err(q.send, q), err(function() q:send() end),
        err(q.send, q, nil), err(function() q:send("x", 0, -1) end),
        err(p.kill, p, "hup"), err(function() p:kill("hup") end),
        err(p.write, p, {}), err(function() p:write("a", {}) end),
      }
      p:write(proc.EOF); p:wait(); s:close(); q:close()
      return (unpack or table.unpack)(out)
    """, name, make_name())
    assert [m.split(b": ", 1)[-1] if m.startswith(b"[") else m for m in r] == [
        b"bad argument #2 to '?' (number expected, got string)",
        b"bad argument #1 to 'dec' (number expected, got string)",
        b"bad argument #2 to '?' (string expected, got no value)",
        b"bad argument #1 to 'send' (string expected, got no value)",
        b"bad argument #2 to '?' (string expected, got nil)",
        b"bad argument #3 to 'send' (priority out of range 0..32767)",
        b"bad argument #2 to '?' (invalid option 'hup')",
        b"bad argument #1 to 'kill' (invalid option 'hup')",
        b"bad argument #2 to '?' (string expected, got table)",
        b"bad argument #2 to 'write' (string expected, got table)",
    ]


def test_tail_calls(lua, engine):
    # A tail call replaces the caller's frame.  LuaJIT then names neither its
    # own C functions nor ours ('?', self counted, no position), and so they
    # agree.  PUC-Lua still names a C function from the tail call, but a Lua
    # function (ours) can no longer see that name nor the caller's line: the
    # faces then take the name they are usually called by, so only the
    # position is missing.
    r = run(lua, FORMS + """
      local f, h = io.tmpfile(), require("ipc.strfile").open("abc")
      local sf = require "ipc.strfile"
      return pairs_of({
        function(x) return err(function() return x:seek("bogus") end) end,
        function(x) return err(function() return (x == f and io or sf).open() end) end,
      }, f, h)
    """)
    if not is_luajit(engine):
        assert r[0].endswith(b": bad argument #1 to 'seek' (invalid option 'bogus')")
        assert r[1] == b"bad argument #1 to 'seek' (invalid option 'bogus')"
        assert r[2].endswith(b": bad argument #1 to 'open' (string expected, got no value)")
        assert r[3] == b"bad argument #1 to 'open' (string expected, got no value)"
    else:
        assert r[0] == r[1] == b"bad argument #2 to '?' (invalid option 'bogus')"
        assert r[2] == r[3] == b"bad argument #1 to '?' (string expected, got no value)"
