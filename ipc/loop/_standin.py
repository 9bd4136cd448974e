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
import os
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

#: A helper thread that is at work is named BUSY; one kept for the next
#: wait, IDLE.
BUSY, IDLE = "ipc.loop helper", "ipc.loop helper (idle)"
#: Idle helpers are kept, at most IDLE_MAX of them, each at most
#: IDLE_SECONDS: starting a thread costs about 65 us of CPU here, which a
#: loop's semaphore ping-pong paid at every round trip (2.8x the blocking
#: ping-pong, bench/cases/loop.py).  An idle helper sleeps in a lock.
#: IDLE_MAX is high so that a burst of waits (1000 tasks each on its own
#: semaphore) finds its threads again next time: 259 -> 125 us of CPU per
#: wake in bench/cases/loop.py, where keeping 8 made each round start and
#: end ~990 threads (an 8 MiB stack mapped and unmapped each).  An idle
#: thread costs no CPU and some 16 KiB of memory, until IDLE_SECONDS end it.
IDLE_MAX = 1024
IDLE_SECONDS = 5.0


class _Worker:
    """One helper thread, and the job it is given (``go`` is released
    when it has one)."""

    __slots__ = ("go", "job", "thread")

    def __init__(self, job: Callable[[], None]) -> None:
        self.go = threading.Lock()
        self.go.acquire()
        self.job: Callable[[], None] | None = job
        self.thread = threading.Thread(target=_serve, args=(self,), daemon=True, name=BUSY)


class _Idle:
    """The idle helpers of this process (a child made by fork() has none:
    threads do not survive a fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.workers: list[_Worker] = []


_idle = _Idle()


def _forked() -> None:
    global _idle
    _idle = _Idle()


os.register_at_fork(after_in_child=_forked)


def _run_in_helper(job: Callable[[], None]) -> None:
    """Run ``job`` in a helper thread: an idle one, else a new one
    (RuntimeError if none can start)."""
    idle = _idle
    with idle.lock:
        w = idle.workers.pop() if idle.workers else None
    if w is None:
        _Worker(job).thread.start()
        return
    w.job = job
    w.thread.name = BUSY            # (before it runs: a busy helper is never seen idle)
    w.go.release()


def _serve(w: _Worker) -> None:
    """A helper thread: its job, then the next one it is given while it
    is idle, until IDLE_SECONDS pass without one or IDLE_MAX others idle."""
    while True:
        job, w.job = w.job, None
        if job is not None:
            job()                   # (one that raises ends this helper: excepthook)
        idle = _idle
        w.thread.name = IDLE
        with idle.lock:
            if len(idle.workers) >= IDLE_MAX:
                return
            idle.workers.append(w)
        if not w.go.acquire(timeout=IDLE_SECONDS):
            with idle.lock:
                if w in idle.workers:   # nobody took it: it ends
                    idle.workers.remove(w)
                    return
            w.go.acquire()          # taken meanwhile: its job is coming


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
        self.started = False
        self.finished = threading.Event()

    def start(self) -> None:
        _run_in_helper(self._run)
        self.started = True

    def _run(self) -> None:
        try:
            self._work()
        finally:
            self.finished.set()

    def _work(self) -> None:
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
        """Wait until the helper is done with this wait."""
        # A Ctrl-C inside start() can leave a wait that never started.
        if self.started:
            self.finished.wait()


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
        if not self.finished.is_set() and (self.deadline is None or monotonic() < self.deadline):
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
