"""ipc.mmap: the Python API and the Lua face on every engine."""
from __future__ import annotations

import errno
import io
import mmap as std_mmap
import subprocess
import sys
import textwrap

import pytest
from helpers.lua import run

import ipc
import ipc.mmap

pytestmark = pytest.mark.timeout(120)

PAGE = std_mmap.ALLOCATIONGRANULARITY


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"A" * PAGE + b"B" * 100)
    return p


# -- Python API ----------------------------------------------------------------

def test_modes_offset_size(path):
    assert ipc.mmap.PAGESIZE == ipc.mmap.pagesize == PAGE
    with ipc.mmap.open(path) as h:  # "r", whole file
        assert h.size() == PAGE + 100 and h.readable() and not h.writable()
        with pytest.raises(io.UnsupportedOperation):
            h.write(b"x")
    with ipc.mmap.open(path, "r", PAGE) as h:  # from the second page to the end
        assert h.read() == b"B" * 100
    with ipc.mmap.open(path, "rw", 0, 10) as h:
        assert h.size() == 10
        h.write(b"0123456789")
        h.flush()
    assert path.read_bytes()[:12] == b"0123456789AA"
    with ipc.mmap.open(path, "w") as h:
        assert h.writable() and not h.readable()
        with pytest.raises(io.UnsupportedOperation):
            h.read(1)
        h.seek(PAGE)
        h.write(b"written")
    assert path.read_bytes()[PAGE:PAGE + 8] == b"writtenB"


def test_errors(path, tmp_path):
    cases = [
        ((tmp_path / "missing",), errno.ENOENT, FileNotFoundError),
        ((path, "r", 1), errno.EINVAL, ipc.IPCError),              # not page aligned
        ((path, "r", 2 * PAGE), errno.EINVAL, ipc.IPCError),       # past the end
        ((path, "r", 0, PAGE + 101), errno.EINVAL, ipc.IPCError),  # size past the end
        ((path, "r", -PAGE), errno.EINVAL, ipc.IPCError),
    ]
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    cases.append(((empty,), errno.EINVAL, ipc.IPCError))
    for args, code, cls in cases:
        with pytest.raises(cls) as exc:
            ipc.mmap.open(*args)
        assert exc.value.errno == code, args
    with pytest.raises(ValueError):
        ipc.mmap.open(path, "a")


def test_writes_seen_by_another_process(path):
    with ipc.mmap.open(path, "rw") as h:
        h.write(b"parent")
        res = subprocess.run([sys.executable, "-c", textwrap.dedent("""
            import sys, ipc.mmap
            with ipc.mmap.open(sys.argv[1], "rw") as h:
                print(h.read(6).decode())
                h.seek(10); h.write(b"child")
        """), str(path)], capture_output=True, text=True, timeout=60, check=False)
        assert res.returncode == 0, res.stderr
        assert res.stdout.strip() == "parent"
        h.seek(10)
        assert h.read(5) == b"child"


def test_large_sparse_file_reads_only_what_is_asked(tmp_path):
    # A 64 GiB sparse file maps without reading it (or needing the RAM).
    p = tmp_path / "sparse"
    with open(p, "wb") as f:
        f.truncate(64 << 30)
        f.seek((64 << 30) - 4)
        f.write(b"tail")
    with ipc.mmap.open(p) as h:
        assert h.size() == 64 << 30
        h.seek(-4, 2)
        assert h.read() == b"tail"


# -- Lua face ------------------------------------------------------------------

def test_lua_open_and_modes(lua, path):
    r = run(lua, """
      local mmap = require "ipc.mmap"
      local path = ...
      local ps = mmap.pagesize
      local h = assert(mmap.open(path))
      local a = { h:size(), h:read(3), h:write("x") }
      h:close()
      local w = assert(mmap.open(path, "w", ps))
      local b = { w:read(1) }
      local c = w:write("written") == w
      local f = w:flush()
      w:close()
      local rw = assert(mmap.open(path, "rw", 0, 4))
      rw:write("RW")
      local d = { rw:write("abc") }
      rw:seek("set", 0)
      local e = rw:read("a")
      local g = rw:flush()
      return ps, a[1], a[2], a[3], b[1], b[2], c, f, d[1], d[2], e, g, tostring(rw):match("^ipc.mmap") ~= nil
    """, str(path))
    assert r == (PAGE, PAGE + 100, b"AAA", None, None, b"permission denied", True, True,
                 None, b"not enough space", b"RWab", True, True)
    assert path.read_bytes()[:4] == b"RWab"
    assert path.read_bytes()[PAGE:PAGE + 8] == b"writtenB"


def test_lua_open_errors(lua, path, tmp_path, unnamed):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    r = run(lua, """
      local mmap = require "ipc.mmap"
      local path, missing, empty = ...
      local t = {}
      local function add(...) for i = 1, 3 do t[#t + 1] = tostring((select(i, ...))) end end
      add(mmap.open(missing))
      add(mmap.open(empty))
      add(mmap.open(path, "r", 1))
      add(mmap.open(path, "r", 0, mmap.pagesize * 4))
      local ok, err = pcall(mmap.open, path, "x")
      local ok2, err2 = pcall(mmap.open)
      local ok3, err3 = pcall(mmap.open, path, "r", 0.5)
      return table.concat(t, "|"), err, err2, err3
    """, str(path), str(tmp_path / "missing"), str(empty))
    assert r[0] == (b"nil|No such file or directory|2|nil|Invalid argument|22|"
                    b"nil|Invalid argument|22|nil|Invalid argument|22")
    fname = unnamed("ipc.mmap.open")
    assert r[1] == f"bad argument #2 to '{fname}' (invalid option 'x')".encode()
    assert r[2] == f"bad argument #1 to '{fname}' (string expected, got no value)".encode()
    assert r[3] == f"bad argument #3 to '{fname}' (number has no integer representation)".encode()


def test_lua_gc_unmaps(lua, path):
    # Collected handles release their mapping (and its file descriptor).
    r = run(lua, """
      local mmap = require "ipc.mmap"
      for i = 1, 2000 do local h = assert(mmap.open(..., "rw")); h:write("z") end
      collectgarbage(); collectgarbage()
      return true
    """, str(path))
    assert r == (True,)
    assert path.read_bytes()[:1] == b"z"
