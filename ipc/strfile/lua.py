"""Core functions of the ipc.strfile Lua face.

The face reads its string in Lua itself (no Python call per read); Python
is only asked for ``addr()``: the address of a bytes copy of the string
that lives as long as the handle.
"""
from __future__ import annotations

from .._memfile import address

__all__ = ["pin"]


class _Pinned:
    """Keeps the bytes whose address addr() gave alive with the handle."""

    __slots__ = ("data", "addr", "__weakref__")

    def __init__(self, data: bytes):
        self.data = data
        self.addr = address(data)


def pin(data: bytes) -> tuple[_Pinned, int]:
    pinned = _Pinned(bytes(data))
    return pinned, pinned.addr
