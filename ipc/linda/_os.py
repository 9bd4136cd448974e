"""The OS layer of lindas: one file in /dev/shm, a lock, a futex.

A linda named ``"jobs"`` is the file ``/dev/shm/linda.jobs``::

    0   magic     b"LINDA\\0\\1\\0"  (format 1)
    8   gen       u32, the futex word: bumped by every change; gen & 1 is
                  the buffer that holds the current state
    12  waiters   u32, how many waits may be asleep on gen (a hint)
    16  capacity  u64, the size of each buffer (the linda's size bound)
    24  len[0]    u64, bytes of state in buffer 0
    32  len[1]    u64, the same for buffer 1
    40  alloc[0]  u64, bytes of buffer 0 backed by tmpfs pages
    48  alloc[1]  u64
    64  buffer 0, then buffer 1 (``capacity`` bytes each)

The state is one msgpack object, ``{key: [limit, [value, ...]]}``, each
key and value the bytes of its own msgpack object (``_wire``).

**Why it survives SIGKILL at any instant.**  Every operation runs under
``flock(LOCK_EX)`` on the file, which the kernel releases when its holder
dies.  It writes the new state to the buffer that is *not* current, and
then stores ``gen + 1``: one aligned 4-byte store, the commit point.  A
process killed before that store leaves the current buffer untouched (the
next holder overwrites the half-written one); killed after it, the change
is complete.  So the state any process sees is the last committed one.

**Why no waiter waits forever, and none spins.**  A wait reads ``gen``
under the lock, finds nothing to do, registers in ``waiters``, unlocks,
then sleeps in ``FUTEX_WAIT_BITSET`` for as long as ``gen`` still holds
that value: a change committed in between makes the wait return at once
(the kernel compares).  Each change wakes the waits of its keys' bits
(``key_bit``).  The one gap is a writer killed between its commit and its
wake: waits sleep in slices of at most ``SLICE`` seconds, after which they
look again.  ``waiters`` only spares writers the wake syscall; a waiter
killed while registered leaves it too high, which costs wakes, never a
missed one.

**Why the size bound is a clean error.**  The file is sparse; the pages a
buffer uses are allocated with ``posix_fallocate`` before they are written,
so a full tmpfs is ENOSPC from that call, never SIGBUS from a store.  A
state larger than ``capacity`` is refused before anything is written.

Creation is atomic: the file is made unnamed (``O_TMPFILE``), filled in,
and only then linked under its name, so no process ever opens a linda
whose header is not yet written, and a creator killed midway leaves
nothing behind.
"""
from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import struct
import threading
import weakref
import zlib
from collections.abc import Callable
from mmap import mmap
from time import monotonic

from msgpack import Packer, unpackb as _unpackb

from .._errors import IPCError, os_error

__all__ = ["DIR", "PREFIX", "DEFAULT_CAPACITY", "MIN_CAPACITY", "SLICE", "Store",
           "key_bit", "path_of", "unlink"]

DIR = "/dev/shm"
PREFIX = "linda."
#: The size bound of a linda's state when its creator sets none: 16 MiB
#: (the file is sparse: a linda holding little uses little).
DEFAULT_CAPACITY = 16 << 20
MIN_CAPACITY = 4096
#: The longest a wait sleeps before it looks at the state again: the bound
#: on how late a wake can be when a writer died between commit and wake.
SLICE = 1.0

_MAGIC = b"LINDA\0\1\0"
_HEADER = 64
_GEN, _WAITERS, _CAPACITY, _LEN, _ALLOC = 8, 12, 16, 24, 40
_U32, _U64 = struct.Struct("=I"), struct.Struct("=Q")
#: Buffers grow their tmpfs backing in steps this big (fewer syscalls).
_ALLOC_STEP = 64 << 10
#: The largest file offset (off_t), so the largest linda file.
_OFF_MAX = 2 ** 63 - 1
#: The empty state, msgpack's empty map.
EMPTY = b"\x80"

# -- futexes, through libc's syscall() (ctypes releases the GIL) -------------

_SYS_FUTEX: int = {"x86_64": 202, "aarch64": 98, "armv7l": 240, "i686": 240,
              "ppc64le": 221, "s390x": 238, "riscv64": 98}.get(os.uname().machine, -1)
_FUTEX_WAIT_BITSET, _FUTEX_WAKE_BITSET = 9, 10
_ALL_BITS = 0xFFFFFFFF


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
# Declared once: ctypes then converts plain ints itself, which costs less
# than making a ctypes object per argument per call (a wake is on the hot
# path of every change that has a waiter).
_syscall.argtypes = [ctypes.c_long, ctypes.c_void_p, ctypes.c_int, ctypes.c_uint32,
                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint32]


def _futex(addr: int, op: int, val: int, timeout: _Timespec | None, bits: int) -> int:
    ts = ctypes.byref(timeout) if timeout is not None else None
    return int(_syscall(_SYS_FUTEX, addr, op, val, ts, None, bits))


def key_bit(key: bytes) -> int:
    """The futex bit of a key: the same in every process (crc32, not
    Python's salted hash)."""
    return 1 << (zlib.crc32(key) & 31)


def path_of(osname: str) -> str:
    """The file of a linda, from its OS name ``"/name"``."""
    return f"{DIR}/{PREFIX}{osname[1:]}"


def unlink(osname: str, name: object) -> None:
    try:
        os.unlink(path_of(osname))
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO, name) from None


#: The state: key -> [limit, [value, ...]] (limit -1: none).
State = dict[bytes, list]  # type: ignore[type-arg]
#: A change of the state: (result, futex bits to wake; 0: no change).
Change = Callable[[State], tuple[object, int]]

#: How many times a taker tries the lock without sleeping before it sleeps
#: in flock.  A change holds the lock for a few microseconds; a taker that
#: sleeps is woken only after the holder, running on, has often taken the
#: lock again, so two busy processes hand it back and forth through the
#: scheduler.  Two tries are enough to catch the gap between changes: a
#: sender and a receiver in two processes went from about 14 to 7 us per
#: value (the bench's two-process linda case).  The tries are syscalls,
#: bounded: a holder that keeps the lock longer costs them, then a sleep.
_TRIES = 4
_LOCK_EX_NB = fcntl.LOCK_EX | fcntl.LOCK_NB


def _lock(fd: int) -> None:
    """flock(LOCK_EX), after a few tries that do not sleep (see _TRIES)."""
    for _ in range(_TRIES):
        try:
            fcntl.flock(fd, _LOCK_EX_NB)
            return
        except BlockingIOError:
            pass
    fcntl.flock(fd, fcntl.LOCK_EX)


#: Every open Store of this process, for _forked.
_ALL: weakref.WeakSet[Store] = weakref.WeakSet()


def _forked() -> None:
    for store in list(_ALL):
        store._after_fork()


os.register_at_fork(after_in_child=_forked)


class Store:
    """One open linda file: ``transact`` runs a change of its state under
    the lock; ``wait`` sleeps until a change of some keys may have come.

    One Store may be used by several threads: a thread lock serialises
    them in this process (``flock`` locks belong to the open file, which
    the threads share), and the file lock serialises processes.
    """

    def __init__(self, osname: str, name: object, capacity: int | None) -> None:
        self._fd = -1
        self.name = name
        self.path = path_of(osname)
        self._tlock = threading.Lock()
        try:
            fd = self._create(capacity) if capacity is not None else self._open()
        except OSError as exc:
            if isinstance(exc, IPCError):
                raise
            raise os_error(exc.errno or errno.EIO, name) from None
        self._fd = fd
        self.capacity: int = _U64.unpack_from(self._mm, _CAPACITY)[0]
        # The futex word's address in this mapping (kept alive: its buffer
        # export pins the mapping until close() drops it).
        self._word: ctypes.c_uint32 | None = ctypes.c_uint32.from_buffer(self._mm, _GEN)
        self._addr = ctypes.addressof(self._word)
        #: The last state this Store read, and the gen it read it at: a
        #: process that makes several changes in a row decodes once.
        self._cache: tuple[int, State] | None = None
        # One Packer per Store, used under the thread lock: msgpack.packb
        # makes a new one per call, which costs more than the packing.
        self._packer = Packer(use_bin_type=True, autoreset=True)
        _ALL.add(self)

    # -- making and opening ------------------------------------------------------

    def _create(self, capacity: int) -> int:
        size = _HEADER + 2 * capacity
        if size > _OFF_MAX:
            # what ftruncate says of a size no file can have (Python's
            # ftruncate raises OverflowError before it asks)
            raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))
        fd = os.open(DIR, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)
            os.posix_fallocate(fd, 0, _HEADER + len(EMPTY))
            header = bytearray(_HEADER)
            header[:8] = _MAGIC
            _U64.pack_into(header, _CAPACITY, capacity)
            _U64.pack_into(header, _LEN, len(EMPTY))
            _U64.pack_into(header, _ALLOC, len(EMPTY))
            os.pwrite(fd, bytes(header) + EMPTY, 0)
            self._mm = _map(fd, size)
            # The name appears only now, complete (EEXIST if it is taken).
            _link_fd(fd, self.path)
        except BaseException:
            self._unmap()
            os.close(fd)
            raise
        return fd

    def _open(self) -> int:
        fd = os.open(self.path, os.O_RDWR | os.O_CLOEXEC)
        try:
            self._mm = _map(fd, _checked_size(fd, self.name))
        except BaseException:
            self._unmap()
            os.close(fd)
            raise
        return fd

    def _unmap(self) -> None:
        mm: mmap | None = self.__dict__.pop("_mm", None)
        if mm is not None:
            mm.close()

    def _after_fork(self) -> None:
        """In a child made by fork(): the descriptor is the parent's open
        file, so its flock would be the parent's too.  Open the file anew
        (through /proc: it may be unlinked already) and get a fresh thread
        lock (another thread may have held it at the fork)."""
        self._tlock = threading.Lock()
        self._cache = None
        if self._fd < 0:
            return
        with contextlib.suppress(OSError):
            fd = os.open(f"/proc/self/fd/{self._fd}", os.O_RDWR | os.O_CLOEXEC)
            os.dup2(fd, self._fd, inheritable=False)
            os.close(fd)

    # -- the state --------------------------------------------------------------

    def run(self, change: Change, register: bool = False) -> tuple[object, int]:
        """``change(state)`` under the lock: it returns ``(result, bits)``,
        ``bits`` 0 when it changed nothing, else the futex bits of the keys
        whose waiters must wake (the new state is committed first).
        Returns ``(result, gen)``: the gen a ``wait`` must sleep on if the
        result says "nothing yet".  ``register`` counts the caller among the
        waiters (it must call ``wait`` next)."""
        fd = self._fd
        if fd < 0:
            raise ValueError("I/O operation on closed linda")
        with self._tlock:
            _lock(fd)
            try:
                mm = self._mm
                gen = _U32.unpack_from(mm, _GEN)[0]
                cache = self._cache
                if cache is not None and cache[0] == gen:
                    state = cache[1]
                else:
                    i = gen & 1
                    n = _U64.unpack_from(mm, _LEN + 8 * i)[0]
                    start = _HEADER + i * self.capacity
                    view = memoryview(mm)[start:start + n]
                    state = _unpackb(view, strict_map_key=False)
                    view.release()
                self._cache = None            # until the change is committed
                result, bits = change(state)
                if bits:
                    gen = self._commit(mm, gen, self._packer.pack(state))
                    self._cache = (gen, state)
                    if _U32.unpack_from(mm, _WAITERS)[0]:
                        _futex(self._addr, _FUTEX_WAKE_BITSET, 0x7FFFFFFF, None, bits)
                else:
                    self._cache = (gen, state)
                if register and result is None:
                    w = _U32.unpack_from(mm, _WAITERS)[0]
                    _U32.pack_into(mm, _WAITERS, min(w + 1, 0xFFFFFFFF))
                return result, gen
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def _commit(self, mm: mmap, gen: int, data: bytes) -> int:
        """Write ``data`` as the new state and make it current; the new gen.
        Raises (changing nothing) when it does not fit."""
        n = len(data)
        if n > self.capacity:
            raise os_error(errno.ENOSPC, self.name,
                           f"linda full: its state would take {n} bytes, "
                           f"more than its capacity of {self.capacity}")
        j = (gen & 1) ^ 1
        start = _HEADER + j * self.capacity
        alloc = _U64.unpack_from(mm, _ALLOC + 8 * j)[0]
        if n > alloc:
            grown = min(self.capacity, max(n, alloc + _ALLOC_STEP))
            try:
                os.posix_fallocate(self._fd, start, grown)
            except OSError as exc:
                raise os_error(exc.errno or errno.ENOSPC, self.name,
                               f"no room for the linda's state ({os.strerror(exc.errno or 28)})"
                               ) from None
            _U64.pack_into(mm, _ALLOC + 8 * j, grown)
        mm[start:start + n] = data
        _U64.pack_into(mm, _LEN + 8 * j, n)
        gen = (gen + 1) & 0xFFFFFFFF
        _U32.pack_into(mm, _GEN, gen)
        return gen

    def wait(self, gen: int, bits: int, deadline: float | None) -> None:
        """Sleep until ``gen`` changes and a change wakes ``bits``, or a
        slice or the deadline (``time.monotonic()``) passes.  The caller
        registered with ``run(..., register=True)``; this unregisters."""
        try:
            end = monotonic() + SLICE
            if deadline is not None and deadline < end:
                end = deadline
            ts = _Timespec()
            # FUTEX_WAIT_BITSET's timeout is absolute, on CLOCK_MONOTONIC,
            # which is time.monotonic()'s clock on Linux.
            ts.tv_sec = int(end)
            ts.tv_nsec = int((end - ts.tv_sec) * 1e9)
            if self._fd >= 0 and _futex(self._addr, _FUTEX_WAIT_BITSET, gen, ts, bits) < 0:
                code = ctypes.get_errno()
                if code not in (errno.EAGAIN, errno.ETIMEDOUT, errno.EINTR):
                    raise os_error(code, self.name)
        finally:
            self._unregister()

    def _unregister(self) -> None:
        fd = self._fd
        if fd < 0:
            return
        with self._tlock:
            _lock(fd)
            try:
                w = _U32.unpack_from(self._mm, _WAITERS)[0]
                if w:
                    _U32.pack_into(self._mm, _WAITERS, w - 1)
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def wake(self, bits: int) -> None:
        """Wake the waits on ``bits`` in every process, with no change: they
        look again and sleep on.  (What ends a cancelled ipc.loop helper
        that sleeps here: a spurious wake costs its peers one look, never a
        value, as every wait re-checks the state.)"""
        if self._fd >= 0:
            _futex(self._addr, _FUTEX_WAKE_BITSET, 0x7FFFFFFF, None, bits & _ALL_BITS)

    def wake_all(self) -> None:
        """Wake every wait on this linda, in every process (they look again
        and sleep on if nothing changed)."""
        if self._fd >= 0:
            _futex(self._addr, _FUTEX_WAKE_BITSET, 0x7FFFFFFF, None, _ALL_BITS)

    def close(self) -> None:
        """Unmap and close (again: nothing).  The caller makes sure no call
        is in flight (see ipc/_inflight.py)."""
        fd, self._fd = self._fd, -1
        if fd < 0:
            return
        self._word = None
        self._cache = None
        self._unmap()
        os.close(fd)


_AT_FDCWD, _AT_SYMLINK_FOLLOW = -100, 0x400


def _link_fd(fd: int, path: str) -> None:
    """Give the unnamed file ``fd`` the name ``path`` (EEXIST if taken):
    open(2)'s O_TMPFILE recipe.  By ctypes, as os.link() never passes
    AT_SYMLINK_FOLLOW, and /proc/self/fd/N must be followed."""
    if _libc.linkat(_AT_FDCWD, f"/proc/self/fd/{fd}".encode(), _AT_FDCWD,
                    os.fsencode(path), _AT_SYMLINK_FOLLOW) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code), path)


def _checked_size(fd: int, name: object) -> int:
    """The size of an existing linda file, from its header; EINVAL for a
    file that is not one (``ipcctl`` and a stray file under our prefix)."""
    head = os.pread(fd, _HEADER, 0)
    if len(head) < _HEADER or head[:8] != _MAGIC:
        raise os_error(errno.EINVAL, name, "not a linda (bad header)")
    size: int = _HEADER + 2 * _U64.unpack_from(head, _CAPACITY)[0]
    if os.fstat(fd).st_size != size:
        raise os_error(errno.EINVAL, name, "not a linda (bad size)")
    return size


def _map(fd: int, size: int) -> mmap:
    return mmap(fd, size)
