"""Core functions for the Lua face of ipc.sem (face.lua).

The face calls posix_ipc's bound ``release``/``acquire`` directly on its
hot paths (``inc()`` and a blocking ``dec()``) and comes here only to
open, for timed waits, and to translate a failure.
"""
from __future__ import annotations

import posix_ipc

from .._errors import from_posix_ipc
from . import Semaphore, _INVALID, _wait


def open(name: bytes, n: int):  # noqa: A001
    """A Semaphore plus the two bound methods the face's fast paths call."""
    if isinstance(n, float):
        n = int(n)
    s = Semaphore(name, n)
    return s, s._sem.release, s._sem.acquire


def dec(s: Semaphore, timeout: float) -> bool:
    """dec(t) for t >= 0 (the face sends negative timeouts down the fast path)."""
    return s.dec(timeout)


def failed(s: Semaphore, exc: BaseException, blocking: bool):
    """A fast-path call raised ``exc``: finish the job or raise what Lua
    should see.  A signal whose handler returned (SignalError) resumes a
    blocking wait, as PEP 475; Ctrl-C arrives as KeyboardInterrupt."""
    if blocking and isinstance(exc, posix_ipc.SignalError):
        return _wait(s._sem, None, s.os_name)
    if isinstance(exc, posix_ipc.ExistentialError):
        raise ValueError(_INVALID)
    if isinstance(exc, posix_ipc.Error):
        raise from_posix_ipc(exc, s.os_name)
    raise exc


def close(s: Semaphore) -> bool:
    s.close()
    return True
