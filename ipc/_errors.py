"""One exception hierarchy for every module.

Everything ipc raises for an operating-system failure is an ``IPCError``,
which is an ``OSError`` that keeps ``errno`` and ``strerror``.  The common
cases are also the matching built-in classes, so ``except FileExistsError``
and ``except ipc.IPCError`` both work.  Misuse (a wrong type, a closed
handle) raises ``TypeError``/``ValueError`` as the standard library does.

The Lua faces rely on this: an ``OSError`` with an errno reaching Lua becomes
``nil, message, errno``; anything else becomes a Lua error.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "IPCError", "ExistsError", "NotFoundError", "PermissionDenied",
    "Timeout", "Interrupted", "os_error", "from_posix_ipc",
]


class IPCError(OSError):
    """Base class: an OS-level failure of an ipc operation (keeps errno)."""


class ExistsError(IPCError, FileExistsError):
    """The named object exists already (EEXIST)."""


class NotFoundError(IPCError, FileNotFoundError):
    """No named object of that name (ENOENT)."""


class PermissionDenied(IPCError, PermissionError):
    """The object belongs to someone else or has the wrong mode (EACCES)."""


class Timeout(IPCError, TimeoutError):
    """A wait with a timeout ran out (ETIMEDOUT)."""


class Interrupted(IPCError, InterruptedError):
    """A wait was interrupted by a signal (EINTR)."""


_BY_ERRNO = {
    _errno.EEXIST: ExistsError,
    _errno.ENOENT: NotFoundError,
    _errno.EACCES: PermissionDenied,
    _errno.EPERM: PermissionDenied,
    _errno.ETIMEDOUT: Timeout,
    _errno.EAGAIN: Timeout,
    _errno.EINTR: Interrupted,
}


def os_error(code: int, filename: object = None, message: str | None = None) -> IPCError:
    """The IPCError subclass for ``code``, with the C library's message."""
    cls = _BY_ERRNO.get(code, IPCError)
    text = message if message is not None else os.strerror(code)
    if filename is None:
        return cls(code, text)
    return cls(code, text, filename)


def from_posix_ipc(exc: BaseException, name: object = None, *, creating: bool = False) -> BaseException:
    """Translate a posix_ipc exception, once, at the OS boundary.

    posix_ipc's exceptions carry no errno, so the caller says what it was
    doing: an ExistentialError is EEXIST when creating exclusively and
    ENOENT when opening.
    """
    import posix_ipc

    if isinstance(exc, posix_ipc.ExistentialError):
        return os_error(_errno.EEXIST if creating else _errno.ENOENT, name)
    if isinstance(exc, posix_ipc.PermissionsError):
        return os_error(_errno.EACCES, name)
    if isinstance(exc, posix_ipc.BusyError):
        return os_error(_errno.ETIMEDOUT, name)
    if isinstance(exc, posix_ipc.SignalError):
        return os_error(_errno.EINTR, name)
    if isinstance(exc, OSError) and exc.errno:
        return os_error(exc.errno, name)
    if isinstance(exc, ValueError):
        return os_error(_errno.EINVAL, name, f"Invalid argument ({exc})")
    return exc
