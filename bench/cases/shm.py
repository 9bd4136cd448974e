"""ipc.shm: small reads and writes, and 1 MiB copies.

Small: ``seek("set", 64); write(8 bytes); seek("set", 64); read(8)`` on an
ipc.shm handle, beside ``m[64:72] = data; m[64:72]`` on a raw mmap of a
posix_ipc segment (and, for Python, on multiprocessing.shared_memory's
buffer).  Microseconds per loop.

1 MiB: write 1 MiB at offset 0 then read it back, beside the same two slice
copies on the raw mmap.  MB/s of data moved (2 MiB per loop).  The Lua rows
run in this Python process, as ``ipc.lua`` in a user's program would: its
malloc is not tuned as the ``luaipc`` command tunes its own, so lua5.3 and
lua5.5 page-fault through each new MiB string here (the ``vs C`` rows run
``luaipc`` itself).
"""
from __future__ import annotations

import mmap

import posix_ipc

from ..core import Group, Ref, Settings, fresh, per_op_us

SIZE = 2 * 1024 * 1024
MIB = 1024 * 1024
DATA8 = b"abcdefgh"

LUA = r"""
local shm = require "ipc.shm"
local h = assert(shm.create(..., 2 * 1024 * 1024))
local MiB = string.rep("x", 1024 * 1024)
local acc = 0
local function small(n)
  for _ = 1, n do   -- the result is used, so no JIT can drop the read
    h:seek("set", 64); h:write("abcdefgh"); h:seek("set", 64); acc = acc + #h:read(8)
  end
  return acc
end
local function big(n)
  for _ = 1, n do
    h:seek("set", 0); h:write(MiB); h:seek("set", 0); acc = acc + #h:read(#MiB)
  end
  return acc
end
return small, big, function() h:close() end
"""


def _raw_mmap():
    seg = posix_ipc.SharedMemory("/" + fresh(), posix_ipc.O_CREX, 0o600, SIZE)
    m = mmap.mmap(seg.fd, SIZE)
    seg.close_fd()
    seg.unlink()
    return m


def _slices(m):
    def small(n):
        acc = 0
        for _ in range(n):
            m[64:72] = DATA8
            acc += len(m[64:72])
        return acc

    data = b"x" * MIB

    def big(n):
        acc = 0
        for _ in range(n):
            m[0:MIB] = data
            acc += len(m[0:MIB])
        return acc
    return small, big


def _mp_shared_memory():
    """Slice runners on a multiprocessing.shared_memory segment, and its
    cleanup (the runners take ``sm.buf`` per call so nothing keeps an export
    of it alive at close time)."""
    from multiprocessing import shared_memory
    sm = shared_memory.SharedMemory(create=True, size=SIZE)

    def small(n):
        return _slices(sm.buf)[0](n)

    def big(n):
        return _slices(sm.buf)[1](n)

    def close():
        sm.close()
        sm.unlink()
    return small, big, close


def _py_ours():
    from ipc import shm
    h = shm.create(fresh(), SIZE)
    seek, write, read = h.seek, h.write, h.read

    def small(n):
        acc = 0
        for _ in range(n):
            seek(64)
            write(DATA8)
            seek(64)
            acc += len(read(8))
        return acc

    data = b"x" * MIB

    def big(n):
        acc = 0
        for _ in range(n):
            seek(0)
            write(data)
            seek(0)
            acc += len(read(MIB))
        return acc
    return small, big, h.close


def _mbps(fn, n: int):
    us = per_op_us(fn, n)
    return lambda: 2 * MIB / us()   # bytes per microsecond = MB/s


def _group(st: Settings, engine: str, runtime, big: bool) -> Group:
    m = _raw_mmap()
    raw_small, raw_big = _slices(m)
    if big:
        g = Group("shm 1 MiB write+read", engine, "MB/s", None,
                  [Ref("raw mmap slices (Python)", _mbps(raw_big, st.mib_loops))],
                  goal=(">=", 0.5), note="2 MiB moved per loop")
    else:
        g = Group("shm seek+write 8+seek+read 8", engine, "us", None,
                  [Ref("raw mmap slices (Python)", per_op_us(raw_small, st.loop))],
                  goal=("<=", 3.0) if runtime is not None else None)
    g.cleanup.append(m.close)
    if runtime is not None:
        small, bigfn, close = runtime.execute(LUA, fresh().encode())
    else:
        small, bigfn, close = _py_ours()
        mp_small, mp_big, mp_close = _mp_shared_memory()
        g.cleanup.append(mp_close)
        if big:
            g.refs.append(Ref("multiprocessing.shared_memory", _mbps(mp_big, st.mib_loops)))
        else:
            g.refs.append(Ref("multiprocessing.shared_memory", per_op_us(mp_small, st.loop)))
    g.cleanup.append(close)
    g.ours = _mbps(bigfn, st.mib_loops) if big else per_op_us(small, st.loop)
    return g


def groups(st: Settings, engines, runtimes, _scratch):
    for big in (False, True):
        for engine in engines:
            yield lambda e=engine, b=big: _group(st, e, runtimes(e), b)
