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
    "ExistsError", "IPCError", "Interrupted", "NotFoundError",
    "PermissionDenied", "Timeout", "from_posix_ipc", "os_error",
    "os_errors", "posix_errors", "timed_out",
]


class IPCError(OSError):
    """Base class: an OS-level failure of an ipc operation (keeps errno).

    ``reason``, when set, says why in words the C library has none for
    (``name must not contain '/'``).  It is shown after the message, and
    ``strerror`` stays the C library's text, which the Lua faces return as
    LuaIPC does."""

    reason: str | None = None

    def __str__(self) -> str:
        text = super().__str__()
        return f"{text} ({self.reason})" if self.reason else text


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


# Users meet these as ipc.Timeout and the like (tracebacks, repr, pickles),
# not as ipc._errors.Timeout; ipc exports each of them under that name.
for _cls in (IPCError, ExistsError, NotFoundError, PermissionDenied, Timeout, Interrupted):
    _cls.__module__ = "ipc"
del _cls


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


def timed_out(timeout: float | None, what: str, name: object = None) -> IPCError:
    """The ``ipc.Timeout`` of a wait that ran out, saying what it waited
    for and how long: ``[Errno 110] timed out after 2 s waiting for
    semaphore: 'jobs'`` (not the C library's "Connection timed out")."""
    return os_error(_errno.ETIMEDOUT, name,
                    f"timed out after {timeout or 0:g} s waiting for {what}")


# posix_ipc reports these as an OSError without errno (posix_ipc_module.c:
# "case EMFILE: PyErr_SetString(PyExc_OSError, ...)"): its message is all
# there is to tell them apart.
_POSIX_IPC_MESSAGES = {
    "This process already has the maximum number of files open": _errno.EMFILE,
    "The system limit on the total number of open files has been reached": _errno.ENFILE,
    "Insufficient space for a new queue": _errno.ENOSPC,
    "Not enough memory": _errno.ENOMEM,
}


def from_posix_ipc(exc: BaseException, name: object = None, *,
                   creating: bool = False) -> BaseException:
    """Translate an exception of posix_ipc (or of the OS call beside it),
    once, at the OS boundary; anything else comes back unchanged.

    posix_ipc's exceptions carry no errno, so the caller says what it was
    doing: an ExistentialError is EEXIST when creating exclusively and
    ENOENT when opening.
    """
    if isinstance(exc, IPCError):
        return exc
    if isinstance(name, str) and name.startswith("/"):
        # Callers at the OS boundary hold the OS name ("/jobs"); users see
        # the name as they spelt it, the same for shm, sem and mq.
        name = name[1:]
    # Not an import on the error path: posix_ipc is loaded (its callers
    # import it at the top), so this only finds it in sys.modules.
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
        return os_error(exc.errno, exc.filename if name is None else name)
    if isinstance(exc, (OSError, MemoryError)):
        code = _POSIX_IPC_MESSAGES.get(str(exc))
        return exc if code is None else os_error(code, name)
    if isinstance(exc, ValueError):
        return os_error(_errno.EINVAL, name, f"Invalid argument ({exc})")
    return exc


class os_errors:  # a class, not @contextmanager: no generator per use
    """``with os_errors(name): <os calls>``: an ``OSError`` that leaves the
    block is the IPCError of its errno (``name``, or the error's own
    filename, says what it happened to), as psutil's ``wrap_exceptions``
    does for its platform calls; anything else passes unchanged."""

    __slots__ = ("creating", "name")

    def __init__(self, name: object = None, *, creating: bool = False) -> None:
        self.name = name
        self.creating = creating

    def __enter__(self) -> None:
        return None

    def __exit__(self, cls: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:  # None: it never swallows an exception
        if isinstance(exc, OSError) and exc.errno and not isinstance(exc, IPCError):
            raise os_error(exc.errno, exc.filename if self.name is None else self.name) from None


class posix_errors(os_errors):
    """``with posix_errors(name, creating=...): <posix_ipc calls>``: what
    fails in the block leaves it as ``from_posix_ipc`` translates it.  Only
    around posix_ipc calls (a ValueError is its word for EINVAL there), and
    only for the calls that open, create and remove: the hot paths keep a
    bare ``try`` (free when nothing is raised) and call ``from_posix_ipc``
    in their ``except``."""

    __slots__ = ()

    def __exit__(self, cls: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if not isinstance(exc, Exception):
            return  # no failure, or KeyboardInterrupt and the like
        translated = from_posix_ipc(exc, self.name, creating=self.creating)
        if translated is not exc:
            raise translated from None
