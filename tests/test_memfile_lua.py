"""The file methods shared by ipc.shm, ipc.mmap and ipc.strfile handles,
from Lua, on every engine (LuaIPC's memfile.c behaviour, plus "n")."""
from __future__ import annotations

import pytest
from helpers.lua import lua_version, run, skip_if_missing
from helpers.names import remove_named

from ipc.lua import new_runtime

pytestmark = pytest.mark.timeout(120)


# A Lua function `open(data)` giving a fresh handle over `data`, writable for
# shm/mmap ("rw"), for each kind of handle.
OPENERS = {
    "strfile": """
      local function open(data) return assert(require("ipc.strfile").open(data)) end
    """,
    "shm": """
      local NAME, PATH = ...
      local shm = require "ipc.shm"
      local made = 0
      local function open(data)
        made = made + 1
        local h = assert(shm.create(NAME .. "-" .. made, #data))
        assert(h:write(data)); assert(h:seek("set") == 0)
        return h
      end
    """,
    "mmap": """
      local NAME, PATH = ...
      local mmap = require "ipc.mmap"
      local function open(data)
        local f = assert(io.open(PATH, "wb")); f:write(data); f:close()
        return assert(mmap.open(PATH, "rw"))
      end
    """,
}


@pytest.fixture(params=list(OPENERS))
def kind(request):
    return request.param


@pytest.fixture
def mf(lua, kind, name, tmp_path, make_name):
    """Run `code` with a local `open(data)` of the current kind in scope."""
    names = [name]

    def runner(code: str, *args):
        # shm names made by open() are name-1, name-2...: register them so
        # they are removed even if the test fails.
        for i in range(1, 6):
            names.append(f"{name}-{i}")
        return run(lua, OPENERS[kind] + code, name, str(tmp_path / "f.bin"), *args)

    yield runner
    for n in names:
        remove_named(n)


def test_read_formats(mf):
    r = mf("""
      local h = open("one\\r\\ntwo\\r\\r\\nthree\\nfour\\r")
      local a, b = h:read("l", "L")
      local c = h:read("*l")
      local d = h:read()
      local e = h:read("l")
      return a, b, c, d, e, h:read("l"), h:read("a"), h:read(0), h:read(3)
    """)
    assert r == (b"one", b"two\r\r\n", b"three", b"four\r", None, None, b"", None, None)


def test_read_counts_and_all(mf):
    r = mf("""
      local h = open("abcdef")
      local t = { h:read(0, 2, 2.0, "*a") }
      local nu, u = select("#", h:read(0)), h:read(0)
      local v = { h:seek("set", 4), h:read(100) }
      local w = { h:seek("set", 6), h:read("a") }
      return t[1], t[2], t[3], t[4], nu, u, v[2], w[2]
    """)
    assert r == (b"", b"ab", b"cd", b"ef", 1, None, b"ef", b"")


def test_read_stops_at_first_nil(mf):
    r = mf("""
      local h = open("x\\n")
      return select("#", h:read("l", "l", "l")), h:read("l", 1)
    """)
    assert r == (2, None)


@pytest.mark.parametrize("fmt", ['"x"', '""', '"*"', "-1", "1.5", "{}", "true", '"5"', "0/0"])
def test_read_bad_format(mf, fmt):
    r = mf(f"""
      local h = open("abc")
      local ok, err = pcall(h.read, h, "l", {fmt})
      local ok2, err2 = pcall(h.read, h, {fmt})
      return ok, err, ok2, err2
    """)
    # called by pcall, not by name: self counts and the name is '?', as
    # for io's f:read (see test_argerrors.py)
    assert r == (False, b"bad argument #3 to '?' (invalid format)",
                 False, b"bad argument #2 to '?' (invalid format)")


def test_bad_format_position_is_the_callers(lua):
    r = run(lua, """
      local h = require("ipc.strfile").open("abc")
      return pcall(function()
        h:read("z")         -- line 4 of this chunk
      end)
    """)
    assert r[0] is False
    assert r[1].endswith(b":4: bad argument #1 to 'read' (invalid format)")


def test_lines(mf):
    r = mf("""
      local h = open("a\\nbb\\r\\n\\nccc")
      local out = {}
      for l in h:lines() do out[#out + 1] = "[" .. l .. "]" end
      h:seek("set")
      for a, b in h:lines(1, "L") do out[#out + 1] = a .. "|" .. b end
      h:seek("set")
      for n in h:lines("*L") do out[#out + 1] = n end
      return table.concat(out, ",")
    """)
    assert r == (b"[a],[bb],[],[ccc],a|\n,b|b\r\n,\n|ccc,a\n,bb\r\n,\n,ccc",)


def test_lines_errors(mf):
    r = mf("""
      local h = open("abc")
      local it = h:lines("q")                      -- checked when called
      local ok, err = pcall(it)
      local it2 = h:lines()
      h:close()
      local ok2, err2 = pcall(it2)
      return ok, err, ok2, err2
    """)
    assert r == (False, b"invalid format", False, b"attempt to use closed in-memory file")


def test_write_seek_and_space(mf, kind):
    if kind == "strfile":
        pytest.skip("read-only")
    r = mf("""
      local h = open(string.rep(".", 10))
      local same = h:write("ab", 12, 1.5) == h      -- strings and numbers
      local p = h:seek()
      local a, b = h:write("XYZ", "12345")          -- only what fits
      local p2 = h:seek()
      h:seek("set")
      local all = h:read("a")
      local c, d = h:write("")                      -- at the end: nothing to write
      local e, f = h:write("!")
      return same, p, a, b, p2, all, c == h, d, e, f, h:write() == h
    """)
    assert r == (True, 7, None, b"not enough space", 10, b"ab121.5XYZ", True, None,
                 None, b"not enough space", True)


def test_write_bad_argument_changes_nothing(mf, kind):
    if kind == "strfile":
        pytest.skip("read-only")
    r = mf("""
      local h = open("....")
      local ok, err = pcall(h.write, h, "ab", {})
      local ok2, err2 = pcall(h.write, h, nil)
      return ok, err, ok2, err2, h:seek(), h:read("a")
    """)
    assert r == (False, b"bad argument #3 to '?' (string expected, got table)",
                 False, b"bad argument #2 to '?' (string expected, got nil)", 0, b"....")


def test_seek(mf):
    r = mf("""
      local h = open("0123456789")
      local t = {}
      local function add(...) local n = select("#", ...); for i = 1, 2 do t[#t + 1] = tostring((select(i, ...))) end end
      add(h:seek("set", 3)); add(h:seek()); add(h:seek("cur", 2)); add(h:seek("cur", -5))
      add(h:seek("end")); add(h:seek("end", -10)); add(h:seek("set", 10))
      add(h:seek("set", 11)); add(h:seek("set", -1)); add(h:seek("cur", 11)); add(h:seek("end", 1))
      add(h:seek("end", -11)); add(h:seek("set", 4.0)); add(h:seek("cur", "2"))
      local ok, err = pcall(h.seek, h, "sideways")
      local ok2, err2 = pcall(h.seek, h, "set", 1.5)
      local ok3, err3 = pcall(h.seek, h, "set", {})
      return table.concat(t, " "), err, err2, err3, h:seek()
    """)
    assert r[0] == (b"3 nil 3 nil 5 nil 0 nil 10 nil 0 nil 10 nil "
                    b"nil invalid offset nil invalid offset nil invalid offset nil invalid offset "
                    b"nil invalid offset 4 nil 6 nil")
    assert r[1] == b"bad argument #2 to '?' (invalid option 'sideways')"
    assert r[2] == b"bad argument #3 to '?' (number has no integer representation)"
    assert r[3] == b"bad argument #3 to '?' (number expected, got table)"
    assert r[4] == 6


def test_size_truncate_setvbuf_addr(mf):
    r = mf("""
      local h = open("0123456789")
      h:seek("set", 8)
      local s0 = h:size()
      local a, b = h:truncate(11)
      local c = h:truncate(5)
      local d = { h:seek() }
      local e = h:read("a")
      local x, y = h:truncate(-1)
      local ok, err = pcall(h.setvbuf, h, "bogus")
      local addr = h:addr()
      return s0, a, b, c, d[1], e, h:size(), x, y, h:setvbuf("no"), h:setvbuf("full", 1024),
             h:setvbuf("line"), err, math.type and math.type(addr) or type(addr), addr > 0
    """)
    assert r[:10] == (10, None, b"new size too large", True, 5, b"", 5, None,
                      b"new size too large", True)
    assert r[10:12] == (True, True)
    assert r[12] == b"bad argument #2 to '?' (invalid option 'bogus')"
    assert r[13] in (b"integer", b"number") and r[14] is True


def test_closed_handle(mf):
    r = mf("""
      local h = open("abc")
      local first = h:close()
      local out = { first, tostring(h):match("%(closed%)") ~= nil }
      for _, m in ipairs { "read", "write", "lines", "seek", "setvbuf", "flush",
                           "size", "addr", "truncate", "close" } do
        local ok, err = pcall(h[m], h, 1)
        out[#out + 1] = m .. "=" .. tostring(ok) .. ":" .. tostring(err)
      end
      return table.concat(out, " ", 3), out[1], out[2]
    """)
    expected = " ".join(f"{m}=false:attempt to use closed in-memory file" for m in
                        ["read", "write", "lines", "seek", "setvbuf", "flush", "size",
                         "addr", "truncate", "close"])
    assert r == (expected.encode(), True, True)


def test_bad_self(lua):
    r = run(lua, """
      local h = require("ipc.strfile").open("abc")
      local ok, err = pcall(h.read, {}, 1)
      local ok2, err2 = pcall(h.size, "x")
      return ok, err, ok2, err2
    """)
    # not a method call: a bad self is a bad argument #1, as luaL_checkudata's
    assert r == (False, b"bad argument #1 to '?' (in-memory file expected, got table)",
                 False, b"bad argument #1 to '?' (in-memory file expected, got string)")


def test_type_and_tostring(mf, kind):
    r = mf("""
      local h = open("abc")
      return io.type(h), tostring(h), type(h)
    """)
    assert r[0] is None
    assert r[1].startswith(f"ipc.{kind} (".encode()) and r[1].endswith(b")")
    assert b"closed" not in r[1]
    assert r[2] == b"userdata"


def test_binary_round_trip(mf, kind):
    data = bytes(range(256)) * 3
    r = mf("""
      local data = select(3, ...)
      local h = open(data)
      local a = h:read("a")
      h:seek("set")
      local parts = {}
      for i = 1, #data do parts[i] = h:read(1) end
      h:seek("set")
      local lines = {}
      for l in h:lines("L") do lines[#lines + 1] = l end
      return a, table.concat(parts), table.concat(lines)
    """, data)
    assert r == (data, data, data)


def test_permissions_strfile(lua):
    r = run(lua, """
      local h = require("ipc.strfile").open("abc")
      local a, b = h:write("x")
      local c, d = h:flush()
      return a, b, c, d, h:read("a")
    """)
    assert r == (None, b"permission denied", None, b"permission denied", b"abc")


def test_to_be_closed(lua, engine, name):
    if lua_version(engine) < (5, 4):
        pytest.skip("<close> is Lua 5.4+")
    r = run(lua, """
      local shm = require "ipc.shm"
      local name = ...
      local seen
      do
        local h <close> = assert(shm.create(name, 16))
        seen = h
      end
      local a = tostring(seen)
      do
        local h <close> = assert(shm.create(name, 16))
        h:close()                                   -- then <close>: no error
      end
      return a, shm.attach(name)
    """, name)
    assert r[0].endswith(b"(closed)")
    assert r[1:] == (None, b"No such file or directory", 2)


# -- the "n" format: as Lua 5.4's io.read("n") --------------------------------

NUMBERS = [
    b"42", b"  \t\n 42 rest", b"-7x", b"+3", b"0x1F!", b"0X1p4z", b"3.25e2;", b"1e", b"1e+",
    b".5", b"5.", b".", b"-", b"0x", b"0xg", b"00012", b"1.5.3", b"12abc", b"  ", b"",
    b"inf", b"nan", b"0x.8", b"1E-2", b"--1", b"9" * 199, b"9" * 200, b"9" * 201 + b" 7",
    b"0" * 205, b" " * 600 + b"2", b"\v\f\r 8",
]


def reference_numbers():
    """What Lua 5.4's own io.read("n") gives, then what is left unread."""
    import os
    import tempfile
    skip_if_missing("lua5.4")   # the reference: Lua 5.4's io library
    rt = new_runtime("lua5.4")
    fn = rt.execute("""return function(path)
      local f = assert(io.open(path, "rb"))
      local n = f:read("n")
      local rest = f:read("a")
      f:close()
      return n, rest
    end""")
    out = []
    for data in NUMBERS:
        fd, path = tempfile.mkstemp()
        try:
            os.write(fd, data)
            os.close(fd)
            out.append(fn(path.encode()))
        finally:
            os.unlink(path)
    return out


REFERENCE = None


def test_read_number_matches_lua54(mf, kind, engine):
    global REFERENCE
    if REFERENCE is None:
        REFERENCE = reference_numbers()
    fn = """
      local data = select(3, ...)
      local h = open(data == "" and "\\0" or data)
      if data == "" then h:truncate(0) end
      local n = h:read("n")
      local rest = h:read("a")
      h:close()
      return n, rest, math.type and math.type(n)
    """
    for data, (want, rest) in zip(NUMBERS, REFERENCE, strict=False):
        if kind != "strfile" and data == b"":
            continue  # shm/mmap regions are never empty
        got = mf(fn, data)
        assert (got[0], got[1]) == (want, rest), data
        if lua_version(engine) >= (5, 3) and want is not None:   # integer subtype
            assert got[2] == (b"integer" if isinstance(want, int) else b"float"), data


def test_read_number_with_other_formats(lua):
    r = run(lua, """
      local h = require("ipc.strfile").open("1 2.5 x 3")
      local a, b, c, d = h:read("n", "*n", "n", "n")
      return a, b, c, d, select("#", h:read("n", "l")), h:read("a")
    """)
    assert r == (1, 2.5, None, None, 1, b"x 3")


# -- the fast paths (issue 14): the same answers as the full methods --------

def test_lines_across_blocks_and_long_lines(mf):
    """Lines that straddle the read-ahead block (16 KiB), lines longer than
    it, "\\r\\n" endings and a last line without "\\n", as read("l") and as
    lines() give them."""
    r = mf(r"""
      local parts = {}
      for i = 1, 3000 do parts[#parts + 1] = string.rep(string.char(97 + i % 26), i % 37) end
      parts[1500] = string.rep("L", 40000)            -- longer than a block
      parts[2000] = parts[2000] .. "\r"               -- a "\r\n" ending
      local text = table.concat(parts, "\n") .. "\nlast"
      local h = open(text)
      local got = {}
      for l in h:lines() do got[#got + 1] = l end
      h:seek("set")
      local got2 = {}
      while true do
        local l = h:read("l")
        if not l then break end
        got2[#got2 + 1] = l
      end
      h:seek("set")
      local kept = {}
      for l in h:lines("L") do kept[#kept + 1] = l end
      parts[2000] = parts[2000]:sub(1, -2)            -- "l" drops the "\r"
      parts[#parts + 1] = "last"
      local want = table.concat(parts, "|")
      return table.concat(got, "|") == want, table.concat(got2, "|") == want,
             table.concat(kept) == text, #got, h:seek() == #text
    """)
    assert r == (True, True, True, 3001, True)


def test_lines_mixed_with_other_reads(mf):
    r = mf(r"""
      local h = open("one\ntwo\nthree\nfour\n")
      local a = h:read("l")
      local b = h:read(2)                  -- a count in the middle of a line
      local c = h:read("L")
      local it = h:lines()
      local d = it()
      local e = h:seek()                   -- where the line read stopped
      h:seek("set", 0)
      local f = it()
      return a, b, c, d, e, f
    """)
    assert r == (b"one", b"tw", b"o\n", b"three", 14, b"one")


def test_lines_after_truncate(mf, kind):
    r = mf(r"""
      local h = open("ab\ncd\nef\n")
      h:read("l")
      assert(h:truncate(5))                -- in the middle of "cd\n"
      local out = {}
      for l in h:lines() do out[#out + 1] = l end
      h:seek("set")
      local L = {}
      for l in h:lines("L") do L[#L + 1] = l end
      return table.concat(out, ","), table.concat(L, ",")
    """)
    assert r == (b"cd", b"ab\n,cd")


def test_lines_see_another_handle_only_after_a_seek(lua, engine, name):
    """The read-ahead of shm lines on PUC-Lua (the module docs): a run of
    line reads sees the block as it was taken; a seek (any other call)
    drops it.  LuaJIT reads the mapping itself (the FFI): no block."""
    r = run(lua, r"""
      local shm = require "ipc.shm"
      local a = assert(shm.create(..., 64))
      local b = assert(shm.attach(...))
      assert(a:write("old1\nold2\nold3\n"))
      assert(a:seek("set", 0))
      local first = a:read("l")            -- takes the block
      assert(b:write("new1\nnew2\nnew3\n"))
      local second = a:read("l")           -- from the block taken before
      a:seek("cur", 0)                     -- drops it
      local third = a:read("l")
      b:close(); a:close()
      return first, second, third
    """, name)
    second = b"new2" if engine.startswith("luajit") else b"old2"
    assert r == (b"old1", second, b"new3")


def test_repeated_small_reads_and_writes(mf, kind):
    """The kept slices (and their limit) give the same bytes as the first
    call at each position; writes at a kept position land where they should."""
    if kind == "strfile":
        pytest.skip("read-only")
    r = mf(r"""
      local h = open(string.rep("\0", 4096))
      local ok = true
      for round = 1, 3 do
        for p = 0, 4000, 7 do                -- more positions than are kept
          h:seek("set", p)
          h:write(string.format("%07d", p + round))
        end
        for p = 0, 4000, 7 do
          h:seek("set", p + 0.0)             -- a float position is the integer
          local s = h:read(7.0)
          if s ~= string.format("%07d", p + round) then ok = false end
        end
      end
      h:seek("set", 4090)
      local tail = { h:write("abcdefgh") }   -- does not fit: what fits is written
      h:seek("set", 4090)
      local t2 = h:read(8)
      local pos = h:seek()
      h:seek("set", 64); h:write("12345678"); h:seek("set", 64)
      local x = h:read(8)
      h:seek("set", 64); h:write("abcdefgh"); h:seek("set", 64)
      local y = h:read(8)
      return ok, tail[1], tail[2], t2, pos, x, y, math.type and math.type(pos) or "integer"
    """)
    assert r == (True, None, b"not enough space", b"abcdef", 4096, b"12345678",
                 b"abcdefgh", b"integer")


def test_fast_paths_keep_their_errors(mf, kind):
    r = mf(r"""
      local h = open("abcdefgh")
      for _ = 1, 3 do h:seek("set", 2); h:read(2) end   -- the slice is kept
      local e1 = select(2, pcall(h.read, h, 2, nil))
      local e2 = select(2, pcall(h.write, h, "ab", nil))
      h:seek("set", 2)
      h:close()
      local e3 = select(2, pcall(h.read, h, 2))
      local e4 = select(2, pcall(h.seek, h, "set", 2))
      local e5 = select(2, pcall(h.write, h, "ab"))
      return e1, e2, e3, e4, e5
    """)
    closed = b"attempt to use closed in-memory file"
    e2 = (b"bad argument #3 to '?' (string expected, got nil)" if kind != "strfile"
          else None)
    assert r == (b"bad argument #3 to '?' (invalid format)", e2, closed, closed, closed)
