"""The OS layer of ipc.sem: the calls into posix_ipc and libc for a named
semaphore, each failure translated once (ipc/_errors.py).

Both faces stand on it.  The Python API (``Semaphore``) opens, creates and
unlinks through it; the Lua core takes from it the ``sem_t*`` that the
LuaJIT face's FFI calls use.  The hot calls, sem_post and sem_wait, are
the bound ``release`` and ``acquire`` of the posix_ipc object that ``open``
returns: ``Semaphore`` calls them inline, and hands them to the Lua face
(``Semaphore.os_calls``), so that neither pays a frame of ours per call.
"""
from __future__ import annotations

import errno
import functools

import posix_ipc

from .._errors import os_error, posix_errors

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["VALUE_MAX", "VALUE_SUPPORTED", "close_pointer", "open", "pointer", "unlink"]

#: Whether the OS can read a semaphore's count (posix_ipc's capability flag).
VALUE_SUPPORTED: bool = bool(posix_ipc.SEMAPHORE_VALUE_SUPPORTED)
#: The largest count the OS allows (SEM_VALUE_MAX).
VALUE_MAX: int = int(posix_ipc.SEMAPHORE_VALUE_MAX)


def open(path: str, n: int) -> posix_ipc.Semaphore:
    """``sem_open(path)``: with ``n != 0`` create the semaphore, exclusively
    (O_CREAT | O_EXCL, mode 0600), with the count ``n``; with ``n == 0``
    open an existing one."""
    if n < 0 or n > VALUE_MAX:  # what sem_open says of such a value
        raise os_error(errno.EINVAL, path[1:])  # the name as the user spelt it
    creating = n != 0
    with posix_errors(path, creating=creating):
        if creating:
            return posix_ipc.Semaphore(path, posix_ipc.O_CREX, 0o600, n)
        return posix_ipc.Semaphore(path)


def unlink(path: str) -> None:
    """``sem_unlink(path)`` (FileNotFoundError if there is no such name)."""
    with posix_errors(path):
        posix_ipc.unlink_semaphore(path)


# -- a sem_t* of its own, for the LuaJIT FFI ---------------------------------

@functools.cache
def _libc() -> tuple[Any, frozenset[int | None]]:
    """libc through ctypes, and the values that mean SEM_FAILED: loaded by
    the first ``pointer()``, as importing ctypes costs ~6 ms."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.sem_open.restype = ctypes.c_void_p
    libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
    libc.sem_close.argtypes = [ctypes.c_void_p]
    return libc, frozenset({None, 0, ctypes.c_void_p(-1).value})


def pointer(path: str) -> int | None:
    """A ``sem_t*`` (as an int) of the existing semaphore ``path``, from
    libc's own ``sem_open``; None if the name is gone.  The caller closes
    it with ``close_pointer``."""
    libc, failed = _libc()
    ptr = libc.sem_open(path.encode(), 0)
    return None if ptr in failed else ptr


def close_pointer(ptr: int) -> None:
    """``sem_close`` of what ``pointer`` gave.  Never raises (a finalizer)."""
    try:
        _libc()[0].sem_close(ptr)
    except Exception:  # noqa: BLE001  (a finalizer must not raise)
        pass
