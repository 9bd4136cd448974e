"""``ipc.sem.Ledger``: ownership records for a semaphore, so that units
held by processes that died can be given back.

A POSIX semaphore is not given back when its holder dies (no SEM_UNDO,
posix_ipc issue #53).  With a ledger, every party records each unit it
holds in a small file beside the semaphore, and ``recover()`` returns the
units of recorded holders that are gone::

    ledger = ipc.sem.Ledger(sem, "/run/app/jobs.ledger", capacity=4)
    with ledger.hold(timeout=5):        # claim a record, dec, mark it held
        work()                          # ... mark it releasing, inc, free it
    ledger.recover()                    # anyone, any time

The file (created with mode 0600, and its missing directories with 0700)
is a sequence of 32-byte records, one per line::

    "h 12345 1718031234.56" padded with spaces to 31 bytes, then "\\n"

``state pid start_time``: the start time (psutil's ``create_time``, -1 if
unknown) tells a live process from a later one that reuses the pid.  The
state is one byte, so every change of state is a one-byte ``pwrite`` that
no crash can tear:

``-`` free: reused by the next claim (records never move, so a holder
    keeps its record's offset; trailing free records are cut off);
``w`` waiting: claimed before the decrement, so a holder killed right
    after its decrement has a record (it may hold a unit, or not yet);
``h`` holding: the decrement is done;
``r`` releasing: marked before the increment (it may still hold one).

Lines of two fields, ``pid start_time`` (the format of earlier versions,
still written by tests/lua/stress/worker.lua), count as ``h``; blank lines
and anything else are skipped.  Claims, ``recover()`` and ``holders()``
run under the file's fcntl lock (so a C program or the C LuaIPC can take
part with ``fcntl(F_SETLKW)`` on the whole file) and, in this process,
under a thread lock: POSIX record locks belong to the process, so they do
not keep its threads apart.  Marking one's own record needs no lock.

What ``recover()`` can tell:

* a dead holder (``h``): one unit back, always;
* a dead ``w``/``r`` record: its process died between the record and the
  semaphore call, an instant of one ``pwrite`` (with psutil and the file
  ready before the decrement).  Whether it held a unit the record cannot
  say; the count can.  Given ``capacity`` (the semaphore's full count),
  every unit is either free (the semaphore's value), recorded ``h`` by a
  live process, or possibly held by a ``w``/``r`` record, so ``capacity -
  value - live h - live w/r`` units are surely lost: ``recover()`` gives
  those back.  Once no live process is waiting or releasing that is
  exact, and the value is then the capacity less the live holders, never
  more.  Without ``capacity`` such records are dropped without giving
  anything back (the unit of a process killed in that instant is lost).

All parties must go through the ledger: a unit taken with a bare
``dec()`` looks lost to ``recover()`` when ``capacity`` is given.
"""
from __future__ import annotations

import errno
import fcntl
import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

import psutil  # here, not at the first acquire: the blind window stays one write

from .._errors import os_error
from .._timeout import timeout as check_timeout
from . import VALUE_MAX, Semaphore

__all__ = ["Ledger"]

RECORD = 32                       # bytes per record, its newline included
FREE, WAITING, HOLDING, RELEASING = b"-", b"w", b"h", b"r"
_STATES = (FREE, WAITING, HOLDING, RELEASING)
_LEGACY = b"h"                    # what a two-field line counts as


class _Record(NamedTuple):
    offset: int
    length: int                   # without the newline
    state: bytes
    pid: int
    start: float
    legacy: bool


def _parse(data: bytes) -> Iterator[_Record]:
    """The records of a ledger file's bytes (skipping what is not one)."""
    offset = 0
    for line in data.split(b"\n"):
        fields = line.split()
        try:
            if len(fields) == 3 and fields[0] in _STATES:
                rec = _Record(offset, len(line), fields[0], int(fields[1]), float(fields[2]),
                              False)
            elif len(fields) == 2:
                rec = _Record(offset, len(line), _LEGACY, int(fields[0]), float(fields[1]), True)
            else:
                rec = None
        except ValueError:
            rec = None
        if rec is not None and rec.pid > 0:
            yield rec
        offset += len(line) + 1


def _alive(pid: int, start: float) -> bool:
    """Whether the process that wrote a record still runs."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return start < 0 or abs(proc.create_time() - start) <= 1.0  # else: pid reused
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return False
    except psutil.AccessDenied:  # alive, but not ours to inspect
        return True


def _claim_line() -> bytes:
    """This process's ``w`` record."""
    pid = os.getpid()
    try:
        start = psutil.Process(pid).create_time()
    except psutil.Error:
        start = -1.0
    text = f"{WAITING.decode()} {pid} {start!r}".encode()
    return text.ljust(RECORD - 1) + b"\n"


class _File:
    """A ledger file as this process uses it, shared by every Ledger on it
    here: one descriptor (closing *any* descriptor of a file drops all of
    the process's record locks on it), one thread lock, and the offsets of
    the records of the units this process holds."""

    __slots__ = ("__weakref__", "_claim_line", "fd", "held", "lock")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        weakref.finalize(self, os.close, fd)
        self.forked()

    def forked(self) -> None:
        """(Also) in a child made by fork(): the parent's units and locks
        are not the child's."""
        self.lock = threading.Lock()
        self.held: list[int] = []
        self._claim_line: bytes | None = None

    @property
    def claim_line(self) -> bytes:
        """This process's ``w`` record (made once per process)."""
        line = self._claim_line
        if line is None:
            line = self._claim_line = _claim_line()
        return line

    @contextmanager
    def locked(self) -> Iterator[None]:
        with self.lock:
            fcntl.lockf(self.fd, fcntl.LOCK_EX)   # F_SETLKW on the whole file
            try:
                yield
            finally:
                fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def read(self) -> tuple[bytes, list[_Record]]:
        data = os.pread(self.fd, os.fstat(self.fd).st_size, 0)
        return data, list(_parse(data))

    def mark(self, offset: int, state: bytes) -> None:
        os.pwrite(self.fd, state, offset)

    def free(self, rec: _Record) -> None:
        # A two-field line has no state byte: blank it (blank lines are skipped).
        os.pwrite(self.fd, b" " * rec.length if rec.legacy else FREE, rec.offset)

    def trim(self, size: int, records: list[_Record], keep: int = 0) -> None:
        """Cut off what follows the last record in use (and ``keep`` bytes):
        free records, blank lines, and the torn line of a dead writer."""
        end = keep
        for rec in records:
            if rec.state != FREE:
                end = max(end, rec.offset + rec.length + 1)
        if end < size:
            os.ftruncate(self.fd, end)


_FILES: weakref.WeakValueDictionary[tuple[int, int], _File] = weakref.WeakValueDictionary()
_FILES_LOCK = threading.Lock()


def _forked() -> None:
    global _FILES_LOCK
    _FILES_LOCK = threading.Lock()
    for f in list(_FILES.values()):
        f.forked()


os.register_at_fork(after_in_child=_forked)


def _create(path: Path) -> int:
    flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
    try:
        try:
            return os.open(path, flags, 0o600)
        except FileNotFoundError:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            return os.open(path, flags, 0o600)
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO, exc.filename or str(path)) from None


def _file(path: Path) -> _File:
    """The process's _File for ``path``, opened (and created) if need be."""
    with _FILES_LOCK:
        try:
            st = os.stat(path)
            f = _FILES.get((st.st_dev, st.st_ino))
            if f is not None:
                return f
        except OSError:
            pass                      # _create says why, if it is more than ENOENT
        fd = _create(path)
        st = os.fstat(fd)
        key = (st.st_dev, st.st_ino)
        f = _FILES.get(key)
        if f is not None:
            # The path turned into a file we hold under another path, between
            # the stat and the open.  Close the new descriptor under f's lock,
            # so that no thread of ours holds the file's record lock meanwhile.
            with f.lock:
                os.close(fd)
            return f
        f = _FILES[key] = _File(fd)
        return f


class Ledger:
    """Ownership records for the semaphore ``sem`` in the file ``path`` (see
    the module docstring).  One Ledger may be shared by threads; Ledgers of
    one process on the same file share its descriptor and locks.

    ``capacity``: the semaphore's full count, if known; it lets
    ``recover()`` also find the units of processes killed in the instant
    between a record and the semaphore call.
    """

    def __init__(self, sem: Semaphore, path: str | os.PathLike[str],
                 capacity: int | None = None) -> None:
        if capacity is not None and (isinstance(capacity, bool) or not isinstance(capacity, int)
                                     or not 1 <= capacity <= VALUE_MAX):
            raise ValueError(f"capacity must be an int in 1..{VALUE_MAX} or None")
        self.sem = sem
        self.path = Path(path)
        self.capacity = capacity
        self._file = _file(self.path)

    def acquire(self, timeout: float | None = None) -> None:
        """``sem.acquire(timeout)``, recorded: raises ``ipc.Timeout`` as it."""
        timeout = check_timeout(timeout)
        f = self._file
        line = f.claim_line
        with f.locked():
            data, records = f.read()
            offset = next((r.offset for r in records
                           if r.state == FREE and r.length == RECORD - 1), None)
            if offset is None:
                offset = len(data)
                if data and not data.endswith(b"\n"):  # a dead writer's torn line
                    os.pwrite(f.fd, b"\n", offset)
                    offset += 1
            os.pwrite(f.fd, line, offset)
            f.trim(max(len(data), offset + RECORD), records, keep=offset + RECORD)
        try:
            self.sem.acquire(timeout)
        except BaseException:
            f.mark(offset, FREE)
            raise
        f.mark(offset, HOLDING)        # the one write between decrement and record
        f.held.append(offset)

    def release(self) -> None:
        """Give back a unit this process holds through the ledger: mark its
        record releasing, ``sem.release()``, free the record."""
        f = self._file
        try:
            offset = f.held.pop()
        except IndexError:
            raise ValueError("release() of a unit this process does not hold "
                             "through the ledger") from None
        f.mark(offset, RELEASING)
        try:
            self.sem.release()
        except BaseException:
            f.mark(offset, HOLDING)
            f.held.append(offset)
            raise
        f.mark(offset, FREE)

    def hold(self, timeout: float | None = None) -> _Held:
        """A context manager: ``acquire(timeout)`` ... ``release()``."""
        return _Held(self, timeout)

    def holders(self) -> list[int]:
        """The pids recorded as holding a unit now (one entry per unit)."""
        f = self._file
        with f.locked():
            _, records = f.read()
        return [r.pid for r in records if r.state == HOLDING]

    def _settled(self, f: _File) -> tuple[list[_Record], int, set[int]]:
        """The records, the semaphore's value and the offsets of the dead
        records, all of one instant.  Under the file lock records change
        only by their holders' one-byte marks (w->h, w->-, h->r->-), so the
        file read the same before and after the value and the liveness checks
        means no mark fell in between: the value agrees with the states (a
        live holder read ``h`` had not begun its release), and a record found
        dead was final when read.  A mark in between means: read again."""
        while True:
            data, records = f.read()
            value = self.sem.value if self.capacity is not None else 0
            if f.read()[0] != data:
                continue
            dead = {r.offset for r in records
                    if r.state != FREE and not _alive(r.pid, r.start)}
            if f.read()[0] == data:
                return records, value, dead

    def recover(self) -> list[int]:
        """Give back the units of recorded holders that are dead (see the
        module docstring); return their pids, one per unit."""
        f = self._file
        given: list[int] = []
        with f.locked():
            records, value, dead = self._settled(f)
            live = 0                       # live records that may hold a unit
            live_unsure = 0                # ... of them, waiting or releasing
            unsure: list[_Record] = []     # dead records, waiting or releasing
            for rec in records:
                if rec.state == FREE:
                    continue
                if rec.offset not in dead:
                    live += 1
                    live_unsure += rec.state != HOLDING
                elif rec.state == HOLDING:
                    f.free(rec)
                    self.sem.release()
                    given.append(rec.pid)
                else:
                    unsure.append(rec)
            if unsure and self.capacity is not None:
                # (value was read before the units of the dead holders above came back)
                lost = min(self.capacity - value - len(given) - live, len(unsure))
                for rec in unsure[:max(lost, 0)]:
                    f.free(rec)
                    self.sem.release()
                    given.append(rec.pid)
                del unsure[:max(lost, 0)]
            if unsure and (self.capacity is None or not live_unsure):
                for rec in unsure:         # nothing more can be known of them
                    f.free(rec)
            data, records = f.read()
            f.trim(len(data), records)
        return given


class _Held:
    def __init__(self, ledger: Ledger, timeout: float | None) -> None:
        self.ledger, self.timeout = ledger, timeout

    def __enter__(self) -> Ledger:
        self.ledger.acquire(self.timeout)
        return self.ledger

    def __exit__(self, *exc: object) -> None:
        self.ledger.release()
