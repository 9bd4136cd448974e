"""Core functions for the Lua face of ipc.mq (see face.lua).

The face checks arguments in Lua, so these take them as given: an open
``MessageQueue`` handle (the face never passes a closed one), message
bytes that fit, a timeout (None, 0 or > 0) and a priority in range.  A
full or empty queue at the end of a timeout is ``False`` here (Lua's
``false``), not an exception; OS failures stay OSErrors, which the
face turns into ``nil, message, errno``.
"""
from __future__ import annotations

from .._timeout import FOREVER
from . import PRIORITY_MAX, MessageQueue, Timeout

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Literal

__all__ = ["open", "send", "receive", "close", "count", "PRIORITY_MAX", "FOREVER"]


def open(name: bytes, maxmsg: float, msgsize: float) -> tuple[
        MessageQueue, int, int, Callable[..., None], Callable[[], tuple[bytes, int]]]:
    """``(handle, msgsize, maxmsg, send, receive)``: the face keeps msgsize
    to check sizes, and calls posix_ipc's bound ``send``/``receive`` first
    (``MessageQueue.os_calls``), which never block (the descriptor is
    O_NONBLOCK) and need no InFlight entry: nothing can close the handle
    during a call from Lua, since the handle is reachable only from this
    Lua state and a LuaRuntime runs one thread at a time.  A full or empty
    queue then comes here.

    The face has checked that the sizes are integral; on engines without
    integers (5.1, 5.2, LuaJIT), or past 2^63, they arrive as floats."""
    if isinstance(maxmsg, float):
        maxmsg = int(maxmsg)
    if isinstance(msgsize, float):
        msgsize = int(msgsize)
    q = MessageQueue(name, maxmsg, msgsize)
    send, receive = q.os_calls()
    return q, q.msgsize, q.maxmsg, send, receive


def send(q: MessageQueue, message: bytes, timeout: float | None, priority: int) -> bool:
    """After the face's own try found the queue full: wait as ``timeout``
    says; False when it passes."""
    try:
        q.send(message, timeout, priority)
        return True
    except Timeout:
        return False


def receive(q: MessageQueue, timeout: float | None) -> tuple[bytes, int] | Literal[False]:
    """``(data, priority)``, or False when the timeout passes."""
    try:
        return q.receive(timeout)
    except Timeout:
        return False


def count(q: MessageQueue) -> int:
    return q.current_messages


def close(q: MessageQueue) -> None:
    q.close()


