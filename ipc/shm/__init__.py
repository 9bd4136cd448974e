"""Named POSIX shared memory with a file-like handle.

``create(name, size)`` makes a new segment (``shm_open("/" + name)``, mode
0600) and ``attach(name)`` maps an existing one, so a C program, the C
LuaIPC or a Lua script through ``require "ipc.shm"`` meet the same bytes::

    with ipc.shm.create("demo", 4096) as h:      # the creator
        h.write(b"hello")
    with ipc.shm.attach("demo") as h:            # any other process
        h.read(5)
        numpy.frombuffer(h.buf, dtype="u1")      # the memory, no copy

The creator's ``close()`` (or the collection of its handle) removes the
name; attaching and closing never does: there is no resource tracker that
unlinks a segment when an attaching process exits (unlike
``multiprocessing.shared_memory``, CPython gh-82300).
"""
from __future__ import annotations

import errno
import mmap as _mmap
import os
from functools import partial

import posix_ipc

from .._errors import os_error, posix_errors
from .._memfile import MemFile, index
from .._names import os_name
from .._owned import Owned, release_handle

__all__ = ["SharedMemory", "attach", "create", "unlink"]


class SharedMemory(MemFile):
    """A mapped shared-memory segment: a ``MemFile`` plus ``unlink()``."""

    _kind = "shm"

    def __init__(self, mm: _mmap.mmap, name: str, osname: str, owner: bool):
        self._osname = osname
        # The name is the creator's to remove (ipc/_owned.py: only in the
        # creating process, at most once).
        self._owned = Owned(partial(posix_ipc.unlink_shared_memory, osname)) if owner else None
        super().__init__(mm, readable=True, writable=True, name=name,
                         release=partial(release_handle, partial(_unmap, mm), self._owned))

    @property
    def owner(self) -> bool:
        """True while this handle will remove the name when closed: in the
        creating process, until ``unlink()`` or ``close()``."""
        return self._owned is not None and self._owned.held

    @property
    def os_name(self) -> str:
        """The name as shm_open saw it (``"/jobs"``), as for sem and mq."""
        return self._osname

    @property
    def created(self) -> bool:
        """Whether this handle created the object (fixed for its life; as
        ``MessageQueue.created``).  ``owner`` says whether it will still
        remove the name."""
        return self._owned is not None

    def unlink(self) -> None:
        """Remove the name now (the memory stays mapped until closed).

        Raises ``FileNotFoundError`` (an ``ipc.NotFoundError``) if the name
        is gone already."""
        if self._owned is not None:
            self._owned.detach()
        _unlink(self._osname, self.name)


def _unmap(mm: _mmap.mmap) -> None:
    try:
        mm.close()
    except BufferError:
        # A view from .buf is still alive: the mapping goes with the
        # last view (the mmap object's own finalizer unmaps it).
        pass


def _unlink(osname: str, name: object) -> None:
    with posix_errors(name):
        posix_ipc.unlink_shared_memory(osname)


def unlink(name: str | bytes) -> None:
    """Remove the segment called ``name`` (mappings stay valid)."""
    _unlink(os_name(name), name)


def create(name: str | bytes, size: int) -> SharedMemory:
    """Create a new segment of ``size`` bytes and map it.

    The segment's pages are reserved now, so a segment that was created can
    always be written in full.  Raises ``FileExistsError`` if the name is
    taken, ``IPCError(ENOSPC)`` if the segment does not fit in the free
    space of ``/dev/shm``, ``IPCError(EINVAL)`` for a size < 1 or a name
    with ``/`` (nothing is left behind then).
    """
    osname = os_name(name)
    size = index(size, "size")
    if size <= 0:
        raise os_error(errno.EINVAL, name)
    with posix_errors(name, creating=True):
        seg = posix_ipc.SharedMemory(osname, posix_ipc.O_CREX, mode=0o600)
    try:
        # Size the segment and reserve its pages.  ftruncate alone makes a
        # sparse file: tmpfs gives each page on first touch, and a touch that
        # finds no free page is SIGBUS (the writer dies, and so does anyone
        # who then writes an untouched page of an older segment).
        # posix_fallocate fails with ENOSPC here instead.
        os.posix_fallocate(seg.fd, 0, size)
        mm = _mmap.mmap(seg.fd, size)
    except (OSError, OverflowError, ValueError) as exc:
        # Leave nothing half made behind.
        try:
            posix_ipc.unlink_shared_memory(osname)
        except posix_ipc.Error:  # pragma: no cover
            pass
        code = exc.errno if isinstance(exc, OSError) and exc.errno else errno.EINVAL
        raise os_error(code, name) from None
    finally:
        seg.close_fd()
    return SharedMemory(mm, _text(name), osname, owner=True)


def attach(name: str | bytes) -> SharedMemory:
    """Map the existing segment ``name`` (``FileNotFoundError`` if none)."""
    osname = os_name(name)
    with posix_errors(name):
        seg = posix_ipc.SharedMemory(osname)
    try:
        size = os.fstat(seg.fd).st_size
        if size <= 0:  # mmap() refuses an empty segment, as in LuaIPC
            raise os_error(errno.EINVAL, name)
        mm = _mmap.mmap(seg.fd, size)
    except OSError as exc:
        raise os_error(exc.errno or errno.EINVAL, name) from None
    finally:
        seg.close_fd()
    return SharedMemory(mm, _text(name), osname, owner=False)


def _text(name: str | bytes) -> str:
    return os.fsdecode(name) if isinstance(name, bytes) else name


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
