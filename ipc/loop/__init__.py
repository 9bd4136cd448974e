"""ipc.loop: waiting on many ipc objects at once.

For Lua it is the event loop of ``require "ipc.loop"`` (``face.lua``, which
sleeps in one epoll made by ``lua.py``).  For Python it is asyncio: the
functions here are coroutines over the same objects, for any asyncio loop::

    await ipc.loop.acquire(sem, timeout=1.0)      # ipc.Timeout when it runs out
    async with ipc.loop.holding(sem): ...
    data, prio = await ipc.loop.receive(q)
    await ipc.loop.send(q, b"job")
    key, value = await ipc.loop.receive(l, "jobs", "stop", timeout=5)   # a linda
    await ipc.loop.send(l, "jobs", {"n": 1})      # waits while the key is full
    code = await ipc.loop.wait(process)           # or a Pipeline
    result = await ipc.loop.run(["sort"], b"b\\na\\n")  # as ipc.proc.run
    async with ipc.loop.locked(f, "w"): ...

They are functions of this module, not ``async`` twins on every handle, so
the handles keep one (blocking) API and what stands in for a missing
descriptor has one home (``_standin.py``) for Lua and Python alike.
``receive(h, ...)`` and ``send(h, ...)`` are ``h.receive(...)`` and
``h.send(...)`` awaited, for a queue or a linda alike.  A queue
is polled through its descriptor (``loop.add_reader``); a semaphore, an
fcntl lock and a linda have none, so a helper thread waits and wakes the
loop.

Cancellation, ``asyncio.wait_for`` included, never loses a unit or a
message: a message or a linda value is taken only by a non-blocking call
once the wait says it may go, and a unit or lock a helper took for a
cancelled wait is given back.
"""
from __future__ import annotations

import contextlib
import os
import select
import weakref
from collections.abc import AsyncIterator, Callable

from .._errors import timed_out
from .._timeout import Deadline, timeout as check_timeout
from ._standin import LindaWaiter, LockWaiter, SemWaiter, mq_fd

# Neither asyncio nor typing at import: ``require "ipc.loop"`` loads this
# package (its Lua core is ipc/loop/lua.py), and asyncio costs a Lua script
# about 35 ms of start-up, typing (with re) 5 ms.  Each coroutine here
# imports asyncio itself, which its caller's event loop has loaded already.
TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    import asyncio
    from collections.abc import Sequence
    from typing import Any, TypeGuard, overload

    from _typeshed import StrOrBytesPath

    from ..linda import Linda
    from ..mq import MessageQueue
    from ..proc import Env, Pipeline, Process, Result
    from ..proc._launch import Command
    from ..sem import Semaphore

__all__ = ["acquire", "holding", "receive", "send", "receive_batched", "wait", "locked", "run"]


async def _helper(w: SemWaiter | LockWaiter | LindaWaiter, timeout: float | None) -> bool:
    """Run a stand-in's helper thread and await its end, at most
    ``timeout`` seconds.  A cancel (a timeout is one) gives back whatever
    the helper took, even if it took it just before."""
    import asyncio
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
    import asyncio

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


class _Waiters:
    """The coroutines waiting for one descriptor: a FIFO set (an ordered
    dict) of futures; how many of them were woken and have not yet tried;
    how many may go now (a queue's messages or room; None: one)."""

    __slots__ = ("futs", "woken", "many")

    def __init__(self) -> None:
        self.futs: dict[asyncio.Future[None], None] = {}
        self.woken = 0
        self.many: Callable[[], int] | None = None


class _Ready:
    """Futures waiting for one descriptor in one loop.  asyncio keeps one
    reader (writer) per descriptor, so the many coroutines on one queue
    share it.  A readiness wakes as many of them, longest waiting first, as
    can go (``many()``: the messages in the queue, or its room), less those
    woken that have not tried yet; each woken one tries (it takes a message,
    or finds another process was first and waits again).  Waking them all
    made each message cost every waiter on its queue a wake and a failed
    receive: 26x the blocking receive with 100 coroutines a queue; waking
    one a round, 3.4x (bench/cases/loop.py).  Nothing is lost by waking
    few: the reader is level triggered, so while the queue stays readable
    the next round wakes more, and a woken one that is cancelled before it
    tries gives its turn back (``wait``'s finally)."""

    def __init__(self) -> None:
        self.waiting: dict[tuple[int, bool], _Waiters] = {}

    async def wait(self, fd: int, write: bool, timeout: float | None,
                   many: Callable[[], int] | None = None) -> None:
        import asyncio
        loop = asyncio.get_running_loop()
        key = (fd, write)
        fut: asyncio.Future[None] = loop.create_future()
        e = self.waiting.get(key)
        if e is None:
            e = self.waiting[key] = _Waiters()
            (loop.add_writer if write else loop.add_reader)(fd, self._fire, e)
        e.many = many
        e.futs[fut] = None
        try:
            if timeout is None:
                await fut               # (wait_for's own frame costs per message)
            else:
                await asyncio.wait_for(fut, timeout)
        finally:
            if fut.done() and not fut.cancelled():
                # _fire woke this one (and took it out of futs): from here
                # it tries at once, so the next readiness may wake another.
                e.woken -= 1
            else:
                e.futs.pop(fut, None)
            if not e.futs and self.waiting.get(key) is e:
                del self.waiting[key]
                (loop.remove_writer if write else loop.remove_reader)(fd)

    @staticmethod
    def _fire(e: _Waiters) -> None:
        try:
            n = 1 if e.many is None else e.many()
        except (OSError, ValueError):   # closed meanwhile: let one find out
            n = 1
        n -= e.woken
        futs = e.futs
        while n > 0 and futs:
            f = next(iter(futs))
            del futs[f]
            if not f.done():
                f.set_result(None)
                e.woken += 1
                n -= 1


#: One per event loop (a loop's readers are its own); weak, so a closed
#: loop that is dropped takes its entry with it.
_ready: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Ready] = \
    weakref.WeakKeyDictionary()


def _readiness() -> _Ready:
    import asyncio
    loop = asyncio.get_running_loop()
    r = _ready.get(loop)
    if r is None:
        r = _ready[loop] = _Ready()
    return r


async def _mq(q: MessageQueue, write: bool, attempt: Any, timeout: float | None) -> Any:
    import asyncio

    from ..mq import MessageQueue
    if not isinstance(q, MessageQueue):
        raise TypeError(f"takes an ipc.mq.MessageQueue, not {type(q).__name__}")
    t = check_timeout(timeout)
    deadline = Deadline(t)

    def many() -> int:              # how many waiters on q may go now
        n = q.current_messages
        return q.maxmsg - n if write else n
    while True:
        try:
            return attempt()              # never waits: nothing taken until it succeeds
        except TimeoutError:              # ipc.Timeout: full (empty) now
            if t == 0 or deadline.expired:
                raise
        try:
            await _readiness().wait(mq_fd(q), write, deadline.remaining(), many)
        except asyncio.TimeoutError:
            raise timed_out(timeout, "room in queue" if write else "a message in queue",
                            q.name) from None


async def _receive_mq(q: MessageQueue, timeout: float | None = None) -> tuple[bytes, int]:
    r: tuple[bytes, int] = await _mq(q, False, lambda: q.receive(0), timeout)
    return r


async def _send_mq(q: MessageQueue, message: bytes | bytearray | memoryview,
                   timeout: float | None = None, priority: int = 0) -> None:
    bytes(message)                                    # TypeError before any wait
    await _mq(q, True, lambda: q.send(message, 0, priority), timeout)


# -- lindas ------------------------------------------------------------------------
#
# A linda has no descriptor: its waits sleep on a futex.  A helper thread
# (LindaWaiter) sleeps there until the call could go, and wakes the loop;
# the coroutine then makes the call itself, without waiting, in the loop's
# thread.  The helper takes nothing, so a cancel (wait_for's timeout, a
# task cancel, anyio's scopes) at any instant has nothing to give back: a
# value is taken only by the call that returns it.  Another process may
# be first; then the coroutine waits again, until its deadline.

async def _linda(linda: Linda, attempt: Callable[[], Any], ready: Callable[[Any], bool],
                 bits: int, timeout: float | None, what: str) -> Any:
    import asyncio
    t = check_timeout(timeout)
    deadline = Deadline(t)
    while True:
        got = attempt()                    # never waits; None: it would have
        if got is not None:
            return got
        if t == 0 or deadline.expired:
            raise timed_out(timeout, what, linda.name)
        left = deadline.remaining()
        try:
            # (The helper's own deadline is set first, so it never outlives
            # this wait by more than a moment: see LindaWaiter.)
            await _helper(LindaWaiter(linda, ready, bits, left, lambda: None), left)
        except asyncio.TimeoutError:
            raise timed_out(timeout, what, linda.name) from None


def _bits(keys: list[bytes]) -> int:
    from ..linda import key_bit
    bits = 0
    for k in keys:
        bits |= key_bit(k)
    return bits


async def _receive_linda(linda: Linda, *keys: Any,
                         timeout: float | None = None) -> tuple[Any, Any]:
    from ..linda import _wire, key_bytes, key_value, receivable
    if not keys:
        raise ValueError("receive() needs at least one key")
    blobs = [key_bytes(k) for k in keys]             # TypeError before any wait
    got = await _linda(linda, lambda: linda.receive_bytes(blobs, 0), receivable(blobs, 1),
                       _bits(blobs), timeout, "a value in linda")
    return key_value(got[0]), _wire.loads(got[1][0], raw=linda.raw)


async def _send_linda(linda: Linda, key: Any, *values: Any,
                      timeout: float | None = None) -> None:
    from ..linda import _wire, key_bytes, sendable
    if not values:
        raise ValueError("send() needs at least one value after the key")
    k = key_bytes(key)
    blobs = [_wire.dumps(v) for v in values]          # encoded once, before any wait
    await _linda(linda, lambda: linda.send_bytes(k, blobs, 0) or None, sendable(k, len(blobs)),
                 _bits([k]), timeout, f"room in key {key!r} of linda")


async def receive_batched(linda: Linda, key: Any, least: int, most: int | None = None, *,
                          timeout: float | None = None) -> list[Any]:
    """``linda.receive_batched()`` without blocking the event loop: between
    ``least`` and ``most`` values of ``key``, taken at once."""
    from ..linda import Linda, _wire, key_bytes, receivable
    if not isinstance(linda, Linda):
        raise TypeError(f"receive_batched() takes an ipc.linda.Linda, "
                        f"not {type(linda).__name__}")
    most = least if most is None else most
    for v, name in ((least, "least"), (most, "most")):
        if isinstance(v, bool) or not isinstance(v, int):
            raise TypeError(f"{name} must be an int, not {type(v).__name__}")
    if not 1 <= least <= most:
        raise ValueError(f"need 1 <= least <= most, not {least} and {most}")
    k = key_bytes(key)
    got = await _linda(linda, lambda: linda.receive_bytes([k], 0, least, most),
                       receivable([k], least), _bits([k]), timeout,
                       f"{least} values in key {key!r} of linda")
    return [_wire.loads(b, raw=linda.raw) for b in got[1]]


# -- receive and send: one verb per handle method ------------------------------------
#
# ``receive(h, ...)`` is ``h.receive(...)`` awaited, whichever handle h is
# (as ``wait`` takes a Process or a Pipeline): the arguments after the
# handle are that handle's own.  Not ``receive_linda``: a suffix per kind
# would beg ``receive_mq`` too, and the rule "the handle's method, with the
# handle first" is the one a reader already knows from the rest of here.

def _is_linda(h: object) -> TypeGuard[Linda]:
    # (ipc.linda imported only when asked: asyncio code without lindas
    # does not load msgpack)
    from ..linda import Linda
    return isinstance(h, Linda)


if TYPE_CHECKING:  # pragma: no cover  (the overloads: for type checkers only)
    @overload
    async def receive(q: MessageQueue, timeout: float | None = None) -> tuple[bytes, int]: ...
    @overload
    async def receive(q: Linda, *keys: Any, timeout: float | None = None) -> tuple[Any, Any]: ...


async def receive(q: Any, *args: Any, **kw: Any) -> Any:
    """``q.receive()`` without blocking the event loop: from a queue,
    ``(data, priority)``; from a linda (``receive(l, *keys, timeout=None)``),
    ``(key, value)``."""
    if _is_linda(q):
        return await _receive_linda(q, *args, **kw)
    return await _receive_mq(q, *args, **kw)


if TYPE_CHECKING:  # pragma: no cover
    @overload
    async def send(q: MessageQueue, message: bytes | bytearray | memoryview,
                   timeout: float | None = None, priority: int = 0) -> None: ...
    @overload
    async def send(q: Linda, key: Any, *values: Any, timeout: float | None = None) -> None: ...


async def send(q: Any, *args: Any, **kw: Any) -> None:
    """``q.send()`` without blocking the event loop: to a queue,
    ``send(q, message, timeout=None, priority=0)``; to a linda,
    ``send(l, key, *values, timeout=None)`` (waiting while the key is at
    its limit)."""
    if _is_linda(q):
        await _send_linda(q, *args, **kw)
    else:
        await _send_mq(q, *args, **kw)


async def wait(h: Process | Pipeline, timeout: float | None = None) -> int:
    """``h.wait()`` without blocking the event loop: input fed, output to
    the callback, the child reaped; its returncode (``ipc.Timeout`` if
    ``timeout`` runs out, the handle left to be waited for again)."""
    import asyncio

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
    import asyncio

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


async def run(cmd: Command | Sequence[Command], input: bytes | None = None, *,
              timeout: float | None = None, check: bool = False,
              cwd: StrOrBytesPath | None = None, env: Env | None = None) -> Result:
    """``ipc.proc.run`` without blocking the event loop: the same arguments
    and ``Result``; on a timeout, or when the task is cancelled, the whole
    tree is killed (nothing keeps running unseen) and the error raised."""
    from ..proc import PendingRun
    if not isinstance(check, bool):
        raise TypeError(f"check must be a bool, not {type(check).__name__}")
    t = check_timeout(timeout)
    pending = PendingRun(cmd, input, cwd=cwd, env=env)
    try:
        rc = await wait(pending.handle, t)
    except BaseException:
        pending.timed_out()
        raise
    return pending.finish(rc, check)


def __dir__() -> list[str]:
    return sorted(__all__)
