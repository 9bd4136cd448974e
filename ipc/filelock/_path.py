"""``ipc.filelock.PathLock``: portalocker's path lock, taken with ``lockf``.

A module of its own, imported at the first use of ``PathLock``
(ipc/filelock/__init__.py: ``__getattr__``): portalocker's import costs
about 45 ms, which the byte-range locks and their Lua face do not need.
"""
from __future__ import annotations

import os

import portalocker
from portalocker.portalocker import LockfLocker

from .._errors import os_error, os_errors, timed_out
from .._timeout import timeout as check_timeout
from . import _os

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import IO, Any, TypeAlias

    from portalocker.types import Mode

    _Lock: TypeAlias = portalocker.Lock[IO[Any]]
else:
    _Lock = portalocker.Lock  # not subscriptable in every portalocker that pyproject allows

__all__ = ["PathLock"]


_LOCKF = LockfLocker()


class PathLock(_Lock):
    """portalocker's path lock, taken with ``lockf`` (fcntl record locks)
    instead of its default ``flock``, so it excludes and is excluded by the
    byte-range locks above (and the C LuaIPC) on the whole file.

    ``timeout`` follows the ipc rule (None waits forever, 0 tries once);
    running out raises ``ipc.Timeout``.  ``shared=True`` takes a read lock.
    The file is opened ``"a+b"`` (created if missing, never truncated);
    entering the lock gives that file object.
    """

    def __init__(self, path: str | os.PathLike[str], *, shared: bool = False,
                 timeout: float | None = None, check_interval: float = 0.02,
                 mode: Mode = "a+b") -> None:
        flags = (portalocker.LockFlags.SHARED if shared else portalocker.LockFlags.EXCLUSIVE)
        super().__init__(os.fspath(path), mode, timeout=_pl_timeout(timeout),
                         check_interval=check_interval, fail_when_locked=False,
                         flags=flags | portalocker.LockFlags.NON_BLOCKING)

    def _get_lock(self, fh: IO[Any]) -> IO[Any]:
        _LOCKF.lock(fh, self.flags)
        return fh

    def _release_claimed_fh(self, fh: IO[Any]) -> None:
        try:
            _os.flush(fh)
            _LOCKF.unlock(fh)
        except Exception:  # noqa: BLE001  (closing below drops the lock anyway)
            pass
        super()._release_claimed_fh(fh)  # closes (which drops the lock anyway)

    def acquire(self, timeout: float | None = -1, check_interval: float | None = None,
                fail_when_locked: bool | None = None) -> IO[Any]:
        """Open the file and lock it, waiting at most ``timeout`` seconds
        (-1: the constructor's timeout); ``ipc.Timeout`` if it stays locked.
        Returns the open file."""
        t = self.timeout if timeout == -1 else _pl_timeout(timeout)
        try:
            with os_errors(self.filename):  # opening the file: EMFILE, EACCES...
                return super().acquire(t, check_interval, fail_when_locked)
        except portalocker.AlreadyLocked:
            raise timed_out(t, "the lock file", self.filename) from None
        except portalocker.LockException as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and cause.errno:
                raise os_error(cause.errno, self.filename) from exc
            raise


def _pl_timeout(timeout: float | None) -> float:
    # portalocker reads None as "its default of 5 s"; ours means forever.
    timeout = check_timeout(timeout)
    return float("inf") if timeout is None else timeout
