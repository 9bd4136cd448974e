"""The OS layer of ipc.filelock: fcntl record locks, each failure
translated once (ipc/_errors.py).

Both faces call it with a descriptor: the Python API with a file's, the
Lua core with a Lua file's (``support.lua_file_fd``).  ``op`` is
``fcntl.LOCK_SH`` (a read lock), ``fcntl.LOCK_EX`` (a write lock) or
``fcntl.LOCK_UN``; ``nbytes`` 0 means to the end of the file, however far
it grows.
"""
from __future__ import annotations

import errno
import fcntl
import os

from .._errors import os_error

__all__ = ["flush", "lock", "trylock"]


def lock(fd: int, op: int, offset: int, nbytes: int) -> None:
    """Lock (or unlock) ``nbytes`` bytes of ``fd`` at ``offset``, waiting
    while another process holds a conflicting lock."""
    # fcntl.lockf is fcntl(F_SETLK[W]) with a struct flock (SEEK_SET),
    # exactly the C LuaIPC's call; on EINTR it checks signals (Ctrl-C
    # raises KeyboardInterrupt) and retries (PEP 475).
    try:
        fcntl.lockf(fd, op, nbytes, offset, os.SEEK_SET)
    except OverflowError:  # a range past off_t
        raise os_error(errno.EINVAL) from None
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO) from None


def trylock(fd: int, op: int, offset: int, nbytes: int) -> bool:
    """``lock`` that never waits: False if another process holds a
    conflicting lock (F_SETLK fails with EACCES or EAGAIN: POSIX allows
    either)."""
    try:
        lock(fd, op | fcntl.LOCK_NB, offset, nbytes)
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EAGAIN):
            return False
        raise
    return True


def flush(file: object) -> None:
    """Before unlocking: push ``file``'s buffered output to the file (a
    descriptor has none; a closed or failing file is left as it is)."""
    push = None if isinstance(file, int) else getattr(file, "flush", None)
    if push is not None:
        try:
            if not getattr(file, "closed", False):
                push()
        except (OSError, ValueError):
            pass
