"""ipc.loop: waiting on many ipc objects at once.

For Lua it is the event loop of ``require "ipc.loop"`` (``face.lua``, which
sleeps in one epoll made by ``lua.py``).  For Python it is asyncio: the
functions here are coroutines over the same objects, for any asyncio loop::

    await ipc.loop.acquire(sem, timeout=1.0)      # ipc.Timeout when it runs out
    async with ipc.loop.holding(sem): ...
    data, prio = await ipc.loop.receive(q)
    await ipc.loop.send(q, b"job")
    code = await ipc.loop.wait(process)           # or a Pipeline
    async with ipc.loop.locked(f, "w"): ...

They are functions of this module, not ``async`` twins on every handle, so
the handles keep one (blocking) API and what stands in for a missing
descriptor has one home (``_standin.py``) for Lua and Python alike.  A queue
is polled through its descriptor (``loop.add_reader``); a semaphore and an
fcntl lock have none, so a helper thread waits and wakes the loop.

Cancellation, ``asyncio.wait_for`` included, never loses a unit or a
message: a message is taken only by a non-blocking receive once the
descriptor is ready, and a unit or lock a helper took for a cancelled wait
is given back.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import select
import weakref
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from .._errors import timed_out
from .._timeout import Deadline, timeout as check_timeout
from ._standin import LockWaiter, SemWaiter, mq_fd

if TYPE_CHECKING:
    from ..mq import MessageQueue
    from ..proc import Pipeline, Process
    from ..sem import Semaphore

__all__ = ["acquire", "holding", "receive", "send", "wait", "locked"]


async def _helper(w: SemWaiter | LockWaiter, timeout: float | None) -> bool:
    """Run a stand-in's helper thread and await its end, at most
    ``timeout`` seconds.  A cancel (a timeout is one) gives back whatever
    the helper took, even if it took it just before."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def done() -> None:
        if not fut.done():
            fut.set_result(None)

    def notify() -> None:           # from the helper thread
        loop.call_soon_threadsafe(done)

    w.notify = notify
    w.start()
    try:
        await asyncio.wait_for(asyncio.shield(fut), timeout)
    except BaseException:
        w.cancel(give_back=True)
        raise
    return w.result()


async def acquire(sem: Semaphore, timeout: float | None = None) -> None:
    """Take a unit of ``sem`` (an ``ipc.sem.Semaphore``) without blocking
    the event loop; ``ipc.Timeout`` if ``timeout`` runs out first."""
    from ..sem import Semaphore
    if not isinstance(sem, Semaphore):
        raise TypeError(f"acquire() takes an ipc.sem.Semaphore, not {type(sem).__name__}")
    t = check_timeout(timeout)
    if sem.dec(0):
        return
    if t == 0:
        raise timed_out(timeout, "semaphore", sem.name)
    try:
        await _helper(SemWaiter(sem, lambda: None), t)
    except asyncio.TimeoutError:
        raise timed_out(timeout, "semaphore", sem.name) from None


@contextlib.asynccontextmanager
async def holding(sem: Semaphore, timeout: float | None = None) -> AsyncIterator[Semaphore]:
    """``async with holding(sem):`` a unit of ``sem`` for the block."""
    await acquire(sem, timeout)
    try:
        yield sem
    finally:
        sem.inc()


class _Ready:
    """Futures waiting for one descriptor in one loop.  asyncio keeps one
    reader (writer) per descriptor, so the many coroutines on one queue
    share it: each readiness wakes them all, and each tries again (only
    one gets a message; the others wait on)."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[int, bool], set[asyncio.Future[None]]] = {}

    async def wait(self, fd: int, write: bool, timeout: float | None) -> None:
        loop = asyncio.get_running_loop()
        key = (fd, write)
        fut: asyncio.Future[None] = loop.create_future()
        futs = self.waiting.get(key)
        if futs is None:
            futs = self.waiting[key] = set()
            (loop.add_writer if write else loop.add_reader)(fd, self._fire, key)
        futs.add(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            futs.discard(fut)
            if not futs and self.waiting.get(key) is futs:
                del self.waiting[key]
                (loop.remove_writer if write else loop.remove_reader)(fd)

    def _fire(self, key: tuple[int, bool]) -> None:
        for f in self.waiting.get(key, ()):
            if not f.done():
                f.set_result(None)


#: One per event loop (a loop's readers are its own); weak, so a closed
#: loop that is dropped takes its entry with it.
_ready: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ready] = \
    weakref.WeakKeyDictionary()


def _readiness() -> _Ready:
    loop = asyncio.get_running_loop()
    r = _ready.get(loop)
    if r is None:
        r = _ready[loop] = _Ready()
    return r


async def _mq(q: MessageQueue, write: bool, attempt: Any, timeout: float | None) -> Any:
    from ..mq import MessageQueue
    if not isinstance(q, MessageQueue):
        raise TypeError(f"takes an ipc.mq.MessageQueue, not {type(q).__name__}")
    t = check_timeout(timeout)
    deadline = Deadline(t)
    while True:
        try:
            return attempt()              # never waits: nothing taken until it succeeds
        except TimeoutError:              # ipc.Timeout: full (empty) now
            if t == 0 or deadline.expired:
                raise
        try:
            await _readiness().wait(mq_fd(q), write, deadline.remaining())
        except asyncio.TimeoutError:
            raise timed_out(timeout, "room in queue" if write else "a message in queue",
                            q.name) from None


async def receive(q: MessageQueue, timeout: float | None = None) -> tuple[bytes, int]:
    """``q.receive()`` without blocking the event loop: ``(data, priority)``."""
    r: tuple[bytes, int] = await _mq(q, False, lambda: q.receive(0), timeout)
    return r


async def send(q: MessageQueue, message: bytes | bytearray | memoryview,
               timeout: float | None = None, priority: int = 0) -> None:
    """``q.send()`` without blocking the event loop."""
    bytes(message)                                    # TypeError before any wait
    await _mq(q, True, lambda: q.send(message, 0, priority), timeout)


async def wait(h: Process | Pipeline, timeout: float | None = None) -> int:
    """``h.wait()`` without blocking the event loop: input fed, output to
    the callback, the child reaped; its returncode (``ipc.Timeout`` if
    ``timeout`` runs out, the handle left to be waited for again)."""
    from ..proc import Pipeline, Process
    if not isinstance(h, (Process, Pipeline)):
        raise TypeError(f"wait() takes a Process or Pipeline, not {type(h).__name__}")
    t = check_timeout(timeout)
    deadline = Deadline(t)
    while True:
        h.step(0)
        if h.finished:
            return int(h.returncode)  # type: ignore[arg-type]  # finished: set
        if deadline.expired:
            raise timed_out(timeout, "the process")
        what = h.descriptors()
        if what is None:
            continue
        fds, pidfds = what
        try:
            r = _readiness()
            waits = [asyncio.ensure_future(r.wait(fd, bool(ev & select.POLLOUT), None))
                     for fd, ev in fds]
            waits += [asyncio.ensure_future(r.wait(fd, False, None)) for fd in pidfds]
            try:
                await asyncio.wait(waits, timeout=deadline.remaining(),
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
        finally:
            for fd in pidfds:
                os.close(fd)


@contextlib.asynccontextmanager
async def locked(file: Any, mode: str = "rw", offset: int = 0, nbytes: int = 0,
                 timeout: float | None = None) -> AsyncIterator[None]:
    """``async with locked(f, "w"):`` an fcntl record lock, as
    ``ipc.filelock.locked``, waited for without blocking the event loop."""
    from .. import filelock
    fd = filelock.fileno(file)
    t = check_timeout(timeout)
    if not filelock.trylock(file, mode, offset, nbytes):   # checks mode and range
        shared = mode == "r"
        if t == 0:
            raise timed_out(timeout, "lock", getattr(file, "name", fd))
        try:
            await _helper(LockWaiter(fd, shared, offset, nbytes, lambda: None), t)
        except asyncio.TimeoutError:
            raise timed_out(timeout, "lock", getattr(file, "name", fd)) from None
    try:
        yield
    finally:
        filelock.unlock(file, offset, nbytes)


def __dir__() -> list[str]:
    return sorted(__all__)
