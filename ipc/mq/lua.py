"""Core functions for the Lua face of ipc.mq (see face.lua).

The face checks arguments in Lua, so these take them as given: the
``MessageQueue`` handle, message bytes, a timeout (None, 0 or > 0) and a
priority.  A full or empty queue at the end of a timeout is ``False`` here
(Lua's ``false``), not an exception; OS failures stay OSErrors, which the
face turns into ``nil, message, errno``.
"""
from __future__ import annotations

import time

import posix_ipc

from . import PRIORITY_MAX, MessageQueue, Timeout
from .._errors import from_posix_ipc

__all__ = ["open", "send", "receive", "close", "count", "PRIORITY_MAX"]


def open(name: bytes, maxmsg, msgsize):
    """``(handle, msgsize, maxmsg)``; the face keeps msgsize to check sizes."""
    q = MessageQueue(name, maxmsg, msgsize)
    return q, q.msgsize, q.maxmsg


def _closed(q: MessageQueue):
    return ValueError("attempt to use a closed message queue")


def send(q: MessageQueue, message: bytes, timeout, priority: int) -> bool:
    mq = q._mq
    if mq is None:
        raise _closed(q)
    start = time.monotonic() if timeout else 0.0
    try:
        mq.send(message, timeout, priority)   # the hot path: posix_ipc itself
        return True
    except posix_ipc.BusyError:
        return False
    except posix_ipc.SignalError:
        pass  # a handler that did not raise (Ctrl-C would have): wait on
    except posix_ipc.ExistentialError as exc:
        raise from_posix_ipc(exc, q.name) from None
    try:
        q.send(message, _rest(timeout, start), priority)
        return True
    except Timeout:
        return False


def receive(q: MessageQueue, timeout):
    """``(data, priority)``, or False when the timeout passes."""
    mq = q._mq
    if mq is None:
        raise _closed(q)
    start = time.monotonic() if timeout else 0.0
    try:
        return mq.receive(timeout)
    except posix_ipc.BusyError:
        return False
    except posix_ipc.SignalError:
        pass
    except posix_ipc.ExistentialError as exc:
        raise from_posix_ipc(exc, q.name) from None
    try:
        return q.receive(_rest(timeout, start))
    except Timeout:
        return False


def _rest(timeout, start):
    if not timeout:
        return timeout
    return max(timeout - (time.monotonic() - start), 0.0)


def count(q: MessageQueue) -> int:
    return q.current_messages


def close(q: MessageQueue) -> None:
    q.close()


