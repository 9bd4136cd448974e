"""ipc.strfile: a read-only file over a string, from Lua and Python."""
from __future__ import annotations

import ctypes

import pytest
from helpers.lua import run

import ipc.strfile

pytestmark = pytest.mark.timeout(60)


def test_lua_open(lua, unnamed):
    r = run(lua, """
      local strfile = require "ipc.strfile"
      local h = strfile.open("line 1\\nline 2")
      local n = strfile.open(12.5)                 -- numbers are strings, as in C
      local ok, err = pcall(strfile.open)
      local ok2, err2 = pcall(strfile.open, {})
      return h:read("L"), h:read("l"), h:size(), n:read("a"), err, err2
    """)
    fname = unnamed("ipc.strfile.open")
    assert r == (b"line 1\n", b"line 2", 13, b"12.5",
                 f"bad argument #1 to '{fname}' (string expected, got no value)".encode(),
                 f"bad argument #1 to '{fname}' (string expected, got table)".encode())


def test_lua_addr_points_at_the_bytes(lua):
    r = run(lua, """
      local h = require("ipc.strfile").open("\\0binary\\255")
      local a = h:addr()
      return a, a == h:addr(), h:read("a")
    """)
    addr, same, data = r
    assert same and data == b"\0binary\xff"
    assert ctypes.string_at(addr, len(data)) == data


def test_lua_lines_and_close(lua):
    r = run(lua, """
      local h = require("ipc.strfile").open(string.rep("ab\\n", 1000))
      local n = 0
      for l in h:lines() do n = n + #l end
      h:close()
      return n, tostring(h)
    """)
    assert r[0] == 2000 and r[1].endswith(b"(closed)")


def test_python_open():
    h = ipc.strfile.open(b"abc\ndef")
    assert h.readline() == b"abc\n" and h.read() == b"def"
    assert not h.writable() and h.readable()
    assert ctypes.string_at(h.addr, 7) == b"abc\ndef"
    m = ipc.strfile.open(memoryview(b"xyz"))
    assert m.read(2) == b"xy"
