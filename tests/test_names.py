"""Invalid names, in Python and in Lua: Python says why (the C library's
"Invalid argument" alone does not), keeps errno and the built-in class;
Lua keeps LuaIPC's triple.  Nothing is created for a bad name."""
from __future__ import annotations

import errno
import os
import pickle

import pytest
from helpers.lua import run
from helpers.names import SHM_DIR

import ipc
import ipc.mq
import ipc.sem
import ipc.shm

CASES = [
    ("/jobs", errno.EINVAL, "name must not contain '/'; the leading '/' of the C API"),
    ("", errno.EINVAL, "name is empty"),
    ("a/b", errno.EINVAL, "name must not contain '/')"),
    ("a\0b", errno.EINVAL, "name must not contain a NUL byte"),
    ("..", errno.EINVAL, "name must not be '..'"),
    ("x" * 300, errno.ENAMETOOLONG, "name too long (300 > 2"),
    ("\udcff", errno.EINVAL, "name must be UTF-8"),
]

OPENERS = {
    "shm": lambda n: ipc.shm.create(n, 16),
    "sem": lambda n: ipc.sem.open(n, 1),
    "mq": lambda n: ipc.mq.open(n, 4),
}


@pytest.mark.parametrize("kind", sorted(OPENERS))
@pytest.mark.parametrize(("name", "code", "reason"), CASES)
def test_python_says_why(kind, name, code, reason):
    before = set(os.listdir(SHM_DIR))
    with pytest.raises(ipc.IPCError) as info:
        OPENERS[kind](name)
    e = info.value
    assert e.errno == code and e.strerror == os.strerror(code)
    assert reason in str(e), str(e)
    assert set(os.listdir(SHM_DIR)) == before
    again = pickle.loads(pickle.dumps(e))  # noqa: S301 (our own bytes)
    assert str(again) == str(e) and type(again) is type(e)


def test_semaphore_names_leave_room_for_glibc_prefix():
    with pytest.raises(ipc.IPCError, match=r"name too long \(252 > 251 bytes\)"):
        ipc.sem.open("s" * 252, 1)


def test_lua_keeps_luaipc_triples(lua):
    got = run(lua, """
      local shm, sem, mq = require "ipc.shm", require "ipc.sem", require "ipc.mq"
      local a, b, c = shm.create("/jobs", 16)
      local d, e, f = sem.open("", 1)
      local g, h, i = mq.open(string.rep("x", 300), 4)
      return a, b, c, d, e, f, g, h, i
    """)
    assert got == (None, b"Invalid argument", errno.EINVAL,
                   None, b"Invalid argument", errno.EINVAL,
                   None, b"File name too long", errno.ENAMETOOLONG)


def test_names_and_created_are_spelt_alike(name):
    """One spelling ("jobs", as passed) in every attribute and error, and one
    attribute for "this handle created it", for shm, sem and mq alike."""
    made = [ipc.shm.create(name, 16), ipc.sem.open(name, 1), ipc.mq.open(name, 4)]
    opened = [ipc.shm.attach(name), ipc.sem.open(name), ipc.mq.open(name)]
    try:
        for h in made:
            assert (h.name, h.created, h.owner) == (name, True, True), h
            assert h.os_name == "/" + name
        for h in opened:
            assert (h.name, h.created, h.owner) == (name, False, False), h
        made[1].unlink()
        assert (made[1].created, made[1].owner) == (True, False)
    finally:
        for h in opened + made:
            h.close()
    for kind, opener in (("shm", ipc.shm.attach), ("sem", ipc.sem.open), ("mq", ipc.mq.open)):
        with pytest.raises(ipc.NotFoundError) as info:
            opener(name)
        assert info.value.filename == name, (kind, info.value)
