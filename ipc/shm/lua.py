"""Core functions of the ipc.shm Lua face (see face.lua)."""
from __future__ import annotations

from .._memfile import lua_parts
from . import attach as _attach, create as _create

__all__ = ["create", "attach"]


def _parts(h):
    get, line, put, getter, putter = lua_parts(h._mm, True, True)

    def close():
        h.close()
        return True

    return h, get, line, put, h.size(), close, None, lambda: h.addr, getter, putter


def create(name: bytes, size: int):
    return _parts(_create(name, int(size)))


def attach(name: bytes):
    return _parts(_attach(name))
