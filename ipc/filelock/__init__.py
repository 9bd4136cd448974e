"""POSIX byte-range locks (``fcntl`` record locks), as LuaIPC's filelock.

    import ipc.filelock as fl

    with open("data", "r+b") as f:
        fl.lock(f, "rw")                   # blocks; "r" shared, "w"/"rw" exclusive
        ...
        fl.unlock(f)
        if fl.trylock(f, "r", 0, 100):     # bytes 0..99, never blocks
            fl.unlock(f, 0, 100)
        with fl.locked(f, "w", timeout=2): # raises ipc.Timeout after 2 s
            ...

    with fl.PathLock("/tmp/app.lock", timeout=5) as fh:   # portalocker, lockf-style
        ...

The locks are ``fcntl(F_SETLK/F_SETLKW)`` record locks, so they exclude and
are excluded by the C LuaIPC and any program using ``fcntl``/``lockf``
(``PathLock`` included).  ``nbytes`` 0 means "to the end of the file, however
far it grows".  The kernel drops a process's locks when it exits or dies.

POSIX rules worth knowing: locks belong to the *process* (two locks of one
process never conflict, and a process never waits for itself), and closing
*any* descriptor of a file drops all of the process's locks on that file.
"""
from __future__ import annotations

import errno
import fcntl
import io
import os
import time

from .._errors import os_error, timed_out
from .._timeout import Deadline, timeout as check_timeout
from . import _os

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from _typeshed import FileDescriptorLike as FileArg  # an int fd or anything with fileno()
    from typing_extensions import Self

    from ._path import PathLock

__all__ = ["lock", "trylock", "unlock", "locked", "RangeLock", "PathLock", "fileno"]

_MODES = {"r": fcntl.LOCK_SH, "w": fcntl.LOCK_EX, "rw": fcntl.LOCK_EX}


def fileno(file: FileArg) -> int:
    """The descriptor of ``file`` (an int, or an object with fileno())."""
    if isinstance(file, bool):
        raise TypeError("file must be a file object or a descriptor, not bool")
    if isinstance(file, int):
        return file
    get = getattr(file, "fileno", None)
    if get is None or not callable(get):
        raise TypeError(f"file must be a file object or a descriptor, "
                        f"not {type(file).__name__}")
    if getattr(file, "closed", False):
        raise ValueError("attempt to use closed file")
    fd: int = get()
    return fd


def _op(mode: str) -> int:
    try:
        return _MODES[mode]
    except (KeyError, TypeError):
        raise ValueError(f"invalid lock mode {mode!r} (expected 'r', 'w' or 'rw')") from None


def _range(offset: int, nbytes: int) -> tuple[int, int]:
    for what, v in (("offset", offset), ("nbytes", nbytes)):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{what} must be an int, not {type(v).__name__}")
    return offset, nbytes


def _refresh(file: FileArg) -> None:
    """After locking: drop read-ahead so we read what the last holder wrote
    (LuaIPC: fflush + fseek(f, 0, SEEK_CUR))."""
    if isinstance(file, int) or not isinstance(file, io.IOBase):
        return
    try:
        if file.seekable() and file.readable():
            pos = file.tell()
            file.seek(0, os.SEEK_END)  # a seek to the end empties the buffer
            file.seek(pos)
    except (OSError, ValueError):
        pass


def lock(file: FileArg, mode: str = "rw", offset: int = 0, nbytes: int = 0) -> None:
    """Lock ``nbytes`` bytes at ``offset`` (0 = to the end), waiting as long
    as another process holds a conflicting lock."""
    op = _op(mode)
    fd = fileno(file)
    _os.lock(fd, op, *_range(offset, nbytes))
    _refresh(file)


def trylock(file: FileArg, mode: str = "rw", offset: int = 0, nbytes: int = 0) -> bool:
    """Like ``lock`` but never waits: False if another process holds a
    conflicting lock."""
    op = _op(mode)
    fd = fileno(file)
    if not _os.trylock(fd, op, *_range(offset, nbytes)):
        return False
    _refresh(file)
    return True


def unlock(file: FileArg, offset: int = 0, nbytes: int = 0) -> None:
    """Release the range (flushing ``file``'s buffered output first)."""
    fd = fileno(file)
    offset, nbytes = _range(offset, nbytes)
    _os.flush(file)
    _os.lock(fd, fcntl.LOCK_UN, offset, nbytes)


def _lock_within(file: FileArg, mode: str, offset: int, nbytes: int,
                 timeout: float | None) -> None:
    """lock() with the timeout rule: None waits, 0 tries once, > 0 polls."""
    timeout = check_timeout(timeout)
    if timeout is None:
        lock(file, mode, offset, nbytes)
        return
    deadline = Deadline(timeout)
    delay = 0.001
    while not trylock(file, mode, offset, nbytes):
        left = deadline.remaining()
        if not left:  # 0.0: past the deadline (never None: there is a timeout)
            raise timed_out(timeout, "a lock on file", getattr(file, "name", None))
        time.sleep(min(delay, left))  # fcntl has no timed wait: poll, backing off
        delay = min(delay * 2, 0.05)


class RangeLock:
    """A locked byte range as a context manager (see ``locked``)."""

    def __init__(self, file: FileArg, mode: str = "rw", offset: int = 0,
                 nbytes: int = 0, timeout: float | None = None) -> None:
        _op(mode)
        self.file, self.mode, self.timeout = file, mode, timeout
        self.offset, self.nbytes = _range(offset, nbytes)
        self.held = False

    def acquire(self, timeout: float | None = -1) -> None:
        """Take the lock (``timeout`` -1: the one given at construction)."""
        _lock_within(self.file, self.mode, self.offset, self.nbytes,
                     self.timeout if timeout == -1 else timeout)
        self.held = True

    def release(self) -> None:
        """Unlock the range (a no-op if it is not held)."""
        if self.held:
            self.held = False
            unlock(self.file, self.offset, self.nbytes)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def locked(file: FileArg, mode: str = "rw", offset: int = 0, nbytes: int = 0,
           timeout: float | None = None) -> RangeLock:
    """``with locked(f, "w", timeout=2): ...`` locks the range for the block;
    raises ``ipc.Timeout`` if it cannot within ``timeout`` seconds."""
    return RangeLock(file, mode, offset, nbytes, timeout)


def __getattr__(name: str) -> object:
    # PathLock is made of portalocker, whose import costs about 45 ms (it
    # imports importlib.metadata, email, json...): paid only by a program
    # that uses it, not by every `require "ipc.filelock"` (PEP 562).
    if name == "PathLock":
        try:
            from ._path import PathLock
        except OSError as exc:  # EMFILE, say: reading the modules needs descriptors
            raise os_error(exc.errno or errno.EIO) from exc
        globals()["PathLock"] = PathLock
        return PathLock
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
