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
  that is no longer alive.
"""
from __future__ import annotations

import errno
import os
import time
import weakref
from pathlib import Path
from typing import Optional

import posix_ipc

from .._errors import Timeout, from_posix_ipc, os_error
from .._names import SEM_NAME_MAX, os_name
from .._signals import exit_pending
from .._timeout import timeout as check_timeout

__all__ = ["Semaphore", "open", "unlink", "reset", "Ledger",
           "VALUE_SUPPORTED", "VALUE_MAX"]

#: Whether ``Semaphore.value`` works here (posix_ipc's capability flag).
VALUE_SUPPORTED: bool = bool(posix_ipc.SEMAPHORE_VALUE_SUPPORTED)
#: The largest count the OS allows (SEM_VALUE_MAX).
VALUE_MAX: int = int(posix_ipc.SEMAPHORE_VALUE_MAX)

_INVALID = "attempt to use invalid semaphore object"


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
                exit_pending()
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
            exit_pending()
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


# -- ownership records --------------------------------------------------------

def _start_time(pid: int) -> Optional[float]:
    """The start time of a live process, None if it is gone (or a zombie)."""
    import psutil
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # alive, but not ours to inspect
        return -1.0


class Ledger:
    """Ownership records for a semaphore, so units held by dead processes
    can be given back.

        ledger = ipc.sem.Ledger(sem, "/var/run/myapp/jobs.ledger")
        with ledger.hold(timeout=5):      # dec + record ... unrecord + inc
            work()
        ledger.recover()                  # anyone: return dead holders' units

    Each holder appends ``pid start_time`` to the ledger file (under an
    fcntl lock on it, which the kernel releases if the writer dies), and
    removes its line before it increments again.  ``recover()`` increments
    the semaphore once per line whose process is gone (pid reuse is caught
    by the start time) and drops those lines.

    Limits: a holder killed between the decrement and its record (or
    between removing the record and incrementing) is not seen; that window
    lasts as long as the ledger file's lock and write, not an instant (the
    120 s stress run saw 5 such kills in 326).  A supervisor that also
    watches for "no progress and no recorded holder" covers it (see
    tests/test_stress.py).  All parties must go through the ledger.
    """

    def __init__(self, sem: Semaphore, path: str | os.PathLike) -> None:
        self.sem = sem
        self.path = Path(path)

    def _edit(self):
        from ..filelock import PathLock
        return PathLock(self.path, timeout=None)

    def _record(self, pid: int) -> None:
        me = _start_time(pid)
        with self._edit() as fh:
            fh.seek(0, os.SEEK_END)
            fh.write(f"{pid} {me!r}\n".encode())
            fh.flush()

    def _unrecord(self, pid: int) -> None:
        with self._edit() as fh:
            lines = self._lines(fh)
            for i, (p, _t) in enumerate(lines):
                if p == pid:
                    del lines[i]
                    break
            self._write(fh, lines)

    @staticmethod
    def _lines(fh) -> list[tuple[int, float]]:
        fh.seek(0)
        out = []
        for line in fh.read().decode().splitlines():
            parts = line.split()
            if len(parts) == 2:
                try:
                    out.append((int(parts[0]), float(parts[1])))
                except ValueError:
                    pass
        return out

    @staticmethod
    def _write(fh, lines) -> None:
        fh.seek(0)
        fh.truncate()
        fh.write("".join(f"{p} {t!r}\n" for p, t in lines).encode())
        fh.flush()

    def holders(self) -> list[int]:
        """The pids recorded as holding a unit now."""
        if not self.path.exists():
            return []
        with self._edit() as fh:
            return [p for p, _t in self._lines(fh)]

    def acquire(self, timeout: Optional[float] = None) -> None:
        """``sem.acquire(timeout)``, then record this process as a holder."""
        self.sem.acquire(timeout)
        try:
            self._record(os.getpid())
        except BaseException:
            self.sem.release()
            raise

    def release(self) -> None:
        """Remove this process's record, then ``sem.release()``."""
        self._unrecord(os.getpid())
        self.sem.release()

    def hold(self, timeout: Optional[float] = None) -> "_Held":
        """A context manager: ``acquire(timeout)`` ... ``release()``."""
        return _Held(self, timeout)

    def recover(self) -> list[int]:
        """Give back the units of recorded holders that are dead; return
        their pids."""
        if not self.path.exists():
            return []
        dead = []
        with self._edit() as fh:
            keep = []
            for pid, started in self._lines(fh):
                now = _start_time(pid)
                if now is None or (now > 0 and started > 0 and abs(now - started) > 1.0):
                    dead.append(pid)
                else:
                    keep.append((pid, started))
            if dead:
                self._write(fh, keep)
                for _ in dead:
                    self.sem.inc()
        return dead


class _Held:
    def __init__(self, ledger: Ledger, timeout: Optional[float]) -> None:
        self.ledger, self.timeout = ledger, timeout

    def __enter__(self) -> Ledger:
        self.ledger.acquire(self.timeout)
        return self.ledger

    def __exit__(self, *exc) -> None:
        self.ledger.release()

