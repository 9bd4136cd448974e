"""``ipc.sem.Ledger``: ownership records for a semaphore, so that units
held by processes that died can be given back."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from . import Semaphore

__all__ = ["Ledger"]


def _start_time(pid: int) -> Optional[float]:
    """The start time of a live process, None if it is gone (or a zombie)."""
    import psutil
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc.create_time()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None
    except psutil.AccessDenied:  # alive, but not ours to inspect
        return -1.0


class Ledger:
    """Ownership records for a semaphore, so units held by dead processes
    can be given back.

        ledger = ipc.sem.Ledger(sem, "/var/run/myapp/jobs.ledger")
        with ledger.hold(timeout=5):      # dec + record ... unrecord + inc
            work()
        ledger.recover()                  # anyone: return dead holders' units

    Each holder appends ``pid start_time`` to the ledger file (under an
    fcntl lock on it, which the kernel releases if the writer dies), and
    removes its line before it increments again.  ``recover()`` increments
    the semaphore once per line whose process is gone (pid reuse is caught
    by the start time) and drops those lines.

    Limits: a holder killed between the decrement and its record (or
    between removing the record and incrementing) is not seen; that window
    lasts as long as the ledger file's lock and write, not an instant (the
    120 s stress run saw 5 such kills in 326).  A supervisor that also
    watches for "no progress and no recorded holder" covers it (see
    tests/test_stress.py).  All parties must go through the ledger.
    """

    def __init__(self, sem: Semaphore, path: str | os.PathLike) -> None:
        self.sem = sem
        self.path = Path(path)

    def _edit(self):
        from ..filelock import PathLock
        return PathLock(self.path, timeout=None)

    def _record(self, pid: int) -> None:
        me = _start_time(pid)
        with self._edit() as fh:
            fh.seek(0, os.SEEK_END)
            fh.write(f"{pid} {me!r}\n".encode())
            fh.flush()

    def _unrecord(self, pid: int) -> None:
        with self._edit() as fh:
            lines = self._lines(fh)
            for i, (p, _t) in enumerate(lines):
                if p == pid:
                    del lines[i]
                    break
            self._write(fh, lines)

    @staticmethod
    def _lines(fh) -> list[tuple[int, float]]:
        fh.seek(0)
        out = []
        for line in fh.read().decode().splitlines():
            parts = line.split()
            if len(parts) == 2:
                try:
                    out.append((int(parts[0]), float(parts[1])))
                except ValueError:
                    pass
        return out

    @staticmethod
    def _write(fh, lines) -> None:
        fh.seek(0)
        fh.truncate()
        fh.write("".join(f"{p} {t!r}\n" for p, t in lines).encode())
        fh.flush()

    def holders(self) -> list[int]:
        """The pids recorded as holding a unit now."""
        if not self.path.exists():
            return []
        with self._edit() as fh:
            return [p for p, _t in self._lines(fh)]

    def acquire(self, timeout: Optional[float] = None) -> None:
        """``sem.acquire(timeout)``, then record this process as a holder."""
        self.sem.acquire(timeout)
        try:
            self._record(os.getpid())
        except BaseException:
            self.sem.release()
            raise

    def release(self) -> None:
        """Remove this process's record, then ``sem.release()``."""
        self._unrecord(os.getpid())
        self.sem.release()

    def hold(self, timeout: Optional[float] = None) -> "_Held":
        """A context manager: ``acquire(timeout)`` ... ``release()``."""
        return _Held(self, timeout)

    def recover(self) -> list[int]:
        """Give back the units of recorded holders that are dead; return
        their pids."""
        if not self.path.exists():
            return []
        dead = []
        with self._edit() as fh:
            keep = []
            for pid, started in self._lines(fh):
                now = _start_time(pid)
                if now is None or (now > 0 and started > 0 and abs(now - started) > 1.0):
                    dead.append(pid)
                else:
                    keep.append((pid, started))
            if dead:
                self._write(fh, keep)
                for _ in dead:
                    self.sem.inc()
        return dead


class _Held:
    def __init__(self, ledger: Ledger, timeout: Optional[float]) -> None:
        self.ledger, self.timeout = ledger, timeout

    def __enter__(self) -> Ledger:
        self.ledger.acquire(self.timeout)
        return self.ledger

    def __exit__(self, *exc) -> None:
        self.ledger.release()

