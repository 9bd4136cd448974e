"""Core functions of the ipc.mmap Lua face (see face.lua)."""
from __future__ import annotations

from .._memfile import lua_file
from . import PAGESIZE, open as _open

TYPE_CHECKING = False  # not typing's: the first require of a memory module pays for it
if TYPE_CHECKING:
    from typing import Any

__all__ = ["open", "PAGESIZE"]


def open(path: bytes, mode: bytes, offset: float, size: float) -> tuple[Any, ...]:
    return lua_file(_open(path, mode.decode(), int(offset), int(size)))
