"""What stands in for a descriptor where the OS gives none, shared by the
Lua loop (``ipc/loop/lua.py``) and asyncio (``ipc/loop/__init__.py``).

A POSIX semaphore, an fcntl lock and a linda (a futex) cannot be polled.  A helper thread per
waited object does the blocking part and then calls ``notify`` (the Lua
loop writes its eventfd, asyncio calls ``call_soon_threadsafe``).  The one
rule: cancellation never loses a unit.  The helper takes the unit and, under
the waiter's lock, either records it as ``taken`` or, if the wait was
cancelled meanwhile, gives it straight back; ``cancel`` under the same lock
either stops the helper before it takes anything or gives back what it
took.  So a unit is either delivered to the task or returned, never both,
never neither.
"""
from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Callable
from time import monotonic

from ..filelock import _os as _lockos

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["SemWaiter", "LockWaiter", "LindaWaiter", "mq_fd"]

#: A semaphore helper waits in ``dec`` slices this long (ipc.sem's own
#: slices inside: 0.05 s growing to 1 s), checking for cancellation between
#: them: a cancelled helper ends within a second.  (A sem_wait can only be
#: ended early by a signal, which a library cannot own: see ipc/sem.)
SEM_SLICE = 1.0
#: A lock helper retries F_SETLK with this back-off (seconds), woken at
#: once by a cancel: fcntl's F_SETLKW cannot be ended early either.
LOCK_BACKOFF = (0.001, 0.05)


class _Waiter:
    """A helper thread's wait on one object; ``notify()`` once it ended."""

    #: Whether ``_wait`` itself records ``taken`` under the lock (so that
    #: a cancel and the take cannot cross): then ``_run`` leaves it be.
    TAKEN_BY_WAIT = False

    def __init__(self, notify: Callable[[], None]) -> None:
        self.notify = notify
        self.lock = threading.Lock()
        self.cancelled = False
        self.taken = False
        self.error: BaseException | None = None
        self.wake = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True, name="ipc.loop helper")

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        try:
            got = self._wait()
        except BaseException as exc:  # noqa: BLE001  (reported to the waiting task)
            with self.lock:
                self.error = exc
                cancelled = self.cancelled
        else:
            if not got:  # cancelled before taking anything
                return
            with self.lock:
                cancelled = self.cancelled
                if self.TAKEN_BY_WAIT:
                    pass                 # recorded (or given back by cancel) already
                elif cancelled:
                    self._give_back()
                else:
                    self.taken = True
        if not cancelled:
            self.notify()

    def _wait(self) -> bool:
        raise NotImplementedError

    def _give_back(self) -> None:
        raise NotImplementedError

    def result(self) -> bool:
        """After notify: True (the unit is the caller's now), or the error."""
        if self.error is not None:
            raise self.error
        return self.taken

    def cancel(self, give_back: bool = True) -> bool:
        """Stop waiting.  Returns True if the helper had taken the unit and
        ``give_back`` is false (the caller keeps it: a timeout that raced a
        success); otherwise whatever was taken is returned."""
        with self.lock:
            self.cancelled = True
            self.wake.set()
            if self.taken:
                self.taken = False
                if not give_back:
                    return True
                self._give_back()
        return False

    def join(self) -> None:
        # A Ctrl-C inside start() can leave a thread that never started.
        if self.thread.ident is not None:
            self.thread.join()


class SemWaiter(_Waiter):
    """dec() of an ipc Semaphore (``ipc.sem.Semaphore``) in a helper thread."""

    def __init__(self, sem: Any, notify: Callable[[], None]) -> None:
        super().__init__(notify)
        self.sem = sem

    def _wait(self) -> bool:
        while True:
            with self.lock:
                if self.cancelled:
                    return False
            if self.sem.dec(SEM_SLICE):
                return True

    def _give_back(self) -> None:
        try:
            self.sem.inc()
        except (OSError, ValueError):  # closed meanwhile: ipc.sem gave it back itself
            pass


class LockWaiter(_Waiter):
    """An fcntl record lock on ``fd`` taken by a helper thread.  (fcntl
    locks belong to the process, not the thread, so the task holds it.)"""

    TAKEN_BY_WAIT = True

    def __init__(self, fd: int, shared: bool, offset: int, nbytes: int,
                 notify: Callable[[], None]) -> None:
        super().__init__(notify)
        self.fd, self.offset, self.nbytes = fd, offset, nbytes
        self.op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX

    def _wait(self) -> bool:
        pause, most = LOCK_BACKOFF
        while True:
            # The try under the lock: a cancel waits for it, so no unlock of
            # ours can ever hit a lock the process took after the cancel.
            with self.lock:
                if self.cancelled:
                    return False
                if _lockos.trylock(self.fd, self.op, self.offset, self.nbytes):
                    self.taken = True
                    return True
            self.wake.wait(pause)
            pause = min(pause * 2, most)

    def _give_back(self) -> None:
        try:
            _lockos.lock(self.fd, fcntl.LOCK_UN, self.offset, self.nbytes)
        except OSError:  # the file was closed: its locks went with it
            pass


class LindaWaiter(_Waiter):
    """A helper thread that sleeps on a linda's futex until ``ready(state)``
    holds (``ipc.linda.receivable``/``sendable``), then notifies.  It takes
    nothing: the waiting task retries the non-blocking call itself, in its
    own thread, and may find another process was first (then it waits
    again).

    Why not take the value here, as SemWaiter takes its unit?  A value that
    a helper took for a wait cancelled meanwhile would have to be given
    back, and a linda cannot put it back where it was: it would go to the
    end of its key's FIFO (reordering the key for every other receiver),
    and a send would have to be undone after other processes saw it.  A
    helper that only watches has nothing to give back, so a cancel at any
    instant loses nothing, and the values are only ever taken in the Lua
    (or asyncio) thread, by the call the task made.  The price is a retry
    that may find the value gone, and a flock per wake for the probe.

    ``timeout`` ends the helper's own wait (it notifies nobody then): the
    caller's timer ends the task's wait at the same deadline, so a timed
    out wait needs no wake-up of the futex.  A cancel before the deadline
    wakes the futex on the helper's bits (``Linda.wake``: its peers in
    other processes look once and sleep on).  A cancel that lands between
    the helper's look and its sleep is missed by that wake: the helper
    then lingers until the next change of its keys or the end of its slice
    (``ipc.linda._os.SLICE``, 1 s), holding nothing, so nobody joins it.
    """

    def __init__(self, linda: Any, ready: Callable[[Any], bool], bits: int,
                 timeout: float | None, notify: Callable[[], None]) -> None:
        super().__init__(notify)
        self.linda, self.ready, self.bits = linda, ready, bits
        self.deadline = None if timeout is None else monotonic() + timeout
        self.timeout = timeout

    def _wait(self) -> bool:
        ready, me = self.ready, self

        def probe(state: Any) -> tuple[bool | None, int]:
            if me.cancelled:            # (a bool, set once: no lock needed)
                return False, 0
            return (True if ready(state) else None), 0

        return self.linda.transact_wait(probe, self.bits, self.timeout) is True

    def _give_back(self) -> None:
        pass                            # it took nothing

    def cancel(self, give_back: bool = True) -> bool:
        kept = super().cancel(give_back)
        if self.thread.is_alive() and (self.deadline is None or monotonic() < self.deadline):
            with contextlib.suppress(OSError, ValueError):
                self.linda.wake(self.bits)
        return kept

    def join(self) -> None:
        pass                            # it holds nothing (see above)


def mq_fd(q: Any) -> int:
    """The descriptor of an ipc.mq handle (posix_ipc's ``mqd``: on Linux a
    descriptor that polls readable with a message, writable with room)."""
    send, _receive = q.os_calls()
    return int(send.__self__.mqd)
