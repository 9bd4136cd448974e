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
do not end it (PEP 475).

The OS limits the sizes of queues (see ``limits()``); a request over a limit
fails with a message that names it, e.g. ``maxmsg 100 exceeds the system
limit 10 (/proc/sys/fs/mqueue/msg_max)``.
"""
from __future__ import annotations

import builtins
import errno
import pickle
import time
import weakref
from collections.abc import Iterator
from typing import Any

import posix_ipc

from .._errors import Timeout, from_posix_ipc, os_error
from .._names import NAME_MAX, os_name
from .._signals import exit_pending
from .._timeout import timeout as check_timeout

__all__ = ["MessageQueue", "open", "unlink", "limits", "PRIORITY_MAX", "SYSCTL_DIR", "Timeout"]

#: Highest priority a message can have (lowest is 0).
PRIORITY_MAX: int = posix_ipc.QUEUE_PRIORITY_MAX
#: Where Linux shows (and lets root change) the queue limits.
SYSCTL_DIR = "/proc/sys/fs/mqueue"
#: Limits the kernel enforces even for a process with CAP_SYS_RESOURCE
#: (HARD_MSGMAX and HARD_MSGSIZEMAX in include/linux/ipc_namespace.h).
HARD_MSGMAX = 65536
HARD_MSGSIZEMAX = 16 * 1024 * 1024

def limits() -> dict[str, int | None]:
    """The system's queue limits, read from ``/proc/sys/fs/mqueue``.

    Keys: ``msg_max`` (most messages a queue may hold), ``msgsize_max``
    (largest message size), ``msg_default``/``msgsize_default`` (the sizes
    a queue gets when one is not given), ``queues_max`` (queues on the
    system); ``None`` where the file cannot be read.  A process with
    CAP_SYS_RESOURCE may exceed ``msg_max`` and ``msgsize_max``.
    """
    out: dict[str, int | None] = {}
    for key in ("msg_max", "msgsize_max", "msg_default", "msgsize_default", "queues_max"):
        try:
            with builtins.open(f"{SYSCTL_DIR}/{key}") as f:
                out[key] = int(f.read().strip())
        except (OSError, ValueError):
            out[key] = None
    return out


def _default(key: str, fallback: int) -> int:
    value = limits().get(key)
    return value if value else fallback


def _check_size(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} must be an int, not {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{what} must be at least 1, not {value}")
    return value


_timeout = check_timeout  # the one rule: ipc/_timeout.py


_CLOSED = "I/O operation on closed message queue"


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


def _has_cap_sys_resource() -> bool:
    """Whether the kernel lets this process exceed msg_max/msgsize_max."""
    try:
        with builtins.open("/proc/self/status") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return bool(int(line.split()[1], 16) >> 24 & 1)  # CAP_SYS_RESOURCE
    except (OSError, ValueError):
        pass
    return False


def _limit_error(name: str, maxmsg: int, msgsize: int) -> OSError:
    """Why the kernel refused a queue of these sizes (EINVAL), in words.

    Without CAP_SYS_RESOURCE the sysctl limits bind; with it (root, usually)
    only the kernel's hard limits do, so the message names the one that
    really applied.
    """
    lim = limits()
    privileged = _has_cap_sys_resource()
    for value, what, key, hard in ((maxmsg, "maxmsg", "msg_max", HARD_MSGMAX),
                                   (msgsize, "msgsize", "msgsize_max", HARD_MSGSIZEMAX)):
        sysctl = lim.get(key)
        if not privileged and sysctl is not None and value > sysctl:
            return os_error(errno.EINVAL, name,
                            f"{what} {value} exceeds the system limit {sysctl} "
                            f"({SYSCTL_DIR}/{key})")
        if value > hard:
            return os_error(errno.EINVAL, name,
                            f"{what} {value} exceeds the kernel limit {hard}")
    return os_error(errno.EINVAL, name)


def _create_error(exc: BaseException, name: str, maxmsg: int, msgsize: int) -> BaseException:
    if isinstance(exc, ValueError):  # posix_ipc's word for EINVAL
        return _limit_error(name, maxmsg, msgsize)
    if isinstance(exc, OSError) and not exc.errno and "maximum number of files" in str(exc):
        # EMFILE from mq_open: the descriptor limit, or (far more likely for a
        # big queue) the per-user byte budget RLIMIT_MSGQUEUE.
        import resource
        soft = resource.getrlimit(resource.RLIMIT_MSGQUEUE)[0]
        return os_error(errno.EMFILE, name,
                        f"cannot create a queue of {maxmsg} x {msgsize} bytes: over the "
                        f"per-user queue memory limit RLIMIT_MSGQUEUE ({soft} bytes, "
                        f"ulimit -q) or the open-files limit")
    return from_posix_ipc(exc, name, creating=True)


def _release(mq: posix_ipc.MessageQueue, osname: str | None) -> None:
    """Finalizer: close the descriptor, and remove the name if we made it."""
    try:
        mq.close()
    except Exception:
        pass
    if osname is not None:
        try:
            posix_ipc.unlink_message_queue(osname)
        except Exception:
            pass


class MessageQueue:
    """A handle to a named POSIX message queue (see the module docstring).

    ``MessageQueue(name, maxmsg=None, msgsize=None)``: with a size given it
    creates the queue (``maxmsg`` defaults to the system's ``msg_default``,
    ``msgsize`` to ``msgsize_default``), without, it opens an existing one.
    """

    def __init__(self, name: str | bytes, maxmsg: int | None = None,
                 msgsize: int | None = None) -> None:
        osname = os_name(name, NAME_MAX)
        self.created = maxmsg is not None or msgsize is not None
        if self.created:
            maxmsg = _check_size(maxmsg, "maxmsg") if maxmsg is not None \
                else _default("msg_default", posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT)
            msgsize = _check_size(msgsize, "msgsize") if msgsize is not None \
                else _default("msgsize_default", posix_ipc.QUEUE_MESSAGE_SIZE_MAX_DEFAULT)
            if maxmsg > HARD_MSGMAX or msgsize > HARD_MSGSIZEMAX:
                # what the kernel says (EINVAL), before posix_ipc's C long
                # overflows on a size past 2**63
                raise _limit_error(osname, maxmsg, msgsize)
            try:
                mq = posix_ipc.MessageQueue(osname, posix_ipc.O_CREX, 0o600, maxmsg, msgsize)
            except (posix_ipc.Error, OSError, ValueError) as exc:
                raise _create_error(exc, osname, maxmsg, msgsize) from None
        else:
            try:
                mq = posix_ipc.MessageQueue(osname)
            except (posix_ipc.Error, OSError, ValueError) as exc:
                raise from_posix_ipc(exc, osname, creating=False) from None
        self._mq: posix_ipc.MessageQueue | None = mq
        self.name: str = osname
        #: The most messages the queue holds, and the largest message (bytes).
        self.maxmsg: int = mq.max_messages
        self.msgsize: int = mq.max_message_size
        self._finalizer = weakref.finalize(self, _release, mq, osname if self.created else None)

    # -- the two verbs ----------------------------------------------------------

    def send(self, message: bytes | bytearray | memoryview, timeout: float | None = None,
             priority: int = 0) -> None:
        """Put ``message`` in the queue; wait while it is full (see timeouts).

        Raises ``ipc.Timeout`` when the timeout passes with the queue still
        full, ``ValueError`` for a message over ``msgsize`` bytes or a
        priority outside ``0..PRIORITY_MAX``.
        """
        # The hot path: a few cheap checks, then posix_ipc (which releases
        # the GIL while it waits).
        mq = self._mq
        if mq is None:
            raise ValueError(_CLOSED)
        if type(message) is not bytes:
            message = _as_bytes(message)
        if len(message) > self.msgsize:
            raise ValueError(f"message of {len(message)} bytes exceeds the queue's "
                             f"msgsize {self.msgsize}")
        if type(priority) is not int or not 0 <= priority <= PRIORITY_MAX:
            priority = _check_priority(priority)
        if timeout is not None:
            timeout = _timeout(timeout)
        start = time.monotonic() if timeout else 0.0
        try:
            mq.send(message, timeout, priority)
        except posix_ipc.BusyError:
            raise os_error(errno.ETIMEDOUT, self.name) from None
        except posix_ipc.SignalError:
            self._retry(mq.send, timeout, start, message, priority=priority)
        except posix_ipc.ExistentialError:
            raise self._gone() from None

    def receive(self, timeout: float | None = None) -> tuple[bytes, int]:
        """Take the oldest message of the highest priority: ``(data, priority)``.

        Waits while the queue is empty (see timeouts); raises ``ipc.Timeout``
        when the timeout passes first.
        """
        mq = self._mq
        if mq is None:
            raise ValueError(_CLOSED)
        if timeout is not None:
            timeout = _timeout(timeout)
        start = time.monotonic() if timeout else 0.0
        try:
            return mq.receive(timeout)
        except posix_ipc.BusyError:
            raise os_error(errno.ETIMEDOUT, self.name) from None
        except posix_ipc.SignalError:
            return self._retry(mq.receive, timeout, start)
        except posix_ipc.ExistentialError:
            raise self._gone() from None

    def _retry(self, call, timeout, start, *args, **kwargs):
        """Wait on after EINTR.  The signal's Python handler has run by now:
        Ctrl-C raised KeyboardInterrupt already; for any other signal whose
        handler returned we wait out the rest of the timeout (PEP 475)."""
        while True:
            exit_pending()
            t = max(timeout - (time.monotonic() - start), 0.0) if timeout else timeout
            try:
                return call(*args, timeout=t, **kwargs)
            except posix_ipc.BusyError:
                raise os_error(errno.ETIMEDOUT, self.name) from None
            except posix_ipc.SignalError:
                continue
            except posix_ipc.ExistentialError:
                raise self._gone() from None

    def _gone(self) -> Exception:
        if self._mq is None:  # closed by another thread meanwhile
            return ValueError(_CLOSED)
        return os_error(errno.EBADF, self.name)

    # -- pickled objects ---------------------------------------------------------

    def send_obj(self, obj: Any, timeout: float | None = None, priority: int = 0,
                 protocol: int = pickle.HIGHEST_PROTOCOL) -> None:
        """Send ``pickle.dumps(obj)``; the pickle must fit in ``msgsize``."""
        self.send(pickle.dumps(obj, protocol), timeout, priority)

    def receive_obj(self, timeout: float | None = None) -> Any:
        """Receive a message and unpickle it (only from senders you trust:
        unpickling runs code the pickle names)."""
        return pickle.loads(self.receive(timeout)[0])

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
    def closed(self) -> bool:
        return self._mq is None

    def _open(self) -> posix_ipc.MessageQueue:
        mq = self._mq
        if mq is None:
            raise ValueError(_CLOSED)
        return mq

    def close(self) -> None:
        """Close the handle (again: nothing); the creator's close also
        removes the name."""
        self._mq = None
        self._finalizer()

    def unlink(self) -> None:
        """Remove the queue's name now (open handles keep working)."""
        self._open()
        if self.created and self._finalizer.alive:
            # the creator's close must not remove a later queue of that name
            mq = self._finalizer.detach()[2][0]
            self._finalizer = weakref.finalize(self, _release, mq, None)
        unlink(self.name[1:])

    def __enter__(self) -> "MessageQueue":
        self._open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._mq is None else f"maxmsg={self.maxmsg} msgsize={self.msgsize}"
        return f"<ipc.mq.MessageQueue {self.name!r} {state}>"


def open(name: str | bytes, maxmsg: int | None = None, msgsize: int | None = None) -> MessageQueue:
    """Create (a size given) or open (no size) the queue ``"/" + name``."""
    return MessageQueue(name, maxmsg, msgsize)


def unlink(name: str | bytes) -> None:
    """Remove the queue's name (``FileNotFoundError`` if there is none)."""
    osname = os_name(name, NAME_MAX)
    try:
        posix_ipc.unlink_message_queue(osname)
    except (posix_ipc.Error, OSError) as exc:
        raise from_posix_ipc(exc, osname) from None
