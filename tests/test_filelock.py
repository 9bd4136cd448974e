"""ipc.filelock: fcntl byte-range locks from Lua (every engine) and Python,
with real child processes contending, Ctrl-C, SIGKILL release, and the
portalocker PathLock interoperating."""
from __future__ import annotations

import errno
import os
import signal

import pytest
from helpers.children import (
    ctrl_c,
    finish,
    interrupt,
    read_line,
    spawn_lua,
    spawn_py,
    still_blocked,
    wait_line,
)
from helpers.lua import run, run_one

import ipc
import ipc.filelock as fl

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def path(tmp_path):
    p = tmp_path / "data.bin"
    p.write_bytes(b"0123456789" * 10)
    return p


def lua_try(engine, path, mode, offset=0, nbytes=0) -> str:
    p = spawn_lua("filelock/try.lua", path, mode, offset, nbytes, engine=engine)
    code, out, err = finish(p)
    assert code == 0, err
    return out.strip()


PY_TRY = """
import ipc.filelock as fl, sys
with open(sys.argv[1], 'r+b') as f:
    print(fl.trylock(f, sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


def py_try(path, mode, offset=0, nbytes=0) -> str:
    code, out, err = finish(spawn_py(PY_TRY, path, mode, offset, nbytes))
    assert code == 0, err
    return out.strip()


# -- Lua face in process ------------------------------------------------------------

def test_lua_calls_and_results(lua, path):
    r = run(lua, """
      local fl = require "ipc.filelock"
      local f = assert(io.open(..., "r+"))
      return fl.lock(f, "rw"), fl.lock(f, "r", 10, 5), fl.trylock(f, "w", 0, 0),
             fl.trylock(f), fl.lock(f), fl.unlock(f, 10, 5), fl.unlock(f)
    """, path)
    assert r == (True,) * 7


# warm: the file was locked and unlocked once before (PUC-Lua's whole-file
# calls are made then, and later calls take the face's fast path).
@pytest.mark.parametrize("warm", [False, True])
def test_lua_errors(lua, path, warm):
    r = run(lua, """
      local fl = require "ipc.filelock"
      local path, warm = ...
      local f = assert(io.open(path, "r+"))
      if warm then assert(fl.lock(f, "w")); assert(fl.unlock(f)) end
      local out = {}
      for _, fn in ipairs{
        function() fl.lock(f, "x") end,
        function() fl.trylock(f, "wr") end,
        function() fl.lock({}, "r") end,
        function() fl.lock("file", "r") end,
        function() fl.lock() end,
        function() fl.unlock(42) end,
        function() fl.lock(f, "r", 1.5) end,
        function() fl.lock(f, "r", 0, "many") end,
        function() fl.unlock(f, "x") end,
      } do out[#out+1] = select(2, pcall(fn)) end
      f:close()
      for _, fn in ipairs{
        function() return fl.lock(f, "r") end,
        function() return fl.trylock(f, "r") end,
        function() return fl.unlock(f) end,
      } do out[#out+1] = select(2, pcall(fn)) end
      return (unpack or table.unpack)(out)
    """, path, warm)
    expected = [
        "bad argument #2 to 'lock' (invalid option 'x')",
        "bad argument #2 to 'trylock' (invalid option 'wr')",
        "bad argument #1 to 'lock' (FILE* expected, got table)",
        "bad argument #1 to 'lock' (FILE* expected, got string)",
        "bad argument #1 to 'lock' (FILE* expected, got no value)",
        "bad argument #1 to 'unlock' (FILE* expected, got number)",
        "bad argument #3 to 'lock' (number has no integer representation)",
        "bad argument #4 to 'lock' (number expected, got string)",
        "bad argument #2 to 'unlock' (number expected, got string)",
        "attempt to use closed file",
        "attempt to use closed file",
        "attempt to use closed file",
    ]
    assert len(r) == len(expected)
    for got, want in zip(r, expected, strict=False):
        assert got.decode().endswith(want), (got, want)


@pytest.mark.parametrize("warm", [False, True])
def test_lua_os_errors_are_triples(lua, path, warm):
    r = run(lua, """
      local fl = require "ipc.filelock"
      local path, warm = ...
      local f = assert(io.open(path, "r"))
      if warm then assert(fl.lock(f, "r")); assert(fl.unlock(f)) end
      local a = {fl.lock(f, "w")}              -- exclusive lock on a read-only fd
      local b = {fl.trylock(f, "r", -5, 1)}    -- before the start of the file
      return a[1], a[2], a[3], b[1], b[2], b[3]
    """, path, warm)
    assert r == (None, b"Bad file descriptor", errno.EBADF,
                 None, b"Invalid argument", errno.EINVAL)


def test_lua_lock_drops_stale_read_buffer(lua, path):
    """After lock() the Lua file reads what is on disk, not its old buffer."""
    fd = os.open(path, os.O_RDWR)
    try:
        f = run_one(lua, "local f = assert(io.open(..., 'r+')); assert(f:read(1) == '0'); return f", path)
        os.pwrite(fd, b"ABCDEFGHIJ", 0)          # another writer changes the bytes
        stale = run_one(lua, "local f = ...; local s = f:read(2); f:seek('set', 1); return s", f)
        assert stale == b"12"                    # the buffer still had the old bytes
        fresh = run_one(lua, """
          local f = ...
          local fl = require "ipc.filelock"
          assert(fl.lock(f, "r"))
          local s = f:read(2)
          fl.unlock(f); f:close()
          return s
        """, f)
        assert fresh == b"BC"
    finally:
        os.close(fd)


# -- real processes, every engine ---------------------------------------------------

def test_exclusive_excludes_lua_child(engine, path):
    with open(path, "r+b") as f:
        fl.lock(f, "rw")
        assert lua_try(engine, path, "r") == "false"
        assert lua_try(engine, path, "w") == "false"
        fl.unlock(f)
        assert lua_try(engine, path, "w") == "true"


def test_shared_vs_exclusive(engine, path):
    with open(path, "r+b") as f:
        fl.lock(f, "r")
        assert lua_try(engine, path, "r") == "true"
        assert lua_try(engine, path, "rw") == "false"
        fl.unlock(f)


def test_disjoint_and_overlapping_ranges(engine, path):
    with open(path, "r+b") as f:
        fl.lock(f, "w", 0, 10)                   # bytes 0..9
        fl.lock(f, "w", 100, 0)                  # 100 .. end of file and beyond
        assert lua_try(engine, path, "w", 10, 10) == "true"
        assert lua_try(engine, path, "w", 5, 10) == "false"
        assert lua_try(engine, path, "r", 9, 1) == "false"
        assert lua_try(engine, path, "w", 50, 50) == "true"
        assert lua_try(engine, path, "w", 5000, 1) == "false"
        fl.unlock(f, 100, 0)
        assert lua_try(engine, path, "w", 5000, 1) == "true"


def test_lua_holder_excludes_python_and_sigkill_releases(engine, path):
    p = spawn_lua("filelock/hold.lua", path, "w", engine=engine)
    try:
        wait_line(p)
        with open(path, "r+b") as f:
            assert fl.trylock(f, "r") is False
            assert py_try(path, "r") == "False"
            p.kill()                             # SIGKILL: the kernel drops its locks
            p.wait()
            assert fl.trylock(f, "w") is True
            fl.unlock(f)
    finally:
        p.kill()


def test_lua_child_blocked_in_lock_wakes_and_reads_data(engine, path):
    with open(path, "r+b") as f:
        fl.lock(f, "w")
        p = spawn_lua("filelock/lockwait.lua", path, "r", engine=engine)
        try:
            wait_line(p)
            assert still_blocked(p)
            f.seek(0)
            f.truncate()
            f.write(b"written under the lock")
            fl.unlock(f)                         # flushes f first
            code, out, err = finish(p)
            assert code == 0, err
            assert out.splitlines() == ["lock\ttrue", "content\twritten under the lock"]
        finally:
            p.kill()


def test_unlock_flushes_lua_buffered_output(engine, path):
    """A Lua child writes under the lock and unlocks but keeps the file
    open: the next holder must see the data (unlock flushed it)."""
    path.write_bytes(b"start.")
    children, lines = [], []
    try:
        for text in ("one.", "two."):
            p = spawn_lua("filelock/append.lua", path, text, engine=engine)
            children.append(p)
            lines.append(read_line(p))
        # the second child read what the first wrote before its unlock
        assert lines == ["read start.", "read start.one."]
        with open(path, "rb") as f:
            fl.lock(f, "r")
            assert f.read() == b"start.one.two."
            fl.unlock(f)
    finally:
        for p in children:
            p.kill()
            p.wait()


def test_ctrl_c_in_lua_lock(engine, path):
    with open(path, "r+b") as f:
        fl.lock(f, "w")
        p = spawn_lua("filelock/lockwait.lua", path, "w", engine=engine)
        try:
            wait_line(p)
            out, _ = ctrl_c(p)
            assert "lock" not in out
        finally:
            p.kill()


# -- Python API ------------------------------------------------------------------------

def test_python_file_arguments(path):
    with open(path, "r+b") as f:
        fd = os.open(path, os.O_RDWR)

        class HasFileno:
            def fileno(self):
                return fd
        try:
            for arg in (f, fd, HasFileno()):
                fl.lock(arg, "w", 0, 1)
                assert fl.trylock(arg, "r", 0, 1) is True  # same process: no conflict
                fl.unlock(arg, 0, 1)
        finally:
            os.close(fd)
        with pytest.raises(ValueError, match="invalid lock mode"):
            fl.lock(f, "x")
        with pytest.raises(TypeError):
            fl.lock("not a file")
        with pytest.raises(TypeError):
            fl.lock(f, "r", 1.5)
    with pytest.raises(ValueError, match="closed file"):
        fl.lock(f)
    with open(path, "rb") as ro:
        with pytest.raises(OSError) as ei:
            fl.lock(ro, "w")
        assert ei.value.errno == errno.EBADF


HOLD_PY = """
import ipc.filelock as fl, sys, time
with open(sys.argv[1], 'r+b') as f:
    fl.lock(f, sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    print('ready', flush=True)
    time.sleep(60)
"""


def test_python_holder_sigkill_releases(path):
    p = spawn_py(HOLD_PY, path, "w", 0, 0)
    try:
        wait_line(p)
        with open(path, "r+b") as f:
            assert fl.trylock(f, "r") is False
            p.send_signal(signal.SIGKILL)
            p.wait()
            assert fl.trylock(f, "w") is True
    finally:
        p.kill()


def test_python_locked_context_with_timeout(path):
    p = spawn_py(HOLD_PY, path, "w", 0, 10)
    try:
        wait_line(p)
        with open(path, "r+b") as f:
            with pytest.raises(ipc.Timeout) as ei, fl.locked(f, "r", 0, 10, timeout=0.2):
                pass
            assert isinstance(ei.value, TimeoutError) and ei.value.errno == errno.ETIMEDOUT
            with pytest.raises(ipc.Timeout):
                fl.locked(f, "r", 5, 1, timeout=0).acquire()
            with fl.locked(f, "w", 10, 10, timeout=0) as held:   # disjoint: fine
                assert held.held
            assert not held.held
            p.kill()
            p.wait()
            with fl.locked(f, "w", timeout=5):
                f.seek(0)
                f.write(b"X")
        assert path.read_bytes()[:1] == b"X"
    finally:
        p.kill()


def test_ctrl_c_in_python_lock(path):
    p = spawn_py(HOLD_PY, path, "w", 0, 0)
    q = None
    try:
        wait_line(p)  # the holder has the lock before the waiter starts
        q = spawn_py("import ipc.filelock as fl, sys\n"
                     "f = open(sys.argv[1], 'r+b'); print('ready', flush=True)\n"
                     "try:\n    fl.lock(f, 'w')\n"
                     "except KeyboardInterrupt:\n    print('KeyboardInterrupt')\n",
                     path)
        wait_line(q)
        assert still_blocked(q, 0.2)
        interrupt(q)
        code, out, err = finish(q, timeout=10)
        assert (code, out) == (0, "KeyboardInterrupt\n"), err
    finally:
        p.kill()
        if q is not None:
            q.kill()


def test_python_lock_drops_read_buffer(path):
    with open(path, "rb") as f:
        assert f.read(1) == b"0"                 # buffered: the whole file is read ahead
        fd = os.open(path, os.O_WRONLY)
        os.pwrite(fd, b"ABCDEFGHIJ", 0)
        os.close(fd)
        fl.lock(f, "r")
        assert f.read(2) == b"BC"
        fl.unlock(f)


def test_pathlock_interoperates_with_byte_range_locks(engine, path):
    p = spawn_lua("filelock/hold.lua", path, "w", engine=engine)
    try:
        wait_line(p)
        with pytest.raises(ipc.Timeout), fl.PathLock(path, timeout=0.2):
            pass
        with pytest.raises(ipc.Timeout):
            fl.PathLock(path, shared=True, timeout=0).acquire()
        p.kill()
        p.wait()
        with fl.PathLock(path, timeout=5) as fh:
            assert lua_try(engine, path, "r") == "false"   # PathLock excludes Lua
            fh.write(b"!")
        assert lua_try(engine, path, "w") == "true"        # and is gone after the block
        with fl.PathLock(path, shared=True, timeout=5):
            assert lua_try(engine, path, "r") == "true"
            assert lua_try(engine, path, "w") == "false"
        assert path.read_bytes().endswith(b"!")
    finally:
        p.kill()
