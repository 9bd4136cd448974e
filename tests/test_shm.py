"""ipc.shm: the Python API, the Lua face on every engine, and real processes
(Python <-> Lua) sharing one segment."""
from __future__ import annotations

import errno
import os
import stat
import sys
import textwrap

import pytest
from helpers.children import run_py
from helpers.lua import run
from helpers.names import SHM_DIR

import ipc
import ipc.shm

pytestmark = pytest.mark.timeout(120)


# -- Python API ----------------------------------------------------------------

def test_create_attach_and_names(name):
    with ipc.shm.create(name, 100) as h:
        st = os.stat(SHM_DIR / name)  # LuaIPC's naming: "/" + name
        assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_size == 100
        assert h.owner and h.size() == 100 and h.name == name
        h.write(b"hello")
        with ipc.shm.attach(name) as g:
            assert not g.owner and g.size() == 100
            assert g.read(5) == b"hello"
            g.write(b"!")
        h.seek(5)
        assert h.read(1) == b"!"
        assert (SHM_DIR / name).exists()  # attach + close never unlinks
    assert not (SHM_DIR / name).exists()  # the creator's close does


def test_errors(name):
    with ipc.shm.create(name, 10):
        with pytest.raises(FileExistsError) as exc:
            ipc.shm.create(name, 10)
        assert isinstance(exc.value, ipc.ExistsError) and exc.value.errno == errno.EEXIST
    with pytest.raises(FileNotFoundError) as exc:
        ipc.shm.attach(name)
    assert exc.value.errno == errno.ENOENT
    for bad in ("a/b", "", "x" * 300):
        with pytest.raises(ipc.IPCError) as exc:
            ipc.shm.create(bad, 10)
        assert exc.value.errno in (errno.EINVAL, errno.ENAMETOOLONG)
    for size in (0, -1):
        with pytest.raises(ipc.IPCError) as exc:
            ipc.shm.create(name, size)
        assert exc.value.errno == errno.EINVAL
    with pytest.raises(TypeError):
        ipc.shm.create(name, "10")
    assert not (SHM_DIR / name).exists()  # bad input made nothing


def test_unlink(name):
    h = ipc.shm.create(name, 10)
    h.write(b"abc")
    h.unlink()
    assert not (SHM_DIR / name).exists() and not h.owner
    h.seek(0)
    assert h.read(3) == b"abc"  # still mapped
    with pytest.raises(FileNotFoundError):
        h.unlink()
    with pytest.raises(FileNotFoundError):
        ipc.shm.unlink(name)
    g = ipc.shm.create(name, 10)  # the name is free again; h.close() spares it
    h.close()
    assert (SHM_DIR / name).exists()
    g.close()


def test_attach_empty_segment(name):
    fd = os.open(SHM_DIR / name, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    with pytest.raises(ipc.IPCError) as exc:
        ipc.shm.attach(name)
    assert exc.value.errno == errno.EINVAL


# -- Lua face ------------------------------------------------------------------

def test_lua_create_attach_errors(lua, name):
    r = run(lua, """
      local shm = require "ipc.shm"
      local name = ...
      local t = {}
      local function add(...) for i = 1, 3 do t[#t + 1] = tostring((select(i, ...))) end end
      add(shm.attach(name))
      local h = assert(shm.create(name, 64))
      add(shm.create(name, 64))
      add(shm.create("a/b", 64))
      add(shm.create(name .. "x", 0))
      add(shm.attach("a/b"))
      local g = assert(shm.attach(name))
      h:write("shared"); g:seek("set", 0)
      local got = g:read(6)
      local sz = g:size()
      return table.concat(t, "|"), got, sz, h:close(), g:close()
    """, name)
    assert r[0] == (b"nil|No such file or directory|2|nil|File exists|17|"
                    b"nil|Invalid argument|22|nil|Invalid argument|22|"
                    b"nil|Invalid argument|22")
    assert r[1:] == (b"shared", 64, True, True)
    assert not (SHM_DIR / name).exists()


def test_lua_argument_errors(lua, unnamed):
    r = run(lua, """
      local shm = require "ipc.shm"
      local a = { pcall(shm.create) }
      local b = { pcall(shm.create, "x") }
      local c = { pcall(shm.create, "x", 1.5) }
      local d = { pcall(shm.attach, {}) }
      return a[2], b[2], c[2], d[2]
    """)
    create, attach = unnamed("ipc.shm.create"), unnamed("ipc.shm.attach")
    assert r == (f"bad argument #1 to '{create}' (string expected, got no value)".encode(),
                 f"bad argument #2 to '{create}' (number expected, got no value)".encode(),
                 f"bad argument #2 to '{create}' (number has no integer representation)".encode(),
                 f"bad argument #1 to '{attach}' (string expected, got table)".encode())


def test_lua_attach_close_keeps_segment_creator_gc_removes(lua, name):
    run(lua, """
      local shm = require "ipc.shm"
      local name = ...
      H = assert(shm.create(name, 8))
      local g = assert(shm.attach(name)); g:close()
      local g2 = assert(shm.attach(name)); g2 = nil
      collectgarbage(); collectgarbage()
    """, name)
    assert (SHM_DIR / name).exists()
    run(lua, "H = nil; collectgarbage(); collectgarbage()")
    assert not (SHM_DIR / name).exists()


# -- two processes ---------------------------------------------------------------

PAYLOAD = bytes(range(256)) + b"\r\n end"


def test_python_creates_lua_child_reads(name, engine, luaipc, tmp_path):
    script = tmp_path / "reader.lua"
    script.write_text(textwrap.dedent("""
        local shm = require "ipc.shm"
        local h = assert(shm.attach(arg[1]))
        local data = h:read(tonumber(arg[2]))
        io.write(string.format("%q", data):len(), " ")
        for i = 1, #data do io.write(data:byte(i), ",") end
        h:seek("set", 300); h:write("from lua")
        h:close()
    """))
    with ipc.shm.create(name, 4096) as h:
        h.write(PAYLOAD)
        res = luaipc([str(script), name, str(len(PAYLOAD))], engine=engine)
        assert res.returncode == 0, res.stderr
        got = bytes(int(x) for x in res.stdout.split(" ", 1)[1].rstrip(",").split(","))
        assert got == PAYLOAD
        h.seek(300)
        assert h.read(8) == b"from lua"
        assert (SHM_DIR / name).exists()  # the child's close did not unlink
    assert not (SHM_DIR / name).exists()


def test_lua_creates_python_child_reads(name, engine, luaipc, tmp_path):
    script = tmp_path / "writer.lua"
    script.write_text(textwrap.dedent("""
        local shm = require "ipc.shm"
        local h = assert(shm.create(arg[1], 1024))
        local bytes = {}
        for i = 0, 255 do bytes[#bytes + 1] = string.char(i) end
        h:write(table.concat(bytes), "\\r\\n end")
        local cmd = string.format('"%s" -c "import ipc.shm, sys; h = ipc.shm.attach(sys.argv[1]); '
          .. 'sys.stdout.write(h.read(%d).hex()); h.seek(600); h.write(b\\'py was here\\')" %s',
          arg[2], 256 + 6, arg[1])
        local p = assert(io.popen(cmd, "r"))
        local hex = p:read("*a")
        p:close()
        h:seek("set", 600)
        print(hex, h:read(11))
    """))
    res = luaipc([str(script), name, sys.executable], engine=engine)
    assert res.returncode == 0, res.stderr
    hex_, tail = res.stdout.split()[0], res.stdout.split(None, 1)[1].strip()
    assert bytes.fromhex(hex_) == PAYLOAD
    assert tail == "py was here"
    assert not (SHM_DIR / name).exists()  # the Lua creator's exit removed it


def test_python_child_attaches_writes_exits_segment_survives(name):
    with ipc.shm.create(name, 64) as h:
        res = run_py("""
            import sys, ipc.shm
            h = ipc.shm.attach(sys.argv[1])
            h.write(b"child wrote this")
            # exit without close(): no resource tracker may unlink it
        """, name)
        assert res.returncode == 0, res.stderr
        assert (SHM_DIR / name).exists()
        assert h.read(16) == b"child wrote this"
        with ipc.shm.attach(name) as g:  # still attachable after the child left
            assert g.read(5) == b"child"


def test_lua_child_attaches_writes_exits_segment_survives(name, engine, luaipc):
    with ipc.shm.create(name, 64) as h:
        res = luaipc(["-e", (f'local h = require("ipc.shm").attach("{name}"); '
                             'h:write("lua child")')], engine=engine)
        assert res.returncode == 0, res.stderr
        assert (SHM_DIR / name).exists()
        assert h.read(9) == b"lua child"
