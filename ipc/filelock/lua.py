"""Core functions for the Lua face of ipc.filelock (face.lua).

A Lua file reaches Python only as its ``tostring``, ``"file (0x...)"``: the
address of its C ``FILE*``; ``support.lua_file_fd`` turns it into the
descriptor the record locks need.  The face checks that the
file is open before asking, and caches the answer per file object.
"""
from __future__ import annotations

import fcntl

from ..lua.support import lua_file_fd
from . import _os

__all__ = ["fileno", "lock", "trylock", "unlock"]


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
