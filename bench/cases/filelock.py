"""ipc.filelock: an uncontended exclusive lock + unlock of a whole file.

Ours: ``filelock.lock(f, "w"); filelock.unlock(f)`` on an open file (a Lua
``io.open`` file, or a Python file object).  References: raw
``fcntl.lockf(fd, LOCK_EX)`` + ``lockf(fd, LOCK_UN)`` from Python,
``portalocker.lock``/``unlock``, and the ``filelock`` package when it is
installed (it is not a dependency of luaipc: the row says so when absent).
Microseconds per pair.
"""
from __future__ import annotations

import fcntl
import os

from ..core import Group, Ref, Settings, per_op_us

LUA = """
local filelock = require "ipc.filelock"
local f = assert(io.open(..., "w+"))
local lock, unlock = filelock.lock, filelock.unlock
return function(n)
  for _ = 1, n do lock(f, "w"); unlock(f) end
end, function() f:close() end
"""


def _loop(lock, unlock, *args):
    def loop(n):
        for _ in range(n):
            lock(*args)
            unlock(*args)
    return loop


def _group(st: Settings, engine: str, runtime, scratch) -> Group:
    path = str(scratch.path / f"lock-{engine}")
    g = Group("filelock lock+unlock", engine, "us", None, [])

    def opened(suffix: str):
        f = open(path + suffix, "w+b")  # noqa: SIM115  (open across rounds: the group closes it)
        g.cleanup.append(f.close)
        return f

    fd = opened("").fileno()
    lockf = fcntl.lockf

    def raw(n):
        for _ in range(n):
            lockf(fd, fcntl.LOCK_EX)
            lockf(fd, fcntl.LOCK_UN)

    import portalocker
    pl_f = opened(".pl")

    def pl(n):
        for _ in range(n):
            portalocker.lock(pl_f, portalocker.LOCK_EX)
            portalocker.unlock(pl_f)

    g.refs += [Ref("raw fcntl.lockf (Python)", per_op_us(raw, st.loop)),
               Ref("portalocker.lock/unlock", per_op_us(pl, st.loop))]
    try:
        import filelock as tox_filelock
    except ImportError:
        g.refs.append(Ref("filelock.FileLock", None, "filelock is not installed "
                          "(not a luaipc dependency)"))
    else:
        fl = tox_filelock.FileLock(path + ".fl")
        g.refs.append(Ref("filelock.FileLock",
                          per_op_us(_loop(fl.acquire, fl.release), st.loop)))
    if runtime is not None:
        loop, close = runtime.execute(LUA, os.fsencode(path + ".ours"))
        g.cleanup.append(close)
        g.ours = per_op_us(loop, st.loop)
    else:
        from ipc import filelock
        g.ours = per_op_us(_loop(filelock.lock, filelock.unlock, opened(".ours")), st.loop)
    return g


def groups(st: Settings, engines, runtimes, scratch):
    for engine in engines:
        yield lambda e=engine: _group(st, e, runtimes(e), scratch)
