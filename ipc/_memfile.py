"""The file-like core over a buffer, shared by ipc.shm, ipc.mmap and ipc.strfile.

As in LuaIPC's memfile.c, the three modules differ only in where the buffer
comes from; everything a handle does with it lives here:

* ``MemFile``: the Python handle (read/write/seek/tell/readline/iteration,
  ``size()``, ``truncate()``, a zero-copy ``buf`` memoryview, ``close()``).
* ``lua_file()``: a handle as the Lua face takes it (a ``LuaFile``, sent
  flat): the mapping itself, which Lua reads and writes by item access with
  slices it keeps (``mem[s]``: cheaper than any call through lupa), and
  the few primitives the face calls for the rest (``get``, ``put``,
  ``line``, ``span``) as small closures over the mapping, so that a Lua
  ``read`` or ``write`` costs at most one Lua->Python crossing; the
  position and every cheap check stay in Lua (``_memfile.lua``, the one
  Lua implementation of the file methods, which all three faces load).

The region is fixed: writing past its end is refused, never grows it.
"""
from __future__ import annotations

import ctypes
import errno
import io
import sys
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterator

from ._errors import os_error

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:
    from typing import Any, NamedTuple

    from typing_extensions import Buffer, Self
else:
    class _NamedTupleMeta(type):
        """``class C(NamedTuple)`` with annotated fields gives the
        ``collections.namedtuple`` that typing's would: importing typing
        (and the re it imports) is ~6 ms of the first ``require`` of a
        memory module (issue 14)."""

        def __new__(mcs, name, bases, ns):
            if not bases:  # NamedTuple itself
                return super().__new__(mcs, name, bases, ns)
            # A dict in field order: this module has "from __future__
            # import annotations" (no lazy annotations, PEP 649).
            cls = namedtuple(name, ns["__annotations__"], module=ns["__module__"])  # noqa: PYI024
            cls.__doc__ = ns.get("__doc__")
            return cls

    class NamedTuple(metaclass=_NamedTupleMeta):
        pass

__all__ = ["LuaFile", "MemFile", "address", "index", "lua_file"]


class _PyBuffer(ctypes.Structure):
    _fields_ = [("buf", ctypes.c_void_p), ("obj", ctypes.c_void_p),
                ("len", ctypes.c_ssize_t), ("itemsize", ctypes.c_ssize_t),
                ("readonly", ctypes.c_int), ("ndim", ctypes.c_int),
                ("format", ctypes.c_char_p), ("shape", ctypes.c_void_p),
                ("strides", ctypes.c_void_p), ("suboffsets", ctypes.c_void_p),
                ("internal", ctypes.c_void_p)]


def address(buffer: Any) -> int:
    """The address of a buffer's first byte (read-only buffers too), from
    the buffer protocol itself (PyObject_GetBuffer)."""
    api = ctypes.pythonapi
    view = _PyBuffer()
    if api.PyObject_GetBuffer(ctypes.py_object(buffer), ctypes.byref(view), 0) != 0:
        raise BufferError("no buffer")  # pragma: no cover
    try:
        return view.buf or 0
    finally:
        api.PyBuffer_Release(ctypes.byref(view))


class _State:
    """What the finalizer needs; never references the handle itself."""

    __slots__ = ("view", "release", "closed", "__weakref__")

    def __init__(self, view: memoryview, release: Callable[[], None] | None):
        self.view = view
        self.release = release
        self.closed = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        try:
            self.view.release()
        except Exception:  # noqa: BLE001  pragma: no cover (views we made are releasable)
            pass
        release, self.release = self.release, None
        if release is not None:
            release()


def _finalize(state: _State) -> None:
    # A finalizer never raises (it may run at interpreter exit).
    try:
        state.close()
    except Exception:  # noqa: BLE001  (a finalizer never raises)
        pass


class MemFile:
    """A file-like handle over a fixed region of memory.

    Reads and writes move one position, as in a file; the region never
    grows.  ``buf`` gives the memory itself (``numpy.frombuffer(h.buf)``
    copies nothing).  ``close()`` is idempotent and also runs when the handle
    is collected.
    """

    _kind = "memfile"

    def __init__(self, buffer: Buffer, *, readable: bool = True, writable: bool = True,
                 release: Callable[[], None] | None = None,
                 flush: Callable[[], None] | None = None, name: object = None) -> None:
        view = memoryview(buffer).cast("B")
        if writable and view.readonly:
            raise ValueError("a writable MemFile needs a writable buffer")
        self._view = view
        # An mmap (shm, mmap) or bytes (strfile): lua_file slices it, as slices
        # of an mmap copy only what they take, and writes into the mmap.
        self._buffer: Any = buffer
        find = getattr(buffer, "find", None)
        self._find = find if find is not None else bytes(view).find
        self._size = len(view)
        self._pos = 0
        self._readable = readable
        self._writable = writable
        self._flush = flush
        self.name = name
        self._state = _State(view, release)
        self._finalizer = weakref.finalize(self, _finalize, self._state)

    # -- state ------------------------------------------------------------
    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._state.closed

    def _check(self) -> memoryview:
        if self._state.closed:
            raise ValueError("I/O operation on closed file")
        return self._view

    def _check_readable(self) -> memoryview:
        view = self._check()
        if not self._readable:
            raise io.UnsupportedOperation("not readable")
        return view

    def _check_writable(self) -> memoryview:
        view = self._check()
        if not self._writable:
            raise io.UnsupportedOperation("not writable")
        return view

    def readable(self) -> bool:
        """Whether ``read`` is allowed (as ``io``)."""
        self._check()
        return self._readable

    def writable(self) -> bool:
        """Whether ``write`` is allowed (as ``io``)."""
        self._check()
        return self._writable

    def seekable(self) -> bool:
        """Always True: every region can seek."""
        self._check()
        return True

    def close(self) -> None:
        """Release the memory (idempotent).  Views handed out by ``buf``
        keep their own mapping alive until they are released."""
        self._finalizer()

    def __enter__(self) -> Self:
        self._check()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else f"size={self._size} pos={self._pos}"
        name = f" {self.name!r}" if self.name is not None else ""
        return f"<ipc.{self._kind}{name} {state}>"

    # -- the memory itself ------------------------------------------------
    @property
    def buf(self) -> memoryview:
        """The region (up to ``size()``) as a memoryview: no copy."""
        return self._check()[: self._size]

    if sys.version_info >= (3, 12):
        # PEP 688: memoryview(h), numpy.frombuffer(h)...  Before 3.12 a class
        # written in Python cannot export a buffer, so there the method is
        # left out (help() would list it and memoryview(h) still fail): use
        # h.buf, which works everywhere.
        def __buffer__(self, flags: int) -> memoryview:
            return self.buf

    @property
    def addr(self) -> int:
        """The address of the first byte (for ctypes/cffi users)."""
        return address(self._check())

    def size(self) -> int:
        """The size of the region in bytes (after ``truncate``)."""
        self._check()
        return self._size

    def __len__(self) -> int:
        return self.size()

    def truncate(self, size: int) -> int:
        """Use only the first ``size`` bytes from now on (never grows)."""
        self._check()
        size = index(size, "size")
        if size < 0 or size > self._size:
            raise ValueError(f"new size too large (or negative): {size} "
                             f"(the region has {self._size} bytes)")
        self._size = size
        self._pos = min(self._pos, size)
        return size

    # -- positioning ------------------------------------------------------
    def tell(self) -> int:
        """The current position."""
        self._check()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move to ``offset`` from the start, the current position or the
        end (``whence`` 0, 1, 2 as in ``io``); a position outside the region
        raises ``ValueError`` and leaves the position alone."""
        if self._state.closed:
            raise ValueError("I/O operation on closed file")
        offset = index(offset, "offset")
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self._size + offset
        else:
            raise ValueError(f"invalid whence ({whence!r}, should be 0, 1 or 2)")
        if pos < 0 or pos > self._size:
            raise ValueError(f"invalid offset: position {pos} is outside 0..{self._size}")
        self._pos = pos
        return pos

    # -- reading ----------------------------------------------------------
    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes (all the rest if ``size`` is None or < 0);
        ``b""`` at the end."""
        if self._state.closed or not self._readable:  # _check_readable, inlined (hot path)
            self._check_readable()
        view = self._view
        p, n = self._pos, self._size
        q = n if size is None or size < 0 else min(n, p + index(size, "size"))
        self._pos = q
        return view[p:q].tobytes()

    def readinto(self, b: Buffer) -> int:
        """Read into ``b`` (as ``io.RawIOBase``); the number of bytes read."""
        view = self._check_readable()
        target = memoryview(b).cast("B")
        p = self._pos
        q = min(self._size, p + len(target))
        target[: q - p] = view[p:q]
        self._pos = q
        return q - p

    def readline(self, size: int | None = -1) -> bytes:
        """One line with its ``b"\\n"`` (none at the end of the region)."""
        view = self._check_readable()
        p, n = self._pos, self._size
        if size is not None and size >= 0:
            n = min(n, p + size)
        q = self._find(b"\n", p, n)
        q = n if q < 0 else q + 1
        self._pos = q
        return view[p:q].tobytes()

    def readlines(self, hint: int = -1) -> list[bytes]:
        """The remaining lines, stopping once ``hint`` bytes are read (as ``io``)."""
        lines, total = [], 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        self._check_readable()
        return self

    def __next__(self) -> bytes:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    # -- writing ----------------------------------------------------------
    def write(self, data: Buffer) -> int:
        """Write all of ``data`` at the position and return its length.

        The region never grows: if ``data`` does not fit, nothing is written
        and an ``IPCError`` with ``errno.ENOSPC`` ("not enough space") is
        raised.
        """
        if self._state.closed or not self._writable:  # _check_writable, inlined (hot path)
            self._check_writable()
        view = self._view
        if type(data) is not bytes:  # bytes slice-assign as they are (hot path)
            data = memoryview(data).cast("B")
        p = self._pos
        q = p + len(data)
        if q > self._size:
            raise os_error(errno.ENOSPC, self.name,
                           f"not enough space ({len(data)} bytes at position {p}, "
                           f"region of {self._size})")
        view[p:q] = data
        self._pos = q
        return len(data)

    def flush(self) -> None:
        """Write changes through to the backing file (mmap); else a no-op."""
        self._check()
        if self._writable and self._flush is not None:
            self._flush()


def index(value: Any, what: str) -> int:
    """``value`` as an int (anything with ``__index__``, not a bool), for
    sizes, offsets and positions; TypeError naming ``what`` otherwise."""
    if type(value) is int:  # the common case, first (hot path)
        return value
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise TypeError(f"{what} must be an integer, not {type(value).__name__}")
    i: int = value.__index__()
    return i


class LuaFile(NamedTuple):
    """A memory handle as its Lua face takes it: the arguments of
    ``build()`` in ``ipc/_memfile.lua``, in their order.

    Lua gets it flat, as a plain tuple (``lua_file`` converts): lupa would
    unpack a NamedTuple as well (it is a tuple), but the crossing checker
    (``ipc/lua/crossing.py``) takes apart only a plain tuple, and a
    NamedTuple cannot be weakly referenced to be followed whole.
    """

    #: The Python handle: it owns the memory (its finalizer frees it).
    obj: MemFile
    #: ``get(p, q)``: bytes ``[p, q)``; None if the handle is not readable.
    get: Callable[[int, int], bytes] | None
    #: ``line(p, q)``: from ``p`` up to and including the first newline
    #: before ``q`` (or up to ``q``); None if not readable.
    line: Callable[[int, int], bytes] | None
    #: ``put(p, s)``: store ``s`` at ``p``; None if not writable.
    put: Callable[[int, bytes], None] | None
    #: The size of the region.
    size: int
    #: Close the handle (and, for the creator, remove the name): True.
    close: Callable[[], bool]
    #: Write changes through to the backing file: True; None when there is
    #: none (shm).
    flush: Callable[[], bool] | None
    #: The address of the first byte.
    addr: Callable[[], int]
    #: The object that holds the bytes (an ``mmap.mmap``; ``bytes`` for a
    #: strfile), for ``mem[s]`` and ``mem[s] = v`` from Lua with a slice
    #: ``s`` from ``span``: item access skips lupa's argument tuple, so it
    #: costs about a call without arguments (issue 14).  Lua gets it once,
    #: here, as every object (``ipc/lua/crossing.py``).
    mem: Any
    #: ``span(p, q)``: a new ``slice(p, q)`` (Lua keeps the ones it uses
    #: again; each reaches Lua once, since it is made here for the call).
    span: Callable[[int, int], slice]
    #: ``copier(version)``: ``pull`` and ``push`` for copies of many bytes
    #: through Lua's C API on PUC-Lua ``version`` (504 for 5.4), one copy
    #: each way; None for what the engine cannot do (``ipc/lua/capi.py``).
    copier: Callable[[int], tuple[Any, ...]]


def lua_file(h: MemFile) -> tuple[Any, ...]:
    """What a Lua face's ``open`` returns for ``h``: its ``LuaFile``, as a
    flat tuple of fresh closures (see ``LuaFile`` for each).

    The closures are over the object that owns the memory (an
    ``mmap.mmap``: slicing it copies only what is asked).  Lua has checked
    the bounds already; Python checks them again, so a bug cannot touch
    memory outside the mapping.
    """
    mem = h._buffer
    find = mem.find

    def get(p: int, q: int) -> bytes:
        b: bytes = mem[p:q]
        return b

    def line(p: int, q: int) -> bytes:
        i = find(b"\n", p, q)
        b: bytes = mem[p:q if i < 0 else i + 1]
        return b

    def put(p: int, s: bytes) -> None:
        mem[p:p + len(s)] = s

    def span(p: int, q: int) -> slice:
        return slice(int(p), int(q))

    def close() -> bool:
        h.close()
        return True

    def flush() -> bool:
        h.flush()
        return True

    def addr() -> int:
        return h.addr

    readable, writable = h._readable, h._writable

    def copier(version: int) -> tuple[Any, ...]:
        from .lua.capi import copiers
        return copiers(int(version), h.addr, h.size(), h._state, readable, writable)

    return tuple(LuaFile(
        obj=h, size=h.size(), close=close, addr=addr,
        flush=flush if h._flush is not None else None,
        get=get if readable else None, line=line if readable else None,
        put=put if writable else None, mem=mem, span=span, copier=copier))
