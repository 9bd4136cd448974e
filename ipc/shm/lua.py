"""Core functions of the ipc.shm Lua face (see face.lua)."""
from __future__ import annotations

from .._memfile import lua_file
from . import attach as _attach, create as _create

TYPE_CHECKING = False  # not typing's: the first require of a memory module pays for it
if TYPE_CHECKING:
    from typing import Any

__all__ = ["create", "attach"]


def create(name: bytes, size: float) -> tuple[Any, ...]:
    return lua_file(_create(name, int(size)))


def attach(name: bytes) -> tuple[Any, ...]:
    return lua_file(_attach(name))
