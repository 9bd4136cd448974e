"""Whether any process at all has a file open or mapped: the kernel's answer.

/proc shows only the processes we may inspect (holders.py), but the
kernel counts, on every inode, the open files that may read it and those
that may write it (``i_readcount``, ``i_writecount``), whoever owns them
and in whatever namespace; a mapping keeps its file, so a segment or a
semaphore that was mapped and whose descriptor was closed still counts,
and so does a descriptor in flight over a socket.  A write lease
(``F_SETLEASE``, ``F_WRLCK``) is granted only when no open file but the
caller's own is counted (fs/locks.c, ``check_conflicting_open``; exact
since Linux 5.3, before which any other reference refused it, which errs
on the safe side).  Taking one therefore answers "does anybody use it?"
for the whole machine, and holding it keeps the answer true: a process
that opens the file meanwhile waits until we let go (the kernel breaks
the lease, after ``/proc/sys/fs/lease-break-time`` seconds at most).

Our descriptor is opened with access mode 3 (``O_RDWR|O_WRONLY``, which
Linux documents in open(2) as "check for read and write permission, and
give a descriptor that can neither read nor write"): it counts as
neither, so ipcctl runs probing the same file at once do not take each
other for users.  Only the file's owner (or CAP_LEASE) may take a lease:
for another user's object the answer is "cannot tell".
"""
from __future__ import annotations

import fcntl
import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

FREE, BUSY, GONE = "free", "busy", "gone"

_NO_ACCESS = os.O_RDWR | os.O_WRONLY  # access mode 3, see above
_OPEN_FLAGS = _NO_ACCESS | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC
#: tries, 1 ms apart, to open a file someone holds a lease on: another
#: ipcctl holds one for microseconds; a holder that keeps one is a user
_OPEN_TRIES = 200


def _sigio_ignored() -> bool:
    """Make sure SIGIO cannot kill us.

    The kernel sends SIGIO to a lease holder when another process opens
    the file, and SIGIO's default action ends the process.  Ignoring a
    signal whose default is to die changes nothing else; only the main
    thread may change a disposition, so elsewhere we cannot lease.
    """
    handler = signal.getsignal(signal.SIGIO)
    if handler is signal.SIG_IGN or callable(handler):
        return True
    if handler is not signal.SIG_DFL:
        return False  # set outside Python: unknown
    try:
        signal.signal(signal.SIGIO, signal.SIG_IGN)
    except ValueError:  # not the main thread
        return False
    return True


def _open(path: str) -> int:
    """Open path for a lease.  Raises BlockingIOError while another
    process keeps a lease on it (open with O_NONBLOCK: EWOULDBLOCK)."""
    for _ in range(_OPEN_TRIES - 1):
        try:
            return os.open(path, _OPEN_FLAGS)
        except BlockingIOError:
            time.sleep(0.001)
    return os.open(path, _OPEN_FLAGS)


@contextmanager
def write_lease(path: str, dev: int, ino: int) -> Iterator[str | None]:
    """Lease the file at path, if it is still the inode (dev, ino).

    Yields FREE with the lease held until the ``with`` ends (no process
    has the file open or mapped, and one that opens it waits), BUSY (some
    process has it open or mapped, or keeps a lease on it), GONE (no file
    at path any more, or another one) or None (cannot tell: not our file,
    leases disabled or not supported there, or SIGIO cannot be ignored).
    """
    if not _sigio_ignored():
        yield None
        return
    try:
        fd = _open(path)
    except FileNotFoundError:
        yield GONE
        return
    except BlockingIOError:
        yield BUSY
        return
    except OSError:  # EACCES: not readable and writable by us; ELOOP: a symlink now
        yield None
        return
    try:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (dev, ino) or st.st_nlink == 0:
            yield GONE
            return
        try:
            fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
        except BlockingIOError:  # EAGAIN: open or mapped elsewhere
            yield BUSY
            return
        except OSError:  # EACCES: not ours; EINVAL: fs.leases-enable=0 or no leases here
            yield None
            return
        yield FREE
    finally:
        os.close(fd)  # gives the lease back


def probe(path: str, dev: int, ino: int) -> str | None:
    """What ``write_lease`` says of the file, the lease given back at once."""
    with write_lease(path, dev, ino) as verdict:
        return verdict
