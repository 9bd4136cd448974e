"""Core functions for the Lua face of ipc.sem (face.lua).

The face calls posix_ipc's bound ``release``/``acquire`` directly on its
hot paths (``inc()`` and a blocking ``dec()``) and comes here only to
open, for timed waits, and to translate a failure.

On LuaJIT the face goes further: ``sem_post`` and ``sem_trywait`` through
the FFI on a ``sem_t*`` of the same semaphore (``pointer()``), falling back
to posix_ipc when the count is 0 (a blocking wait, which must stay
interruptible) or on any error (which posix_ipc then reports).

The bound ``acquire`` waits in sem_wait itself, unlike ``Semaphore.dec``,
which waits in slices so that another thread's ``close()`` can end it: no
other thread can close the handle meanwhile, because the Python handle is
reachable only from this Lua state and a LuaRuntime runs one thread at a
time (a thread blocked in ``s:dec()`` holds the runtime).
"""
from __future__ import annotations

import ctypes
import weakref

import posix_ipc

from .._errors import from_posix_ipc
from .._signals import exit_pending
from ..lua.support import anew
from . import _INVALID, Semaphore

__all__ = ["open", "pointer", "dec", "failed", "close"]


def open(name: bytes, n: int):  # noqa: A001
    """A Semaphore plus the two bound methods the face's fast paths call."""
    if isinstance(n, float):
        n = int(n)
    s = Semaphore(name, n)
    return s, s._sem.release, s._sem.acquire


_libc = ctypes.CDLL(None, use_errno=True)
_libc.sem_open.restype = ctypes.c_void_p
_libc.sem_open.argtypes = [ctypes.c_char_p, ctypes.c_int]
_libc.sem_close.argtypes = [ctypes.c_void_p]
_SEM_FAILED = {None, 0, ctypes.c_void_p(-1).value}


def _sem_close(ptr: int) -> None:
    try:
        _libc.sem_close(ptr)
    except Exception:
        pass


def pointer(s: Semaphore):
    """A ``sem_t*`` (as an int) of s's semaphore for the LuaJIT FFI, closed
    when s is collected; None if the name is already gone."""
    ptr = _libc.sem_open(s.os_name.encode(), 0)
    if ptr in _SEM_FAILED:
        return None
    weakref.finalize(s, _sem_close, ptr)
    return ptr


def dec(s: Semaphore, timeout: float) -> bool:
    """dec(t) for t >= 0 (the face sends negative timeouts down the fast path)."""
    return s.dec(timeout)


def failed(s: Semaphore, exc: BaseException, blocking: bool):
    """A fast-path call raised ``exc``: finish the job or raise what Lua
    should see.  A signal whose handler returned (SignalError) resumes a
    blocking wait, as PEP 475; Ctrl-C arrives as KeyboardInterrupt."""
    if not isinstance(exc, posix_ipc.Error):
        raise anew(exc)  # not exc itself: Lua has that object already
    if blocking and isinstance(exc, posix_ipc.SignalError):
        exit_pending()  # the SystemExit posix_ipc swallowed (ipc/_signals.py)
        return s.dec()
    if isinstance(exc, posix_ipc.ExistentialError):  # inc() on a closed semaphore
        raise ValueError(_INVALID)
    raise from_posix_ipc(exc, s.os_name)


def close(s: Semaphore) -> bool:
    s.close()
    return True
