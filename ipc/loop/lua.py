"""Core functions for the Lua face of ipc.loop (face.lua).

The scheduler (tasks, timers, wake order) is Lua; this is what it waits
with: one ``select.epoll`` per loop, made by ``new()`` and kept for the
loop's life, over descriptors the faces' blocking calls name (a message
queue's, a child's pipes and pidfd) and one eventfd that the helper
threads standing in for semaphores, fcntl locks and lindas write
(``_standin``).
Each wait is a token (an int): ``wait()`` gives back the tokens that are
ready, and the face resumes their tasks.  A watched descriptor is
``dup``-ed, so that two tasks may wait on one queue (epoll takes a
descriptor once) and a handle closed meanwhile cannot confuse the epoll.

A loop is its process's.  A child forked while it runs (``os.fork`` from a
task) has a copy of it whose helper threads did not survive the fork and
whose epoll and eventfd are the parent's own (one open file each, shared):
were the child to wait in it, it would hang, and it could read the wake-ups
meant for the parent, unregister the parent's descriptors, or give back
units that the parent's helpers took.  So in a child every wait is a clear
error (``Forked``), and ending the copied loop only closes the child's
copies of the descriptors.  The child may start a loop of its own once the
copy has ended.  (A ``proc`` child execs and inherits nothing: every
descriptor here is close-on-exec.)
"""
from __future__ import annotations

import fcntl
import os
import select
import threading
import time

from .._timeout import FOREVER
from ..filelock import _os as _lockos
from ._standin import LindaWaiter, LockWaiter, SemWaiter, mq_fd

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

__all__ = ["new", "wait", "fd", "sem", "lock", "linda", "proc", "result", "cancel", "close",
           "mqfd", "now", "pause", "FOREVER"]

class Forked(RuntimeError):
    """A wait in a loop that a forked child inherited (not an OSError: it
    is a misuse, so the Lua face raises it as an error)."""


_IN = select.EPOLLIN | select.EPOLLPRI | select.EPOLLERR | select.EPOLLHUP
_OUT = select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP


class Poller:
    """One loop's epoll, its eventfd and its waits."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.ep = select.epoll()
        try:
            self.efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        except BaseException:      # EMFILE: the epoll alone would be left open
            self.ep.close()
            raise
        self.ep.register(self.efd, select.EPOLLIN)
        self.next = 0
        self.owner: dict[int, int] = {}            # watched fd -> token
        self.fds: dict[int, list[int]] = {}        # token -> its fds (ours to close)
        self.helpers: dict[int, Any] = {}          # token -> _standin waiter
        self.done: list[int] = []                  # tokens helpers ended (any thread)
        self.done_lock = threading.Lock()
        self.stopped: list[Any] = []               # cancelled helpers, joined at close

    def token(self) -> int:
        self.next += 1
        return self.next

    def notifier(self, token: int) -> Any:
        def notify() -> None:
            with self.done_lock:
                self.done.append(token)
            try:
                os.eventfd_write(self.efd, 1)
            except OSError:  # the loop has closed: nobody waits any more
                pass
        return notify

    def mine(self) -> None:
        """Raise Forked in a child that inherited this loop (see above)."""
        if self.pid != os.getpid():
            raise Forked(f"ipc.loop: this loop belongs to process {self.pid}; a forked "
                         f"child cannot wait in it (once it has ended, start a loop "
                         f"of the child's own)")

    def watch(self, token: int, fds: list[tuple[int, int]], own: list[int]) -> None:
        """Watch dups of ``fds`` and ``own`` (then the token's to close)
        for ``token``.  All or nothing: on a failure (EMFILE on a dup;
        ENOSPC, ENOMEM from epoll_ctl) what was done is undone, the dups
        closed and ``own`` left to the caller, so a wait that fails leaves
        no descriptor and no stale registration behind."""
        dups: list[int] = []
        registered: list[int] = []
        try:
            for fd, events in fds:
                d = os.dup(fd)
                dups.append(d)
                self.ep.register(d, _OUT if events & select.POLLOUT else _IN)
                registered.append(d)
            for d in own:
                self.ep.register(d, _IN)
                registered.append(d)
        except BaseException:
            for d in registered:
                self.ep.unregister(d)
            for d in dups:
                os.close(d)
            raise
        self.fds[token] = mine = dups + list(own)
        for d in mine:
            self.owner[d] = token

    def drop(self, token: int) -> None:
        for d in self.fds.pop(token, ()):
            del self.owner[d]
            # Not in a forked child: the epoll is the parent's too, and an
            # unregister there would end the parent's wait (closing the
            # child's copy of d leaves the parent's registration be).
            if self.pid == os.getpid():
                self.ep.unregister(d)
            os.close(d)


def new() -> Poller:
    return Poller()


def now() -> float:
    return time.monotonic()


def pause(s: float) -> bool:
    """loop.sleep outside a loop task: a plain sleep (Ctrl-C ends it)."""
    time.sleep(s)
    return True


def wait(p: Poller, timeout: float | None) -> tuple[Any, ...]:
    """Sleep in the epoll until a wait is ready or ``timeout`` (None: no
    end) passes: ``(now, token, token...)``.  Ctrl-C raises here (the face
    ends run with "interrupted!")."""
    p.mine()
    events = p.ep.poll(-1 if timeout is None else max(timeout, 0.0))
    ready: list[Any] = [time.monotonic()]
    for d, _ev in events:
        if d == p.efd:
            try:
                os.eventfd_read(p.efd)
            except BlockingIOError:
                pass
            with p.done_lock:
                done, p.done = p.done, []
            ready += [t for t in done if t in p.helpers]
            continue
        t = p.owner.get(d)
        if t is not None:
            p.drop(t)
            ready.append(t)
    return tuple(ready)


def fd(p: Poller, fd: int, write: bool) -> int:
    """A token that becomes ready when ``fd`` is readable (writable)."""
    p.mine()
    t = p.token()
    p.watch(t, [(fd, select.POLLOUT if write else select.POLLIN)], [])
    return t


def mqfd(q: Any) -> int:
    """The descriptor of an ipc.mq handle, to poll."""
    return mq_fd(q)


def sem(p: Poller, s: Any) -> int:
    """0 if a unit of ipc Semaphore ``s`` was taken at once, else a token
    whose helper takes one (``result`` then says it is the task's)."""
    p.mine()
    if s.dec(0):
        return 0
    t = p.token()
    w = SemWaiter(s, p.notifier(t))
    w.start()          # (before it is recorded: a thread that cannot start is no wait)
    p.helpers[t] = w   # before wait() runs again (this thread), so its notify counts
    return t


def lock(p: Poller, fd: int, shared: bool, offset: float, nbytes: float) -> int:
    """As sem(), for an fcntl record lock (0: taken at once)."""
    p.mine()
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    if _lockos.trylock(fd, op, int(offset), int(nbytes)):
        return 0
    t = p.token()
    w = LockWaiter(fd, shared, int(offset), int(nbytes), p.notifier(t))
    w.start()
    p.helpers[t] = w
    return t


def linda(p: Poller, h: Any, write: bool, n: int, timeout: float | None,
          *keys: bytes | int) -> int:
    """A token that becomes ready when ipc.linda handle ``h`` may let a
    call go: ``write``, a send of ``n`` values to ``keys[0]``; else a
    receive of ``n`` values from one of ``keys`` (an ipc.lanes Pool ``h``:
    when the result of job ``keys[0]`` may have come).  Its helper only
    watches (``LindaWaiter``: the task retries the call itself, so a
    cancelled wait has taken nothing), and ends by itself after
    ``timeout``."""
    p.mine()
    # (Imported here: a loop without lindas does not load msgpack.)
    from ..linda import Linda, key_bit, receivable, sendable
    if not isinstance(h, Linda):
        # An ipc.lanes Pool, waited on for the result of job keys[0]: the
        # pool says what to look for (its results are drained out of the
        # linda as they come, so "the key has a value" would not do).
        ready, bits = h.watcher(int(keys[0]))
        h = h.linda
    else:
        n = int(n)
        names = [k for k in keys if isinstance(k, bytes)]
        ready = sendable(names[0], n) if write else receivable(names, n)
        bits = 0
        for k in names:
            bits |= key_bit(k)
    t = p.token()
    w = LindaWaiter(h, ready, bits, timeout, p.notifier(t))
    w.start()
    p.helpers[t] = w
    return t


def proc(p: Poller, writing: bool, *handles: Any) -> int:
    """0 if one of the ipc.proc ``handles`` can move now, else a token
    ready when one of their pipes (or, all closed, a pidfd) is: h:wait()
    gives one handle, proc.waitall several."""
    # Here, not at the top: only a script that has proc handles pays for
    # ipc.proc's import (subprocess, signal: about 7 ms of start-up).
    from ..proc._pump import pump_fds
    p.mine()
    fds: list[tuple[int, int]] = []
    pidfds: list[int] = []          # new descriptors: ours to close
    try:
        for h in handles:
            what = pump_fds(h.pump, writing)
            if what is None:        # it can move now: no wait
                break
            fds += what[0]
            pidfds += what[1]
        else:
            t = p.token()
            p.watch(t, fds, pidfds)  # all or nothing: on EMFILE, pidfds are still ours
            pidfds = []             # the watch owns them now
            return t
    finally:
        for d in pidfds:
            os.close(d)
    return 0


def result(p: Poller, t: int) -> bool:
    """A ready token's outcome: True, or the helper's error raised."""
    p.mine()
    w = p.helpers.pop(t, None)
    if w is None:
        return True
    return bool(w.result())


def cancel(p: Poller, t: int, give_back: bool) -> bool:
    """Forget a wait.  True if a helper had taken the unit anyway and
    ``give_back`` is false (a timeout that raced the wake: the task keeps
    it); else anything taken is returned."""
    p.drop(t)
    w = p.helpers.pop(t, None)
    if w is None:
        return False
    if p.pid != os.getpid():
        # A forked child's copy: its thread is gone, and what it took (if
        # anything) the parent holds and delivers.  Giving it back here
        # would make one unit two; its lock may even be held for ever (a
        # thread of the parent had it at the fork).  Forget it.
        return False
    kept = w.cancel(give_back)
    p.stopped.append(w)
    return bool(kept)


def close(p: Poller) -> bool:
    """End every wait (giving back what helpers took) and wait for the
    helpers, so that once run() returns nothing of the loop holds a unit."""
    for t in list(p.helpers):
        cancel(p, t, True)
    for t in list(p.fds):
        p.drop(t)
    stopped, p.stopped = p.stopped, []
    if p.pid == os.getpid():   # (a forked child has none of these threads)
        for w in stopped:
            w.join()
    p.ep.close()
    os.close(p.efd)
    return True
