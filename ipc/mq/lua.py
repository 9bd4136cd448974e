"""Core functions for the Lua face of ipc.mq (see face.lua).

The face checks arguments in Lua, so these take them as given: an open
``MessageQueue`` handle (the face never passes a closed one), message
bytes that fit, a timeout (None, 0 or > 0) and a priority in range.  A
full or empty queue at the end of a timeout is ``False`` here (Lua's
``false``), not an exception; OS failures stay OSErrors, which the
face turns into ``nil, message, errno``.
"""
from __future__ import annotations

import time

import posix_ipc

from .._errors import TIMED_OUT, finish_wait
from . import PRIORITY_MAX, MessageQueue

__all__ = ["open", "send", "receive", "close", "count", "PRIORITY_MAX"]


def open(name: bytes, maxmsg, msgsize):
    """``(handle, msgsize, maxmsg)``; the face keeps msgsize to check sizes.

    The face has checked that the sizes are integral; on engines without
    integers (5.1, 5.2, LuaJIT), or past 2^63, they arrive as floats."""
    if isinstance(maxmsg, float):
        maxmsg = int(maxmsg)
    if isinstance(msgsize, float):
        msgsize = int(msgsize)
    q = MessageQueue(name, maxmsg, msgsize)
    return q, q.msgsize, q.maxmsg


def send(q: MessageQueue, message: bytes, timeout, priority: int) -> bool:
    mq = q._mq
    start = time.monotonic() if timeout else 0.0
    try:
        mq.send(message, timeout, priority)   # the hot path: posix_ipc itself
        return True
    except posix_ipc.Error as exc:
        return finish_wait(exc, mq.send, timeout, start, q._gone, q.name,
                           message, priority=priority) is not TIMED_OUT


def receive(q: MessageQueue, timeout):
    """``(data, priority)``, or False when the timeout passes."""
    mq = q._mq
    start = time.monotonic() if timeout else 0.0
    try:
        return mq.receive(timeout)
    except posix_ipc.Error as exc:
        got = finish_wait(exc, mq.receive, timeout, start, q._gone, q.name)
    return False if got is TIMED_OUT else got


def count(q: MessageQueue) -> int:
    return q.current_messages


def close(q: MessageQueue) -> None:
    q.close()


