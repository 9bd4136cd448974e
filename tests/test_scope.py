"""sem:scope and filelock.scope from Lua, on every engine: what was taken
is given back however fn ends, as another process sees it."""
from __future__ import annotations

import re

import pytest
from helpers.children import run_py
from helpers.lua import lua_version, run

import ipc.sem

pytestmark = pytest.mark.timeout(120)


def _sem_free_elsewhere(name: str) -> bool:
    """Whether another process can take a unit of semaphore ``name`` now
    (it gives it back at once)."""
    r = run_py("import ipc\n"
               f"s = ipc.sem.open({name!r})\n"
               "try:\n    s.acquire(0)\nexcept ipc.Timeout:\n    print('taken')\n"
               "else:\n    s.release()\n    print('free')")
    return r.stdout.strip() == "free"


def _locked_elsewhere(path: bytes) -> bytes:
    """What another process's non-blocking exclusive lock of ``path`` says."""
    r = run_py("import fcntl, sys\n"
               f"f = open({path.decode()!r}, 'r+b')\n"
               "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
               "except OSError:\n    print('locked')\nelse:\n    print('free')")
    return r.stdout.strip().encode()   # a Lua string (bytes) for the chunk


SEM = 'local sem = require "ipc.sem"\nlocal name, probe = ...\n'


def test_sem_scope_holds_the_unit_and_gives_it_back(lua, make_name):
    name = make_name()
    r = run(lua, SEM + """
      local s = assert(sem.open(name, 1))
      local seen
      local a, b, n = s:scope(function(x, y)
        seen = probe(name)              -- another process, during fn
        return x + y, "two", select("#", x, y)
      end, 1, 2)
      local after = probe(name)
      s:close()
      return a, b, n, seen, after
    """, name, _sem_free_elsewhere)
    assert r == (3, b"two", 2, False, True)


@pytest.mark.parametrize("raise_", ['error("boom")', 'error({ code = 7 })', "error()"])
def test_sem_scope_gives_back_when_fn_raises(lua, make_name, raise_):
    name = make_name()
    r = run(lua, SEM + """
      local s = assert(sem.open(name, 1))
      local ok, e = pcall(s.scope, s, function() RAISE end)
      local kind = type(e) == "table" and e.code or e
      local after = probe(name)
      s:close()
      return ok, kind, after
    """.replace("RAISE", raise_), name, _sem_free_elsewhere)
    assert r[0] is False and r[2] is True
    if "boom" in raise_:
        assert r[1].endswith(b": boom")          # raised again as it was: with fn's position
    elif "code" in raise_:
        assert r[1] == 7                          # a table stays a table
    else:
        assert r[1] in (None, b"<no error object>")   # 5.5 names a nil error


def test_sem_scope_refusals_take_nothing(lua, make_name):
    name = make_name()
    r = run(lua, SEM + """
      local pyobj = select(3, ...)       -- a Python object: lupa gives it a __call
      local s = assert(sem.open(name, 1))
      local r = {}
      for _, args in ipairs({ {}, { 5 }, { "f" }, { {} }, { pyobj } }) do
        local ok, e = pcall(s.scope, s, (unpack or table.unpack)(args))
        r[#r + 1] = e
      end
      local ok, e = pcall(sem.open(name).scope, 42, print)
      r[#r + 1] = e
      local free = probe(name)
      s:close()
      local okc, ec = pcall(s.scope, s, print)
      r[#r + 1] = ec
      return free, (unpack or table.unpack)(r)
    """, name, _sem_free_elsewhere, object())
    assert r[0] is True
    assert r[1].endswith(b"(function expected, got no value)")
    assert r[2].endswith(b"(function expected, got number)")
    assert r[3].endswith(b"(function expected, got string)")
    assert r[4].endswith(b"(function expected, got table)")
    assert re.search(rb"\(function expected, got (userdata|POBJECT)\)$", r[5])  # 5.3+: __name
    assert b"ipc.sem expected, got number" in r[6]
    assert r[7].endswith(b"attempt to use invalid semaphore object")


def test_sem_scope_a_callable_table_and_a_wait(lua, make_name):
    """A callable table is a function here, and scope waits for the unit as
    dec() does: a second process holds it for a while."""
    name = make_name()
    s = ipc.sem.open(name, 1)
    s.acquire()
    try:
        r = run(lua, SEM + """
          local s = assert(sem.open(name))
          probe()                            -- lets the unit go in 0.2 s
          return s:scope(setmetatable({}, { __call = function(self, v) return v * 2 end }), 21)
        """, name, lambda: __import__("threading").Timer(0.2, s.release).start())
        assert r == (42,)
        s.acquire(0)                             # given back (else ipc.Timeout)
    finally:
        s.close()


def test_sem_scope_yields_where_the_engine_can(lua, engine, make_name):
    name = make_name()
    r = run(lua, SEM + """
      local s = assert(sem.open(name, 1))
      local co = coroutine.create(function()
        return s:scope(function() coroutine.yield("inside"); return "out" end)
      end)
      local ok1, v1 = coroutine.resume(co)
      local ok2, v2 = coroutine.resume(co)
      local after = probe(name)
      s:close()
      return ok1, v1, ok2, v2, after
    """, name, _sem_free_elsewhere)
    if lua_version(engine) == (5, 1) and not engine.startswith("luajit"):
        assert r[0] is False and b"yield across" in r[1] and r[4] is True
    else:
        assert r == (True, b"inside", True, b"out", True)


FL = 'local filelock = require "ipc.filelock"\nlocal path, probe = ...\n'


def test_filelock_scope_holds_and_releases(lua, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"")
    r = run(lua, FL + """
      local f = assert(io.open(path, "r+b"))
      local seen
      local a, b = filelock.scope(f, "w", function(s)
        f:write(s)                       -- buffered: the unlock flushes it
        seen = probe(path)
        return "done", #s
      end, "payload")
      local after = probe(path)
      local ok, e = pcall(filelock.scope, f, "rw", function() error("boom") end)
      local after_error = probe(path)
      f:close()
      return a, b, seen, after, ok, e, after_error
    """, str(path), _locked_elsewhere)
    assert r[:4] == (b"done", 7, b"locked", b"free")
    assert r[4] is False and r[5].endswith(b": boom") and r[6] == b"free"
    assert path.read_bytes() == b"payload"


def test_filelock_scope_refusals_lock_nothing(lua, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"x")
    r = run(lua, FL + """
      local f = assert(io.open(path, "r+b"))
      local r = {}
      for _, args in ipairs({ { f, "x", print }, { f, "r" }, { f, "r", 3 }, { 1, "r", print } }) do
        local ok, e = pcall(filelock.scope, (unpack or table.unpack)(args, 1, 3))
        r[#r + 1] = e
      end
      local c = assert(io.open(path, "rb")); c:close()
      local ok, e = pcall(filelock.scope, c, "r", print)
      r[#r + 1] = e
      r[#r + 1] = probe(path)
      f:close()
      return (unpack or table.unpack)(r)
    """, str(path), _locked_elsewhere)
    assert r[0].endswith(b"(invalid option 'x')")
    assert r[1].endswith(b"(function expected, got nil)")   # passed as nil
    assert r[2].endswith(b"(function expected, got number)")
    assert b"FILE* expected, got number" in r[3]
    assert r[4].endswith(b"attempt to use closed file")
    assert r[5] == b"free"
