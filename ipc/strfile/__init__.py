"""A read-only file over a byte string (LuaIPC's strfile).

``open(b)`` gives a handle with the same methods as ``ipc.shm`` and
``ipc.mmap`` handles (read, readline, iteration, seek, tell, size, buf...),
reading ``b`` in place: a ``bytes`` object is not copied.
"""
from __future__ import annotations

from .._memfile import MemFile

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Buffer

__all__ = ["StrFile", "open"]


class StrFile(MemFile):
    """A read-only ``MemFile`` over bytes."""

    _kind = "strfile"


def open(data: Buffer) -> StrFile:
    """A read-only file over ``data`` (bytes or any bytes-like object; a
    mutable one is copied so the file cannot change under the reader)."""
    if isinstance(data, str):
        raise TypeError("strfile.open() needs bytes, not str (encode it first)")
    if not isinstance(data, bytes):
        data = bytes(memoryview(data))
    return StrFile(data, readable=True, writable=False)


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
