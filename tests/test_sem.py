"""ipc.sem: the Lua face on every engine, the Python API, real child
processes contending, Ctrl-C, and recovery after a holder dies."""
from __future__ import annotations

import ctypes
import errno
import os
import pickle
import signal
import time

import pytest
from helpers.children import (
    ctrl_c,
    finish,
    interrupt,
    spawn_lua,
    spawn_py,
    still_blocked,
    wait_line,
)
from helpers.lua import lua_version, run, run_one
from helpers.names import SHM_DIR

import ipc
import ipc.sem

pytestmark = pytest.mark.timeout(120)


def exists(name: str) -> bool:
    return (SHM_DIR / f"sem.{name}").exists()


# -- Lua face, in process, every engine ---------------------------------------

def test_lua_open_create_and_errors(lua, name):
    r = run(lua, """
      local sem = require "ipc.sem"
      local name = ...
      local a = {sem.open(name)}                    -- does not exist yet
      local s = assert(sem.open(name, 2))
      local b = {sem.open(name, 1)}                 -- exists: create fails
      local t = assert(sem.open(name, 0))           -- 0 = open
      return a[1], a[2], a[3], b[1], b[2], b[3], s ~= nil, t ~= nil
    """, name)
    assert r == (None, b"No such file or directory", 2, None, b"File exists", 17, True, True)
    assert exists(name)


def test_lua_bad_names(lua):
    r = run(lua, """
      local sem = require "ipc.sem"
      local a = {sem.open("a/b", 1)}
      local b = {sem.open("", 1)}
      local c = {sem.open(string.rep("x", 300), 1)}
      return a[1], a[3], b[1], b[3], c[1], c[3]
    """)
    assert r == (None, errno.EINVAL, None, errno.EINVAL, None, errno.ENAMETOOLONG)


def test_lua_inc_dec_timeouts(lua, name):
    r = run(lua, """
      local sem = require "ipc.sem"
      local s = assert(sem.open(..., 1))
      local out = {}
      out[#out+1] = s:dec()          -- 1 -> 0
      out[#out+1] = s:dec(0)         -- would block: false
      local t0 = os.time()
      out[#out+1] = s:dec(0.05)      -- waits 50 ms: false
      out[#out+1] = s:inc()
      out[#out+1] = s:inc()
      out[#out+1] = s:dec(0)         -- 2 -> 1
      out[#out+1] = s:dec(1.5)       -- 1 -> 0 at once
      out[#out+1] = s:dec("0")       -- a numeric string, as luaL_optnumber
      out[#out+1] = s:inc()
      out[#out+1] = s:dec(-1)        -- negative: blocking, succeeds at once
      return (unpack or table.unpack)(out)
    """, name)
    assert r == (True, False, False, True, True, True, True, False, True, True)


def test_lua_closed_handle_and_tostring(lua, name):
    r = run(lua, """
      local sem = require "ipc.sem"
      local s = assert(sem.open(..., 1))
      local before = tostring(s)
      local closed = s:close()
      local e1 = select(2, pcall(s.inc, s))
      local e2 = select(2, pcall(s.dec, s))
      local e3 = select(2, pcall(s.dec, s, 0))
      local e4 = select(2, pcall(s.close, s))
      return before, closed, e1, e2, e3, e4, tostring(s), io.type(s)
    """, name)
    before, closed, *errs, after, iotype = r
    assert before.startswith(b"ipc.sem (") and before != b"ipc.sem (closed)"
    assert closed is True
    for e in errs:
        assert e.endswith(b"attempt to use invalid semaphore object"), e
    assert after == b"ipc.sem (closed)"
    assert iotype is None


def test_lua_argument_errors(lua, name):
    r = run(lua, """
      local sem = require "ipc.sem"
      local name = ...
      local s = assert(sem.open(name, 1))
      local out = {}
      for _, f in ipairs{
        function() sem.open() end,
        function() sem.open({}) end,
        function() sem.open(name, "x") end,
        function() sem.open(name, 1.5) end,
        function() s:dec("soon") end,
        function() s:dec({}) end,
      } do out[#out+1] = select(2, pcall(f)) end
      return (unpack or table.unpack)(out)
    """, name)
    assert r[0].endswith(b"bad argument #1 to 'open' (string expected, got no value)")
    assert r[1].endswith(b"bad argument #1 to 'open' (string expected, got table)")
    assert r[2].endswith(b"bad argument #2 to 'open' (number expected, got string)")
    assert r[3].endswith(b"bad argument #2 to 'open' (number has no integer representation)")
    assert r[4].endswith(b"bad argument #1 to 'dec' (number expected, got string)")
    assert r[5].endswith(b"bad argument #1 to 'dec' (number expected, got table)")


def test_lua_creator_close_unlinks_opener_does_not(lua, name):
    r = run(lua, """
      local sem = require "ipc.sem"
      local s = assert(sem.open(..., 1))
      local t = assert(sem.open(...))
      t:close()
      local still = sem.open(...)        -- opener's close left the name
      if still then still:close() end
      s:close()
      return still ~= nil, sem.open(...)
    """, name)
    assert r == (True, None, b"No such file or directory", 2)
    assert not exists(name)


def test_lua_collection_unlinks(lua, name):
    run(lua, "local sem = require 'ipc.sem'; S = assert(sem.open(..., 3))", name)
    assert exists(name)                  # held by the global S: not collected yet
    lua.execute(b"S = nil; collectgarbage(); collectgarbage()")
    deadline = time.time() + 5
    while exists(name) and time.time() < deadline:
        lua.execute(b"collectgarbage()")
        time.sleep(0.01)
    assert not exists(name)


def test_lua_to_be_closed(lua, engine, name):
    if lua_version(engine) < (5, 4):
        pytest.skip("<close> is Lua 5.4+")
    r = run_one(lua, """
      local sem = require "ipc.sem"
      local name = ...
      do local s <close> = assert(sem.open(name, 1)) end
      local a = {sem.open(name)}
      do local s <close> = assert(sem.open(name, 1)); s:close() end  -- closed twice: fine
      return a[3]
    """, name)
    assert r == 2


def test_lua_meets_python_and_c(lua, name):
    """The OS name is "/" + name: Python's handle and a C sem_open meet it."""
    s = ipc.sem.open(name, 1)
    assert s.os_name == "/" + name
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    csem = libc.sem_open(("/" + name).encode(), 0)
    assert csem not in (None, 0, ctypes.c_void_p(-1).value)
    try:
        assert libc.sem_trywait(ctypes.c_void_p(csem)) == 0       # C takes the unit
        assert run_one(lua, "local s = require('ipc.sem').open(...); return s:dec(0)", name) is False
        assert libc.sem_post(ctypes.c_void_p(csem)) == 0
        assert run_one(lua, "local s = require('ipc.sem').open(...); return s:dec(0)", name) is True
        assert s.value == 0
    finally:
        libc.sem_close(ctypes.c_void_p(csem))
        s.close()


# -- real processes --------------------------------------------------------------

def test_lua_child_blocked_in_dec_wakes_on_inc(engine, name):
    s = ipc.sem.open(name, 1)
    s.dec()
    p = spawn_lua("sem/wait.lua", name, engine=engine)
    try:
        wait_line(p)
        assert still_blocked(p), "dec() returned although the count was 0"
        s.inc()
        code, out, err = finish(p)
        assert code == 0, err
        assert out.split() == ["dec", "true", "nil", "nil"]
    finally:
        p.kill()
        s.close()


def test_python_child_wakes_on_inc_from_lua(engine, name):
    s = ipc.sem.open(name, 1)
    s.dec()
    p = spawn_py("import ipc.sem, sys; s = ipc.sem.open(sys.argv[1]); print('ready', flush=True); "
                 "print('dec', s.dec(timeout=30))", name)
    try:
        wait_line(p)
        assert still_blocked(p)
        q = spawn_lua("sem/post.lua", name, engine=engine)
        qcode, qout, qerr = finish(q)
        assert (qcode, qout) == (0, "posted\n"), qerr
        code, out, err = finish(p)
        assert (code, out) == (0, "dec True\n"), err
    finally:
        p.kill()
        s.close()


def test_lua_child_timed_dec_times_out(engine, name):
    s = ipc.sem.open(name, 1)
    s.dec()
    try:
        p = spawn_lua("sem/wait.lua", name, "0.2", engine=engine)
        wait_line(p)
        code, out, err = finish(p)
        assert (code, out.split()) == (0, ["dec", "false", "nil", "nil"]), err
    finally:
        s.close()


def test_ctrl_c_in_lua_dec(engine, name):
    s = ipc.sem.open(name, 1)
    s.dec()
    p = spawn_lua("sem/wait.lua", name, engine=engine)
    try:
        wait_line(p)
        out, _ = ctrl_c(p)
        assert "dec" not in out
    finally:
        p.kill()
        s.close()


def test_ctrl_c_in_python_dec(name):
    s = ipc.sem.open(name, 1)
    s.dec()
    p = spawn_py("import ipc.sem, sys; s = ipc.sem.open(sys.argv[1]); print('ready', flush=True)\n"
                 "try:\n    s.dec()\nexcept KeyboardInterrupt:\n    print('KeyboardInterrupt')\n", name)
    try:
        wait_line(p)
        assert still_blocked(p, 0.2)
        interrupt(p)
        code, out, err = finish(p, timeout=10)
        assert (code, out) == (0, "KeyboardInterrupt\n"), err
    finally:
        p.kill()
        s.close()


def test_other_signal_does_not_end_wait(name):
    """A handler that returns normally resumes the wait (PEP 475)."""
    s = ipc.sem.open(name, 1)
    s.dec()
    p = spawn_py("import ipc.sem, sys, signal\n"
                 "signal.signal(signal.SIGUSR1, lambda *a: print('handler', flush=True))\n"
                 "s = ipc.sem.open(sys.argv[1]); print('ready', flush=True)\n"
                 "print('dec', s.dec(timeout=30))\n", name)
    try:
        wait_line(p)
        time.sleep(0.2)
        p.send_signal(signal.SIGUSR1)
        wait_line(p, "handler")
        assert still_blocked(p)
        s.inc()
        code, out, err = finish(p)
        assert (code, out) == (0, "dec True\n"), err
    finally:
        p.kill()
        s.close()


def test_ping_pong_lua_and_python(engine, make_name):
    ping, pong = make_name(), make_name()
    a, b = ipc.sem.open(ping, 1), ipc.sem.open(pong, 1)
    a.dec(), b.dec()
    p = spawn_lua("sem/pingpong.lua", ping, pong, 200, engine=engine)
    try:
        for _ in range(200):
            a.inc()
            assert b.dec(timeout=20)
        code, out, err = finish(p)
        assert (code, out) == (0, "done\n"), err
        assert a.value == 0 and b.value == 0
    finally:
        p.kill()
        a.close(), b.close()


# -- Python API ---------------------------------------------------------------------

def test_python_open_errors(name):
    with pytest.raises(FileNotFoundError) as ei:
        ipc.sem.open(name)
    assert ei.value.errno == errno.ENOENT and isinstance(ei.value, ipc.NotFoundError)
    s = ipc.sem.open(name, 1)
    with pytest.raises(FileExistsError) as ei:
        ipc.sem.open(name, 1)
    assert ei.value.errno == errno.EEXIST and isinstance(ei.value, ipc.IPCError)
    for bad in ("a/b", ""):
        with pytest.raises(ipc.IPCError) as ei:
            ipc.sem.open(bad, 1)
        assert ei.value.errno == errno.EINVAL
    for bad_n in (-1, ipc.sem.VALUE_MAX + 1):
        with pytest.raises(ipc.IPCError) as ei:
            ipc.sem.open(name + "x", bad_n)
        assert ei.value.errno == errno.EINVAL
    assert not exists(name + "x")
    with pytest.raises(TypeError):
        ipc.sem.open(name, 1.5)
    s.close()


def test_python_handle(name):
    s = ipc.sem.open(name, 2)
    assert s.owner and s.value == 2 and not s.closed
    with s:
        assert s.value == 1
        with s:
            assert s.value == 0
            assert s.dec(0) is False
            assert s.dec(0.05) is False
            with pytest.raises(ipc.Timeout) as ei:
                s.acquire(timeout=0.05)
            assert isinstance(ei.value, TimeoutError) and ei.value.errno == errno.ETIMEDOUT
            with pytest.raises(ipc.Timeout):
                s.acquire(0)
    assert s.value == 2
    s.acquire()
    s.release()
    assert s.dec(-5) is True and s.dec(float("inf")) is True
    s.inc(), s.inc()
    with pytest.raises(ValueError):
        s.dec(float("nan"))
    t = ipc.sem.open(name)
    assert not t.owner and t.value == 2
    t.close()
    t.close()  # idempotent
    with pytest.raises(ValueError, match="invalid semaphore"):
        t.inc()
    with pytest.raises(ValueError, match="invalid semaphore"):
        t.dec(0)
    assert exists(name)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    assert "owner" in repr(s)
    s.close()
    assert not exists(name) and "closed" in repr(s)


def test_python_overflow_is_an_os_error(name):
    s = ipc.sem.open(name, ipc.sem.VALUE_MAX)
    with pytest.raises(ipc.IPCError) as ei:
        s.inc()
    assert ei.value.errno == errno.EOVERFLOW
    s.close()


def test_lua_inc_overflow_triple(lua, name):
    s = ipc.sem.open(name, ipc.sem.VALUE_MAX)
    r = run(lua, "local s = require('ipc.sem').open(...); return s:inc()", name)
    assert r == (None, os.strerror(errno.EOVERFLOW).encode(), errno.EOVERFLOW)
    s.close()


def test_python_finalizer_unlinks(name):
    s = ipc.sem.open(name, 1)
    del s
    assert not exists(name)


def test_python_unlink_keeps_handles_working(name):
    s = ipc.sem.open(name, 1)
    ipc.sem.unlink(name)
    assert not exists(name)
    assert s.dec(0) and not s.dec(0)
    s.inc()
    with pytest.raises(FileNotFoundError):
        ipc.sem.unlink(name)
    s.close()  # the creator's unlink of a gone name is not an error


# -- recovery after a holder dies ----------------------------------------------------

HOLD_AND_HANG = """
import ipc.sem, sys, time
s = ipc.sem.open(sys.argv[1])
ledger = ipc.sem.Ledger(s, sys.argv[2]) if len(sys.argv) > 2 else None
(ledger.acquire if ledger else s.acquire)(timeout=10)
print('ready', flush=True)
time.sleep(60)
"""


def test_dead_holder_keeps_semaphore_and_reset_recovers(name):
    """SIGKILL a holder: the unit is lost (no SEM_UNDO); reset() puts it back."""
    s = ipc.sem.open(name, 1)
    p = spawn_py(HOLD_AND_HANG, name)
    wait_line(p)
    p.kill()
    p.wait()
    assert s.dec(0.1) is False           # the dead holder's unit is gone
    assert ipc.sem.reset(name, 1) == 0   # the supervisor's way out
    assert s.dec(0) is True
    s.inc()
    s.close()


def test_ledger_recover_gives_back_dead_holders_units(name, tmp_path):
    s = ipc.sem.open(name, 2)
    ledger_path = tmp_path / "ledger"
    ledger = ipc.sem.Ledger(s, ledger_path)
    dead = spawn_py(HOLD_AND_HANG, name, ledger_path)
    alive = spawn_py(HOLD_AND_HANG, name, ledger_path)
    try:
        wait_line(dead), wait_line(alive)
        assert sorted(ledger.holders()) == sorted([dead.pid, alive.pid])
        assert s.value == 0
        assert ledger.recover() == []          # both alive: nothing to give back
        dead.kill()
        dead.wait()
        assert ledger.recover() == [dead.pid]
        assert s.value == 1 and ledger.holders() == [alive.pid]
        assert ledger.recover() == []          # once only
        with ledger.hold(timeout=5):           # our own use records and unrecords
            assert os.getpid() in ledger.holders() and s.value == 0
        assert os.getpid() not in ledger.holders() and s.value == 1
    finally:
        dead.kill(), alive.kill()
        dead.wait(), alive.wait()
        s.close()
