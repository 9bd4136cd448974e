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

import weakref
from collections.abc import Callable

import posix_ipc

from .._errors import from_posix_ipc
from .._signals import exit_pending
from .._timeout import FOREVER
from ..lua.support import anew
from . import INVALID, Semaphore, _os

__all__ = ["open", "pointer", "dec", "failed", "close", "FOREVER"]


def open(name: bytes,
         n: float) -> tuple[Semaphore, Callable[[], None], Callable[..., None]]:
    """A Semaphore plus the two bound methods the face's fast paths call
    (``Semaphore.os_calls``)."""
    s = Semaphore(name, int(n))
    release, acquire = s.os_calls()
    return s, release, acquire


def pointer(s: Semaphore) -> int | None:
    """A ``sem_t*`` (as an int) of s's semaphore for the LuaJIT FFI, closed
    when s is collected; None if the name is already gone."""
    ptr = _os.pointer(s.os_name)
    if ptr is not None:
        weakref.finalize(s, _os.close_pointer, ptr)
    return ptr


def dec(s: Semaphore, timeout: float) -> bool:
    """dec(t) for 0 <= t <= FOREVER (the face sends the waits without end,
    negative or longer, down the fast path)."""
    return s.dec(timeout)


def failed(s: Semaphore, exc: BaseException, blocking: bool) -> bool:
    """A fast-path call raised ``exc``: finish the job or raise what Lua
    should see.  A signal whose handler returned (SignalError) resumes a
    blocking wait, as PEP 475; Ctrl-C arrives as KeyboardInterrupt."""
    if not isinstance(exc, posix_ipc.Error):
        raise anew(exc)  # not exc itself: Lua has that object already
    if blocking and isinstance(exc, posix_ipc.SignalError):
        exit_pending()  # the SystemExit posix_ipc swallowed (ipc/_signals.py)
        return s.dec()
    if isinstance(exc, posix_ipc.ExistentialError):  # inc() on a closed semaphore
        raise ValueError(INVALID)
    raise from_posix_ipc(exc, s.os_name)


def close(s: Semaphore) -> bool:
    s.close()
    return True
