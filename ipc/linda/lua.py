"""Core functions for the Lua face of ipc.linda (face.lua).

Only bytes cross: the face encodes keys and values in Lua (``wire.lua``,
the same msgpack objects ``_wire.py`` makes), so these pass them to the
store as they come and give back the stored bytes.  The face has checked
the arguments; a timeout is None (forever), 0 or > 0.  A timeout that
passes is ``False`` here (the face says ``nil, "timeout"``, as Lanes);
an OS failure stays an OSError (``nil, message, errno``).
"""
from __future__ import annotations

from .._timeout import FOREVER
from . import MIN_CAPACITY, Linda

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Literal

__all__ = ["open", "send", "receive", "set", "get", "limit", "count", "close", "FOREVER",
           "MIN_CAPACITY"]

_MODES = {b"open": False, b"create": True, b"new": None}


def open(name: bytes | None, mode: bytes, capacity: float | None) -> tuple[Linda, bytes, int]:
    """``(handle, name, capacity)``; ``mode`` is ``"open"``, ``"create"``
    or ``"new"`` (open, else create); no name: an anonymous linda."""
    h = Linda(name, create=_MODES[mode], capacity=None if capacity is None else int(capacity))
    return h, h.name.encode("utf-8", "surrogateescape"), h.capacity


def send(h: Linda, timeout: float | None, key: bytes, *values: bytes) -> bool:
    return h.send_bytes(key, list(values), timeout)


def receive(h: Linda, timeout: float | None, least: int, most: int,
            *keys: bytes) -> tuple[bytes, ...] | Literal[False]:
    """``(key, value, ...)``: ``least`` to ``most`` values from the first
    key that has ``least`` (receive: 1 and 1); False on timeout."""
    got = h.receive_bytes(list(keys), timeout, int(least), int(most))
    if got is None:
        return False
    return (got[0], *got[1])


def set(h: Linda, key: bytes, *values: bytes) -> tuple[bool, bytes]:  # noqa: A001
    room, status = h.set_bytes(key, list(values))
    return room, status.encode()


def get(h: Linda, key: bytes, n: int) -> tuple[bytes, ...]:
    return tuple(h.get_bytes(key, int(n)))


def limit(h: Linda, key: bytes, n: int | None, query: bool) -> tuple[object, bytes]:
    """Set the limit (n None: unlimited): ``(room, status)``; or, with
    ``query``, ``(limit or "unlimited", status)``."""
    if query:
        current, status = h.limit_of_bytes(key)
        return (b"unlimited" if current is None else current), status.encode()
    room, status = h.limit_bytes(key, None if n is None else int(n))
    return room, status.encode()


def count(h: Linda, *keys: bytes) -> tuple[object, ...]:
    """``key, n, key, n, ...`` of the keys the linda has."""
    flat: list[object] = []
    for k, n in h.count_bytes(list(keys)).items():
        flat += [k, n]
    return tuple(flat)


def close(h: Linda) -> None:
    h.close()
