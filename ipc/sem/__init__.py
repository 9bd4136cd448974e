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

Threads: ``close()`` while another thread waits in ``dec()`` ends that wait
with ``ValueError("semaphore closed while waiting")`` (within a second)
and takes no unit; the OS handle is closed when the last such call has left.
"""
from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from functools import partial
from time import monotonic

import posix_ipc

from .._errors import from_posix_ipc, timed_out
from .._inflight import InFlight
from .._names import SEM_NAME_MAX, os_name
from .._owned import Owned
from .._signals import exit_pending
from .._timeout import Deadline, timeout as check_timeout
from . import _os
from ._os import VALUE_MAX, VALUE_SUPPORTED

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import NoReturn

    from typing_extensions import Self

    from ._ledger import Ledger

__all__ = ["Semaphore", "open", "unlink", "reset", "Ledger",
           "VALUE_SUPPORTED", "VALUE_MAX"]

#: What every use of a closed handle says (LuaIPC's words; the Lua core
#: says them too).
INVALID = "attempt to use invalid semaphore object"
#: What a dec() says when another thread closed its handle during the wait.
#: A ValueError, as for any use of a closed handle: the program closed a
#: handle it was still using, which is misuse, not an OS failure.
_CLOSED_WHILE_WAITING = "semaphore closed while waiting"

#: A blocked dec() looks whether its handle was closed after 0.05 s, then
#: twice as long after each look, at least once a second (see _wait for why
#: it cannot be told).
_SLICE_FIRST, _SLICE_MAX = 0.05, 1.0


def __getattr__(name: str) -> type[Ledger]:
    # Ledger imports psutil (tens of ms): only for programs that use it.
    if name == "Ledger":
        from ._ledger import Ledger
        return Ledger
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _release(owned: Owned | None) -> None:
    """Finalizer and close(): the creator's name goes (ipc/_owned.py: only
    in the creating process, at most once).  Never raises.  (sem_close is
    not done here but by the handle's InFlight, once no thread waits on the
    semaphore any more.)"""
    if owned is not None:
        owned.release()


class Semaphore:
    """A handle to a named POSIX semaphore (see the module docstring).

    The handle is a context manager that decrements on entry and
    increments on exit.  ``close()`` is idempotent; a handle that created
    the semaphore unlinks the name when closed or collected, as LuaIPC.
    One handle may be shared by threads; closing it while others wait in
    ``dec()`` ends their waits with a ValueError.
    """

    __slots__ = ("__weakref__", "_finalizer", "_inflight", "_owned", "_sem", "name", "os_name")

    def __init__(self, name: str | bytes, n: int = 0) -> None:
        if isinstance(n, bool) or not isinstance(n, int):
            raise TypeError(f"n must be an int, not {type(n).__name__}")
        path = os_name(name, SEM_NAME_MAX)
        sem = _os.open(path, n)
        self.name = os.fsdecode(name)
        self.os_name = path
        # The name is the creator's to remove (ipc/_owned.py: only in the
        # creating process, at most once).
        self._owned = Owned(partial(_os.unlink, path)) if n != 0 else None
        self._sem: posix_ipc.Semaphore | None = sem
        self._inflight = InFlight(sem.close)
        # sem_close when the handle is collected (no dec() can be in flight
        # then: each holds the handle), but not at exit, where a daemon
        # thread may still wait on it; exit unmaps it anyway.
        weakref.finalize(self, self._inflight.close).atexit = False
        self._finalizer = weakref.finalize(self, _release, self._owned)

    # -- the LuaIPC verbs ------------------------------------------------
    def inc(self) -> None:
        """Increment the count (sem_post)."""
        sem = self._sem
        if sem is None:
            raise ValueError(INVALID)
        try:
            sem.release()  # posix_ipc keeps the GIL here: no close() can run under it
        except Exception as exc:  # noqa: BLE001  (translated once, at the OS boundary)
            raise from_posix_ipc(exc, self.os_name) from None

    def dec(self, timeout: float | None = None) -> bool:
        """Decrement the count, waiting while it is 0.

        ``timeout`` None (or negative) waits forever, 0 tries once, > 0
        waits at most that many seconds.  Returns False when it ran out.
        A signal whose handler returns normally does not end the wait
        (PEP 475); one whose handler raises (Ctrl-C: KeyboardInterrupt)
        does.  ``close()`` from another thread ends it with a ValueError,
        and a unit taken as the handle was closed is given back.
        """
        # The first slice of the wait (see _wait) is the whole call when the
        # count is not 0, or is posted to soon: one sem_timedwait.  Only a
        # call that must wait on makes a Deadline (from `start`).
        first = _SLICE_FIRST
        start = 0.0
        if timeout is not None:
            timeout = check_timeout(timeout)
            if timeout is not None:
                start = monotonic()
                first = min(first, timeout)
        calls = self._inflight.calls
        calls.append(None)                    # see ipc/_inflight.py
        try:
            sem = self._sem
            if sem is None:
                raise ValueError(INVALID)
            try:
                sem.acquire(first)            # 0: sem_trywait
            except (posix_ipc.BusyError, posix_ipc.SignalError) as exc:
                if type(exc) is posix_ipc.SignalError:
                    exit_pending()  # the SystemExit posix_ipc swallowed (ipc/_signals.py)
                if timeout == 0 or not _wait(self, sem, Deadline(timeout, start)):
                    return False
            except Exception as exc:  # noqa: BLE001  (translated once, at the OS boundary)
                raise from_posix_ipc(exc, self.os_name) from None
            if self._sem is None:
                # Closed while we took the unit: nobody can inc() through
                # this handle now, so keep nothing.
                sem.release()
                raise ValueError(_CLOSED_WHILE_WAITING)
            return True
        finally:
            calls.pop()
            if self._sem is None:
                self._inflight.close()

    def acquire(self, timeout: float | None = None) -> None:
        """``dec`` that raises ``ipc.Timeout`` instead of returning False."""
        if not self.dec(timeout):
            raise timed_out(timeout, "semaphore", self.name)

    release = inc

    def os_calls(self) -> tuple[Callable[[], None], Callable[..., None]]:
        """posix_ipc's own bound ``release`` and ``acquire`` of this
        handle's semaphore (sem_post; sem_wait, or sem_timedwait given
        seconds), for a face that must pay no frame of ours per call: the
        Lua face's ``inc()`` and blocking ``dec()``.

        They are the bare OS calls: they raise posix_ipc's exceptions
        (``ipc._errors.from_posix_ipc`` translates them), and they are not
        counted in flight, so a ``close()`` in another thread while one of
        them waits is undefined behaviour (sem_close under sem_wait).  The
        Lua face may use them because its handle is reachable only from its
        Lua state, which runs one thread at a time.
        """
        sem = self._sem
        if sem is None:
            raise ValueError(INVALID)
        return sem.release, sem.acquire

    @property
    def value(self) -> int:
        """The current count (where the OS supports reading it)."""
        sem = self._sem
        if sem is None:
            raise ValueError(INVALID)
        if not VALUE_SUPPORTED:  # pragma: no cover (macOS)
            raise NotImplementedError("this OS cannot read a semaphore's value")
        return sem.value

    # -- life cycle --------------------------------------------------------
    @property
    def owner(self) -> bool:
        """True while this handle will remove the name when closed: in the
        creating process, until ``unlink()`` or ``close()``."""
        return self._owned is not None and self._owned.held

    @property
    def created(self) -> bool:
        """Whether this handle created the object (fixed for its life; as
        ``MessageQueue.created``).  ``owner`` says whether it will still
        remove the name."""
        return self._owned is not None

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._sem is None

    def close(self) -> None:
        """Close the handle (and unlink the name if this handle created it).

        Idempotent.  Threads waiting in ``dec()`` on this handle get a
        ValueError; the semaphore itself (sem_close) is closed when the last
        of them has left.
        """
        if self._sem is not None:
            self._sem = None
            self._finalizer()
            self._inflight.close()

    def unlink(self) -> None:
        """Remove the name now (open handles keep working).  The creator's
        close then leaves the name alone: it may be someone else's by then.
        A closed handle raises ValueError, as every method of one does
        (``ipc.sem.unlink(name)`` removes a name without a handle)."""
        if self._sem is None:
            raise ValueError(INVALID)
        if self._owned is not None:
            self._owned.detach()
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
        if self._sem is None:
            raise ValueError(INVALID)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= VALUE_MAX:
            raise ValueError(f"value must be an int in 0..{VALUE_MAX}")
        found = 0
        while self.dec(0):
            found += 1
        for _ in range(value):
            self.inc()
        return found

    def __enter__(self) -> Self:
        self.dec()
        return self

    def __exit__(self, *exc: object) -> None:
        self.inc()

    def __repr__(self) -> str:
        state = "closed" if self._sem is None else ("owner" if self.owner else "open")
        return f"<ipc.sem.Semaphore {self.name!r} {state}>"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a Semaphore handle cannot be pickled; open it by name")


def _wait(s: Semaphore, sem: posix_ipc.Semaphore, deadline: Deadline) -> bool:
    """The rest of ``s.dec()`` after its first slice: True once a unit is
    taken, False at the ``deadline``, ValueError when s is closed meanwhile.

    Why slices: a POSIX semaphore cannot be waited on together with
    anything else (it is no descriptor), and only a signal ends a sem_wait
    early.  A library cannot own a signal for that: Python installs
    handlers only from the main thread, dispositions are process-wide (the
    program may use the signal itself), and a signal sent just before the
    waiter enters sem_wait is lost.  The slices grow (0.05 s, 0.1 s, ...,
    1 s), so a close() ends a short wait quickly and a long one within a
    second, and a long wait wakes once a second: measured on a VM where a
    timer wake-up costs 40-80 us, 0.08-0.17 ms of CPU a second per waiting
    thread over a 10 s wait (fixed 0.1 s slices: 0.8-1.1 ms).
    """
    piece = 2 * _SLICE_FIRST
    while True:
        if s._sem is None:
            raise ValueError(_CLOSED_WHILE_WAITING)
        left = deadline.remaining()
        if left is None:
            t = piece
        elif left == 0:
            return False
        else:
            t = min(left, piece)
        piece = min(piece * 2, _SLICE_MAX)
        try:
            sem.acquire(t)
            return True
        except posix_ipc.BusyError:
            pass  # a slice ran out: wait on
        except posix_ipc.SignalError:
            exit_pending()  # the SystemExit posix_ipc swallowed (ipc/_signals.py)
            # else a signal's handler returned: wait on (PEP 475)
        except Exception as exc:  # noqa: BLE001  (translated once, at the OS boundary)
            raise from_posix_ipc(exc, s.os_name) from None


def open(name: str | bytes, n: int = 0) -> Semaphore:
    """Create (``n != 0``, exclusive) or open (``n == 0``) a semaphore."""
    return Semaphore(name, n)


def unlink(name: str | bytes) -> None:
    """Remove the semaphore ``name`` (FileNotFoundError if there is none)."""
    _os.unlink(os_name(name, SEM_NAME_MAX))


def reset(name: str | bytes, value: int) -> int:
    """Set the count of the existing semaphore ``name`` (see Semaphore.reset)."""
    handle = Semaphore(name)
    try:
        return handle.reset(value)
    finally:
        handle.close()


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
