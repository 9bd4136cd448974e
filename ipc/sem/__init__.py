"""Named POSIX counting semaphores (``sem_open("/name")``) on posix_ipc.

    import ipc.sem

    s = ipc.sem.open("jobs", 1)        # n != 0: create (fails if it exists)
    t = ipc.sem.open("jobs")           # n == 0: open an existing one
    with s:                            # dec() ... inc()
        ...
    s.dec(timeout=0.5)                 # True / False
    s.acquire(timeout=0.5)             # raises ipc.Timeout instead of False
    s.close()                          # the creator's close also unlinks

The OS name is ``"/" + name`` (mode 0600), so the C LuaIPC and any C
program using ``sem_open("/name")`` meet the same semaphore.

A semaphore is *not* given back when the process holding it dies (POSIX
semaphores have no ``SEM_UNDO``, posix_ipc issue #53).  Two ways out:

* ``reset(value)``: a supervisor that knows the holders are gone puts the
  count back (the watchdog pattern of posix_ipc#53);
* ``Ledger``: holders record themselves (pid and start time) in a small
  ledger file; ``Ledger.recover()`` gives back one unit per recorded holder
  that is no longer alive (see ``ipc/sem/_ledger.py``).
"""
from __future__ import annotations

import errno
import os
import time
import weakref
from typing import TYPE_CHECKING, Optional

import posix_ipc

from .._errors import Timeout, from_posix_ipc, os_error
from .._names import SEM_NAME_MAX, os_name
from .._timeout import timeout as check_timeout

if TYPE_CHECKING:
    from ._ledger import Ledger

__all__ = ["Semaphore", "open", "unlink", "reset", "Ledger",
           "VALUE_SUPPORTED", "VALUE_MAX"]

#: Whether ``Semaphore.value`` works here (posix_ipc's capability flag).
VALUE_SUPPORTED: bool = bool(posix_ipc.SEMAPHORE_VALUE_SUPPORTED)
#: The largest count the OS allows (SEM_VALUE_MAX).
VALUE_MAX: int = int(posix_ipc.SEMAPHORE_VALUE_MAX)

_INVALID = "attempt to use invalid semaphore object"


def __getattr__(name: str):
    # Ledger imports psutil (tens of ms): only for programs that use it.
    if name == "Ledger":
        from ._ledger import Ledger
        return Ledger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _release(sem: posix_ipc.Semaphore, unlink_name: Optional[str]) -> None:
    """Finalizer and close(): never raises."""
    try:
        sem.close()
    except Exception:
        pass
    if unlink_name is not None:
        try:
            posix_ipc.unlink_semaphore(unlink_name)
        except Exception:  # already unlinked by someone else: fine
            pass


class Semaphore:
    """A handle to a named POSIX semaphore (see the module docstring).

    The handle is a context manager that decrements on entry and
    increments on exit.  ``close()`` is idempotent; a handle that created
    the semaphore unlinks the name when closed or collected, as LuaIPC.
    """

    __slots__ = ("name", "os_name", "owner", "_sem", "_finalizer", "__weakref__")

    def __init__(self, name: str | bytes, n: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        path = os_name(name, SEM_NAME_MAX)
        if n < 0 or n > VALUE_MAX:  # what sem_open says of such a value
            raise os_error(errno.EINVAL, path)
        creating = n != 0
        try:
            if creating:
                sem = posix_ipc.Semaphore(path, posix_ipc.O_CREX, 0o600, n)
            else:
                sem = posix_ipc.Semaphore(path)
        except Exception as exc:
            raise from_posix_ipc(exc, path, creating=creating) from None
        self.name = os.fsdecode(name)
        self.os_name = path
        self.owner = creating
        self._sem: Optional[posix_ipc.Semaphore] = sem
        self._finalizer = weakref.finalize(self, _release, sem, path if creating else None)

    # -- the LuaIPC verbs ------------------------------------------------
    def _checked(self) -> posix_ipc.Semaphore:
        sem = self._sem
        if sem is None:
            raise ValueError(_INVALID)
        return sem

    def inc(self) -> None:
        """Increment the count (sem_post)."""
        sem = self._checked()
        try:
            sem.release()
        except Exception as exc:
            raise from_posix_ipc(exc, self.os_name) from None

    def dec(self, timeout: Optional[float] = None) -> bool:
        """Decrement the count, waiting while it is 0.

        ``timeout`` None (or negative) waits forever, 0 tries once, > 0
        waits at most that many seconds.  Returns False when it ran out.
        A signal whose handler returns normally does not end the wait
        (PEP 475); one whose handler raises (Ctrl-C: KeyboardInterrupt)
        does.
        """
        sem = self._checked()
        return _wait(sem, check_timeout(timeout), self.os_name)

    def acquire(self, timeout: Optional[float] = None) -> None:
        """``dec`` that raises ``ipc.Timeout`` instead of returning False."""
        if not self.dec(timeout):
            raise os_error(errno.ETIMEDOUT, self.os_name)

    release = inc

    @property
    def value(self) -> int:
        """The current count (where the OS supports reading it)."""
        sem = self._checked()
        if not VALUE_SUPPORTED:  # pragma: no cover (macOS)
            raise NotImplementedError("this OS cannot read a semaphore's value")
        return sem.value

    # -- life cycle --------------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._sem is None

    def close(self) -> None:
        """Close the handle (and unlink the name if this handle created it).

        Idempotent.
        """
        if self._sem is not None:
            self._sem = None
            self._finalizer()

    def unlink(self) -> None:
        """Remove the name now (open handles keep working)."""
        unlink(self.name)

    def reset(self, value: int) -> int:
        """Set the count to ``value``; return the count found before.

        For a supervisor that knows the holders are gone (a semaphore is
        not released when its holder dies).  Not atomic against processes
        using the semaphore at the same time: run it when they are idle.
        POSIX has no "set the value": it takes one OS call per unit taken
        away or given, so it is meant for small counts (a value near
        ``VALUE_MAX`` takes minutes).
        """
        sem = self._checked()
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= VALUE_MAX:
            raise ValueError(f"value must be an int in 0..{VALUE_MAX}")
        found = 0
        while _wait(sem, 0, self.os_name):
            found += 1
        for _ in range(value):
            sem.release()
        return found

    def __enter__(self) -> "Semaphore":
        self.dec()
        return self

    def __exit__(self, *exc) -> None:
        self.inc()

    def __repr__(self) -> str:
        state = "closed" if self._sem is None else ("owner" if self.owner else "open")
        return f"<ipc.sem.Semaphore {self.name!r} {state}>"

    def __reduce__(self):
        raise TypeError("a Semaphore handle cannot be pickled; open it by name")


def _wait(sem: posix_ipc.Semaphore, timeout: Optional[float], name: str) -> bool:
    """sem_wait / sem_trywait / sem_timedwait with PEP 475 retries."""
    if timeout is None:
        while True:
            try:
                sem.acquire()
                return True
            except posix_ipc.SignalError:
                continue  # its handler ran and did not raise: wait on
            except posix_ipc.ExistentialError:
                raise ValueError(_INVALID) from None
    deadline = time.monotonic() + timeout
    while True:
        try:
            sem.acquire(timeout)
            return True
        except posix_ipc.BusyError:
            return False
        except posix_ipc.SignalError:
            timeout = max(0.0, deadline - time.monotonic())
        except posix_ipc.ExistentialError:
            raise ValueError(_INVALID) from None
        except Exception as exc:
            raise from_posix_ipc(exc, name) from None


def open(name: str | bytes, n: int = 0) -> Semaphore:  # noqa: A001 (LuaIPC's verb)
    """Create (``n != 0``, exclusive) or open (``n == 0``) a semaphore."""
    return Semaphore(name, n)


def unlink(name: str | bytes) -> None:
    """Remove the semaphore ``name`` (FileNotFoundError if there is none)."""
    path = os_name(name, SEM_NAME_MAX)
    try:
        posix_ipc.unlink_semaphore(path)
    except Exception as exc:
        raise from_posix_ipc(exc, path) from None


def reset(name: str | bytes, value: int) -> int:
    """Set the count of the existing semaphore ``name`` (see Semaphore.reset)."""
    handle = Semaphore(name)
    try:
        return handle.reset(value)
    finally:
        handle.close()
