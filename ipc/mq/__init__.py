"""Named POSIX message queues: bounded, prioritised, between any processes.

    from ipc import mq

    with mq.open("jobs", maxmsg=10, msgsize=1024) as q:   # creates "/jobs"
        q.send(b"hello", priority=1)

    q = mq.open("jobs")                                    # opens it elsewhere
    data, priority = q.receive(timeout=5)                  # ipc.Timeout after 5 s

A queue is named ``"/" + name`` (as ``ipc.shm`` and ``ipc.sem``), so a C
program calling ``mq_open("/jobs", ...)`` meets the same queue; on Linux it
shows up as ``/dev/mqueue/jobs``.  Giving a size creates the queue (and fails
with ``FileExistsError`` if it exists); giving none opens an existing one
(``FileNotFoundError`` if there is none).  The handle that created the queue
removes its name when it is closed or collected; processes that still have
it open keep working with it.

Messages are bytes.  ``receive`` returns the oldest message of the highest
priority.  Timeouts: ``None`` waits forever, ``0`` tries once, ``t > 0``
waits at most ``t`` seconds, then raises ``ipc.Timeout``.  Ctrl-C ends a
blocked call with ``KeyboardInterrupt``; other signals whose handlers return
do not end it (PEP 475).  One handle may be shared by threads; closing it
while others are blocked in ``send``/``receive`` ends their calls with
``ValueError("message queue closed while waiting")`` and takes no message.

The OS limits the sizes of queues (see ``limits()``); a request over a limit
fails with a message that names it, e.g. ``maxmsg 100 exceeds the system
limit 10 (/proc/sys/fs/mqueue/msg_max)``.
"""
from __future__ import annotations

import errno
import os
import select
import weakref
from collections.abc import Callable, Iterator
from functools import partial

import posix_ipc

from .._errors import Timeout, os_error, timed_out
from .._inflight import InFlight
from .._names import NAME_MAX, os_name
from .._owned import Owned
from .._timeout import (
    Deadline,
    poll_ms,
    timeout as _timeout,  # the one rule
)
from . import _os
from ._os import (
    HARD_MSGMAX as HARD_MSGMAX,  # the kernel's limits: re-exported
    HARD_MSGSIZEMAX as HARD_MSGSIZEMAX,
    PRIORITY_MAX,
    SYSCTL_DIR,
    limits,
)

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from types import ModuleType
    from typing import Any

    from typing_extensions import Self

__all__ = ["MessageQueue", "open", "unlink", "limits", "PRIORITY_MAX", "SYSCTL_DIR", "Timeout"]


def _pickle() -> ModuleType:
    """pickle, imported at first use: a Lua script's ``require "ipc.mq"``
    loads this module, and pickle would cost it about 3 ms.  Reading the
    module needs descriptors: under EMFILE, the IPCError."""
    try:
        import pickle
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO) from exc
    return pickle


def _check_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, not {value}")
    return value


_CLOSED = "I/O operation on closed message queue"
#: What a blocked send()/receive() says when another thread closes its
#: handle: a ValueError, as for any use of a closed handle (the program
#: closed a handle it was still using: misuse, not an OS failure).
_CLOSED_WHILE_WAITING = "message queue closed while waiting"


def _as_bytes(message: Any) -> bytes:
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"message must be bytes, not {type(message).__name__}"
                    + (" (encode it first)" if isinstance(message, str) else ""))


def _check_priority(priority: Any) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise TypeError(f"priority must be an int, not {type(priority).__name__}")
    if not 0 <= priority <= PRIORITY_MAX:
        raise ValueError(f"priority must be in 0..{PRIORITY_MAX}, not {priority}")
    return int(priority)


class _Wakeup:
    """What a blocked call polls besides the queue, and ``close()`` sets.

    An eventfd, made by the first call that blocks (an idle handle costs no
    descriptor).  Once set it stays readable, so it wakes every thread
    polling on it, and none of them takes a message.  No lock (a fork must
    not inherit one held): ``fds`` only grows until the OS close, and
    close() is itself in flight while it sets them (see MessageQueue.close).
    """

    __slots__ = ("fds",)

    def __init__(self) -> None:
        self.fds: list[int] = []

    def get(self, q: MessageQueue) -> int:
        """The descriptor to poll; ValueError if q was closed meanwhile.

        Looked up *before* the closed check: close() marks q closed *before*
        it sets the descriptors, so either it sets ours or we see q closed.
        (Two threads may make one each at the same moment: both are kept.)
        """
        if not self.fds:
            try:
                self.fds.append(os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK))
            except OSError as exc:
                raise os_error(exc.errno or errno.EMFILE, q.name) from None
        if q._mq is None:
            raise ValueError(_CLOSED_WHILE_WAITING)
        return self.fds[0]

    def set(self) -> None:
        for fd in list(self.fds):
            os.eventfd_write(fd, 1)

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())


def _close_queue(mq: posix_ipc.MessageQueue, wakeup: _Wakeup) -> None:
    """The OS close of a handle, once no call uses it (see InFlight)."""
    mq.close()
    wakeup.close()


def _release(owned: Owned | None) -> None:
    """Finalizer and close(): the creator's name goes (ipc/_owned.py: only
    in the creating process, at most once).  Never raises.  (mq_close is
    not done here but by the handle's InFlight, once no thread is inside a
    call on the descriptor.)"""
    if owned is not None:
        owned.release()


class MessageQueue:
    """A handle to a named POSIX message queue (see the module docstring).

    ``MessageQueue(name, maxmsg=None, msgsize=None)``: with a size given it
    creates the queue (``maxmsg`` defaults to the system's ``msg_default``,
    ``msgsize`` to ``msgsize_default``), without, it opens an existing one.

    The descriptor is non-blocking (O_NONBLOCK): a call that would block
    polls the queue's descriptor and the handle's ``_Wakeup`` instead (see
    ``_wait``), so that ``close()`` from another thread ends it at once.
    """

    def __init__(self, name: str | bytes, maxmsg: int | None = None,
                 msgsize: int | None = None) -> None:
        osname = os_name(name, NAME_MAX)
        self.created = maxmsg is not None or msgsize is not None
        if self.created:
            maxmsg = _check_size(maxmsg, "maxmsg") if maxmsg is not None \
                else _os.default("msg_default")
            msgsize = _check_size(msgsize, "msgsize") if msgsize is not None \
                else _os.default("msgsize_default")
            mq = _os.create(osname, maxmsg, msgsize)
        else:
            mq = _os.open(osname)
        self._mq: posix_ipc.MessageQueue | None = mq
        #: The name as the API spells it ("jobs"), as for shm and sem;
        #: ``os_name`` is what mq_open saw ("/jobs").
        self.name: str = os.fsdecode(name)
        self.os_name: str = osname
        #: The most messages the queue holds, and the largest message (bytes).
        self.maxmsg: int = mq.max_messages
        self.msgsize: int = mq.max_message_size
        # The name is the creator's to remove (ipc/_owned.py: only in the
        # creating process, at most once).
        self._owned = Owned(partial(_os.unlink, osname)) if self.created else None
        self._wakeup = _Wakeup()
        self._inflight = InFlight(partial(_close_queue, mq, self._wakeup))
        # mq_close when the handle is collected (no call can be in flight
        # then: each holds the handle), but not at exit, where a daemon
        # thread may still be inside one; exit closes it anyway.
        weakref.finalize(self, self._inflight.close).atexit = False
        self._finalizer = weakref.finalize(self, _release, self._owned)

    # -- the two verbs ----------------------------------------------------------

    def send(self, message: bytes | bytearray | memoryview, timeout: float | None = None,
             priority: int = 0) -> None:
        """Put ``message`` in the queue; wait while it is full (see timeouts).

        Raises ``ipc.Timeout`` when the timeout passes with the queue still
        full, ``ValueError`` for a message over ``msgsize`` bytes or a
        priority outside ``0..PRIORITY_MAX``, or when another thread closes
        the handle meanwhile (the message is then not sent).
        """
        # The hot path: a few cheap checks, then posix_ipc's mq_send.
        if type(message) is not bytes:
            message = _as_bytes(message)
        if len(message) > self.msgsize:
            raise ValueError(f"message of {len(message)} bytes exceeds the queue's "
                             f"msgsize {self.msgsize}")
        if type(priority) is not int or not 0 <= priority <= PRIORITY_MAX:
            priority = _check_priority(priority)
        if timeout is not None:
            timeout = _timeout(timeout)
        calls = self._inflight.calls
        calls.append(None)                    # see ipc/_inflight.py
        try:
            mq = self._mq
            if mq is None:
                raise ValueError(_CLOSED)
            try:
                mq.send(message, None, priority)
            except posix_ipc.BusyError:       # full (the descriptor never blocks)
                self._wait(mq, select.POLLOUT, timeout, mq.send, message, None, priority)
            except posix_ipc.ExistentialError:
                raise os_error(errno.EBADF, self.name) from None
        finally:
            calls.pop()
            if self._mq is None:
                self._inflight.close()

    def receive(self, timeout: float | None = None) -> tuple[bytes, int]:
        """Take the oldest message of the highest priority: ``(data, priority)``.

        Waits while the queue is empty (see timeouts); raises ``ipc.Timeout``
        when the timeout passes first, ``ValueError`` when another thread
        closes the handle meanwhile (no message is taken then).
        """
        if timeout is not None:
            timeout = _timeout(timeout)
        calls = self._inflight.calls
        calls.append(None)                    # see ipc/_inflight.py
        try:
            mq = self._mq
            if mq is None:
                raise ValueError(_CLOSED)
            try:
                return mq.receive()
            except posix_ipc.BusyError:       # empty (the descriptor never blocks)
                got: tuple[bytes, int] = self._wait(mq, select.POLLIN, timeout, mq.receive)
                return got
            except posix_ipc.ExistentialError:
                raise os_error(errno.EBADF, self.name) from None
        finally:
            calls.pop()
            if self._mq is None:
                self._inflight.close()

    def _wait(self, mq: posix_ipc.MessageQueue, event: int, timeout: float | None,
              call: Callable[..., Any], *args: Any) -> Any:
        """``call(*args)`` found the queue full (``event`` POLLOUT) or empty
        (POLLIN): poll until the queue is ready, then try again, until the
        timeout passes (ipc.Timeout) or the handle is closed (ValueError).

        poll() rather than a blocking mq_send/mq_receive, so that close()
        can wake the call through the _Wakeup without taking or sending a
        message.  poll() sleeps without waking up, retries after a signal
        whose handler returned, and raises KeyboardInterrupt on Ctrl-C
        (PEP 475).
        """
        what = "room in message queue" if event == select.POLLOUT else "a message in queue"
        if timeout == 0:
            raise timed_out(timeout, what, self.name)
        deadline = Deadline(timeout)
        wakeup = self._wakeup.get(self)
        poller = select.poll()
        poller.register(mq.mqd, event)
        poller.register(wakeup, select.POLLIN)
        while True:
            if deadline.expired:
                raise timed_out(timeout, what, self.name)
            for fd, _ in poller.poll(poll_ms(deadline.remaining())):
                if fd == wakeup:
                    raise ValueError(_CLOSED_WHILE_WAITING)
            try:
                return call(*args)
            except posix_ipc.BusyError:
                pass  # another process was first, or the poll timed out: poll on
            except posix_ipc.ExistentialError:
                raise os_error(errno.EBADF, self.name) from None

    # -- pickled objects ---------------------------------------------------------

    def send_obj(self, obj: Any, timeout: float | None = None, priority: int = 0,
                 protocol: int = -1) -> None:
        """Send ``pickle.dumps(obj, protocol)`` (-1: pickle's highest
        protocol); the pickle must fit in ``msgsize``."""
        self.send(_pickle().dumps(obj, protocol), timeout, priority)

    def receive_obj(self, timeout: float | None = None) -> Any:
        """Receive a message and unpickle it (only from senders you trust:
        unpickling runs code the pickle names)."""
        return _pickle().loads(self.receive(timeout)[0])

    # -- iteration ---------------------------------------------------------------

    def messages(self, timeout: float | None = None, stop: bytes | None = None) -> Iterator[bytes]:
        """Yield messages (data only) as they arrive.

        Ends when a wait runs out of ``timeout`` (no exception), or when a
        message equal to ``stop`` arrives (it is not yielded): a producer
        can send ``stop`` once per consumer to say "no more work".
        """
        while True:
            try:
                data, _ = self.receive(timeout)
            except Timeout:
                return
            if stop is not None and data == stop:
                return
            yield data

    def __iter__(self) -> Iterator[bytes]:
        """The messages waiting now: stops when the queue is empty (never
        waits; for a consumer that waits use ``messages()``)."""
        return self.messages(timeout=0)

    # -- state, closing ----------------------------------------------------------

    @property
    def current_messages(self) -> int:
        """How many messages are in the queue now."""
        return self._open().current_messages

    @property
    def owner(self) -> bool:
        """True while this handle will remove the name when closed: in the
        creating process, until ``unlink()`` or ``close()``.  (``created``
        says whether this handle created the queue.)"""
        return self._owned is not None and self._owned.held

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._mq is None

    def _open(self) -> posix_ipc.MessageQueue:
        mq = self._mq
        if mq is None:
            raise ValueError(_CLOSED)
        return mq

    def os_calls(self) -> tuple[Callable[..., None], Callable[[], tuple[bytes, int]]]:
        """posix_ipc's own bound ``send`` and ``receive`` of this handle's
        descriptor (mq_send, mq_receive), for a face that must pay no frame
        of ours per call: the Lua face tries each message with them first.

        They are the bare OS calls: they raise posix_ipc's exceptions
        (``BusyError`` when the queue is full or empty: the descriptor is
        non-blocking, so they never wait), and they are not counted in
        flight, so a ``close()`` in another thread during one of them may
        let it reach a descriptor that the number was given to again.  The
        Lua face may use them because its handle is reachable only from its
        Lua state, which runs one thread at a time.
        """
        mq = self._open()
        return mq.send, mq.receive

    def close(self) -> None:
        """Close the handle (again: nothing); the creator's close also
        removes the name.  Threads blocked in ``send``/``receive`` on this
        handle get a ValueError; the descriptor is closed when the last of
        them has left."""
        if self._mq is None:
            return
        calls = self._inflight.calls
        calls.append(None)      # the OS close must wait until the wake-up is set
        try:
            self._mq = None
            self._wakeup.set()
            self._finalizer()
        finally:
            calls.pop()
            self._inflight.close()

    def unlink(self) -> None:
        """Remove the queue's name now (open handles keep working)."""
        self._open()
        if self._owned is not None:
            # the creator's close must not remove a later queue of that name
            self._owned.detach()
        unlink(self.name)

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mq is None else f"maxmsg={self.maxmsg} msgsize={self.msgsize}"
        return f"<ipc.mq.MessageQueue {self.name!r} {state}>"


def open(name: str | bytes, maxmsg: int | None = None, msgsize: int | None = None) -> MessageQueue:
    """Create (a size given) or open (no size) the queue ``"/" + name``."""
    return MessageQueue(name, maxmsg, msgsize)


def unlink(name: str | bytes) -> None:
    """Remove the queue's name (``FileNotFoundError`` if there is none)."""
    _os.unlink(os_name(name, NAME_MAX))


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
