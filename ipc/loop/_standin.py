"""What stands in for a descriptor where the OS gives none, shared by the
Lua loop (``ipc/loop/lua.py``) and asyncio (``ipc/loop/__init__.py``).

A POSIX semaphore and an fcntl lock cannot be polled.  A helper thread per
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

import fcntl
import threading
from collections.abc import Callable
from typing import Any

from ..filelock import _os as _lockos

__all__ = ["SemWaiter", "LockWaiter", "mq_fd"]

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


def mq_fd(q: Any) -> int:
    """The descriptor of an ipc.mq handle (posix_ipc's ``mqd``: on Linux a
    descriptor that polls readable with a message, writable with room)."""
    send, _receive = q.os_calls()
    return int(send.__self__.mqd)
