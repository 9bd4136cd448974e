"""Core functions of the ipc.mmap Lua face (see face.lua)."""
from __future__ import annotations

from .._memfile import lua_parts
from . import PAGESIZE, open as _open

__all__ = ["open", "PAGESIZE"]


def open(path: bytes, mode: bytes, offset, size):  # noqa: A001
    h = _open(path, mode.decode(), int(offset), int(size))
    get, line, put, getter, putter = lua_parts(h._mm, h._readable, h._writable)

    def close():
        h.close()
        return True

    def flush():
        h.flush()
        return True

    return h, get, line, put, h.size(), close, flush, lambda: h.addr, getter, putter
