"""Core functions for the Lua face of ipc.filelock (face.lua).

A Lua file reaches Python only as its ``tostring``, ``"file (0x...)"``: the
address of its C ``FILE*``; ``support.lua_file_fd`` turns it into the
descriptor the record locks need.  The face checks that the
file is open before asking, and caches the answer per file object.

The hot paths: on LuaJIT the face calls ``fcntl(F_SETLK)`` itself through
the FFI (the constants below are this platform's), and comes here only to
wait for a lock another process holds (so that Ctrl-C still ends the wait)
and on a failure; on PUC-Lua a whole-file lock or unlock is one call
without arguments (``whole``).
"""
from __future__ import annotations

import fcntl
from collections.abc import Callable
from functools import partial

from ..lua.support import lua_file_fd
from . import _os

__all__ = ["fileno", "lock", "trylock", "unlock", "whole",
           "F_SETLK", "F_RDLCK", "F_WRLCK", "F_UNLCK"]

F_SETLK, F_RDLCK, F_WRLCK, F_UNLCK = fcntl.F_SETLK, fcntl.F_RDLCK, fcntl.F_WRLCK, fcntl.F_UNLCK


def fileno(text: bytes) -> int:
    """The descriptor of an open Lua file, from tostring(f)."""
    return lua_file_fd(text)


def lock(fd: int, shared: bool, offset: float, nbytes: float) -> bool:
    _os.lock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, int(offset), int(nbytes))
    return True


def trylock(fd: int, shared: bool, offset: float, nbytes: float) -> bool:
    return _os.trylock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX,
                       int(offset), int(nbytes))


def unlock(fd: int, offset: float, nbytes: float) -> bool:
    _os.lock(fd, fcntl.LOCK_UN, int(offset), int(nbytes))
    return True


def whole(fd: int) -> tuple[Callable[[], None], Callable[[], None], Callable[[], None]]:
    """Lock (exclusive, shared) and unlock the whole of ``fd``, each a new
    C-level callable without arguments, which the face keeps per file.
    ``fcntl.lockf(fd, op)`` is ``lock(fd, op, 0, 0)`` without the offsets
    (nothing to overflow); an OSError it raises reaches Lua as ``nil, msg,
    errno``, and a wait it interrupts as "interrupted!", as ``lock``'s do."""
    lockf = fcntl.lockf
    return (partial(lockf, fd, fcntl.LOCK_EX), partial(lockf, fd, fcntl.LOCK_SH),
            partial(lockf, fd, fcntl.LOCK_UN))
