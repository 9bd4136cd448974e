"""Memory-mapped files with a file-like handle (LuaIPC's mmap).

``open(path, mode="r", offset=0, size=0)`` maps ``size`` bytes of the file
from ``offset`` (a multiple of ``PAGESIZE``; ``size`` 0 means up to the end
of the file).  Modes: ``"r"`` (read only), ``"w"`` (write only), ``"rw"``.
Writes go straight to the page cache; ``flush()`` syncs them to the file.
The file cannot grow through the mapping.  Only the pages that are touched
are read, so a file larger than RAM maps fine::

    with ipc.mmap.open("data.bin", "rw") as h:
        h.seek(4096)
        h.write(b"...")
        h.flush()
"""
from __future__ import annotations

import errno
import mmap as _mmap
import os

from .._errors import os_error
from .._memfile import MemFile, index

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

    #: What ``open`` maps: a path as ``os.open`` takes it.
    Path = str | bytes | os.PathLike[str] | os.PathLike[bytes]

__all__ = ["MappedFile", "open", "PAGESIZE", "pagesize"]

#: Offsets must be multiples of this (the mmap allocation granularity).
PAGESIZE: int = _mmap.ALLOCATIONGRANULARITY
pagesize = PAGESIZE

_MODES = {"r": (True, False), "w": (False, True), "rw": (True, True)}


class MappedFile(MemFile):
    """A mapped region of a file."""

    _kind = "mmap"

    def __init__(self, mm: _mmap.mmap, path: Path, readable: bool, writable: bool) -> None:
        super().__init__(mm, readable=readable, writable=writable, name=path,
                         release=_releaser(mm), flush=_flusher(mm, path))


def _releaser(mm: _mmap.mmap) -> Callable[[], None]:
    def release() -> None:
        try:
            mm.close()
        except BufferError:
            pass  # a view from .buf still uses it: unmapped with that view
    return release


def _flusher(mm: _mmap.mmap, path: Path) -> Callable[[], None]:
    def flush() -> None:
        try:
            mm.flush()
        except OSError as exc:
            raise os_error(exc.errno or errno.EIO, path) from None
    return flush


def open(path: Path, mode: str = "r", offset: int = 0, size: int = 0) -> MappedFile:
    """Map ``path``; see the module docstring.

    OS failures raise ``IPCError`` subclasses (``FileNotFoundError``...).
    An empty file, an ``offset`` past the end or not a multiple of
    ``PAGESIZE``, or a ``size`` reaching past the end of the file raise
    ``IPCError`` with ``errno.EINVAL`` (C's mmap would give SIGBUS on
    access beyond the end of the file instead).  A bad ``mode`` is a
    ``ValueError``.
    """
    if isinstance(mode, bytes):
        mode = mode.decode("latin-1")
    if mode not in _MODES:
        raise ValueError(f"invalid mode {mode!r} (use 'r', 'w' or 'rw')")
    readable, writable = _MODES[mode]
    offset = index(offset, "offset")
    size = index(size, "size")
    if offset < 0 or size < 0 or offset % PAGESIZE:
        raise os_error(errno.EINVAL, path)
    flags = (os.O_RDWR if writable else os.O_RDONLY) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO, path) from None
    try:
        length = size
        filesize = os.fstat(fd).st_size
        if offset > filesize or (size and size > filesize - offset):
            raise os_error(errno.EINVAL, path)
        if size == 0:
            length = filesize - offset
        if length == 0:  # mmap() of nothing: EINVAL, as in LuaIPC
            raise os_error(errno.EINVAL, path)
        access = _mmap.ACCESS_WRITE if writable else _mmap.ACCESS_READ
        try:
            mm = _mmap.mmap(fd, length, access=access, offset=offset)
        except OSError as exc:
            raise os_error(exc.errno or errno.EINVAL, path) from None
        except (ValueError, OverflowError):
            raise os_error(errno.EINVAL, path) from None
    finally:
        os.close(fd)
    return MappedFile(mm, path, readable, writable)


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
