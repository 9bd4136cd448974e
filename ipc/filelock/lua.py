"""Core functions for the Lua face of ipc.filelock (face.lua).

A Lua file reaches Python only as its ``tostring``, ``"file (0x...)"``: the
address of its C ``FILE*``.  ``fileno()`` of that pointer (libc, through
ctypes) is the descriptor the record locks need.  The face checks that the
file is open before asking, and caches the answer per file object.
"""
from __future__ import annotations

import ctypes
import errno
import fcntl
import re

from .._errors import os_error
from . import _fcntl

_libc = ctypes.CDLL(None, use_errno=True)
_libc.fileno.argtypes = [ctypes.c_void_p]
_libc.fileno.restype = ctypes.c_int

_ADDRESS = re.compile(rb"\((?:0x)?([0-9a-fA-F]+)\)\s*$")


def fileno(text: bytes) -> int:
    """The descriptor of the open Lua file whose tostring() is ``text``."""
    m = _ADDRESS.search(text)
    if not m:
        raise ValueError(f"cannot find the FILE* in {text!r}")
    fd = _libc.fileno(int(m.group(1), 16))
    if fd < 0:
        raise os_error(ctypes.get_errno() or errno.EBADF)
    return fd


def lock(fd: int, shared: bool, offset: int, nbytes: int) -> bool:
    _fcntl(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX, int(offset), int(nbytes))
    return True


def trylock(fd: int, shared: bool, offset: int, nbytes: int) -> bool:
    op = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    try:
        _fcntl(fd, op, int(offset), int(nbytes))
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def unlock(fd: int, offset: int, nbytes: int) -> bool:
    _fcntl(fd, fcntl.LOCK_UN, int(offset), int(nbytes))
    return True
