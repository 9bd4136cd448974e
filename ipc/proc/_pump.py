"""The loop behind ``wait()``: one poll() over a child's pipes, the writes
and reads it allows, and reaping (what it promises is in the docstring of
``ipc.proc``: CPython's ``communicate`` made incremental).

No callbacks and no policy here: the Python API (``ipc.proc``) hands the
output of each turn (``Pump.step``) to its callback, the Lua core
(``ipc/proc/lua.py``) to Lua.
"""
from __future__ import annotations

import collections
import os
import select
import subprocess
from _signal import (  # the C module (signal wraps these in enums): cheap per write
    SIG_BLOCK,
    SIG_IGN,
    SIG_UNBLOCK,
    SIGPIPE,
    getsignal,
    pthread_sigmask,
    sigtimedwait,
)
from typing import Any

from .._timeout import Deadline, poll_ms

__all__ = ["READ_SIZE", "Pump", "wait_exit"]

#: Bytes asked for per read: the default pipe buffer, so one read empties it.
#: (Measured: larger reads, or pipes grown with F_SETPIPE_SZ, were slower:
#: glibc serves > 128 KiB with mmap, and a 1 MiB pipe ring falls out of L2.)
READ_SIZE = 65536
#: Reads per stream per step when each one comes back full (bounded latency).
_READS_PER_STEP = 16
#: Small queued writes are joined up to this size before each write(2), so
#: 100,000 tiny writes cost a few hundred syscalls, not 100,000.
_JOIN_SIZE = 1 << 20
_POLLIN = select.POLLIN | select.POLLPRI | select.POLLHUP | select.POLLERR
_POLLOUT = select.POLLOUT | select.POLLHUP | select.POLLERR
_SIGPIPE_SET = (SIGPIPE,)


def wait_exit(popen: subprocess.Popen[bytes], timeout: float | None) -> bool:
    """Reap ``popen``; with a timeout, sleep in poll() on a pidfd (Linux 5.3+)
    instead of polling waitpid.  True when it has been reaped."""
    if popen.returncode is not None:
        return True
    if timeout is None:
        popen.wait()  # blocking waitpid: no CPU while the child runs
        return True
    if timeout > 0 and hasattr(os, "pidfd_open"):
        try:
            pidfd = os.pidfd_open(popen.pid)
        except OSError:  # reaped elsewhere, no pidfd support, or EMFILE: wait below
            pidfd = -1
        if pidfd >= 0:
            try:
                p = select.poll()
                p.register(pidfd, select.POLLIN)
                p.poll(poll_ms(timeout))
            finally:
                os.close(pidfd)
            return popen.poll() is not None
    if timeout > 0:
        try:
            popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True
    return popen.poll() is not None


class Pump:
    """The selector loop over one set of pipes (no callbacks, no policy).

    ``step(timeout, out)`` waits at most ``timeout`` seconds for any pipe to
    be ready, does the I/O that is possible without blocking and appends
    ``name, data`` to ``out``, flat (``data`` bytes, or an ``OSError`` for
    a failed read): a turn that moves sixteen chunks makes no object per
    chunk.  When every output pipe has reached EOF and no input is pending,
    it reaps the children instead; ``done`` becomes true once all are
    reaped.  Once a single output pipe is left and no input can come,
    ``blocking`` is its descriptor (made blocking) and ``blocking_name`` its
    name: a caller may then read it itself, one chunk per turn.
    """

    def __init__(self, popens: list[subprocess.Popen[bytes]], stdin: int,
                 outputs: list[tuple[int, Any]]) -> None:
        self.popens = popens
        self.in_fd = stdin                      # -1: no stdin pipe (or closed)
        self.pending: collections.deque[bytes | memoryview] = collections.deque()
        self.pending_bytes = 0
        self.eof = False                        # close stdin once drained
        self.names: dict[int, Any] = {}
        self.poll = select.poll()
        for fd, name in outputs:
            os.set_blocking(fd, False)
            self.names[fd] = name
            self.poll.register(fd, _POLLIN)
        if stdin >= 0:
            os.set_blocking(stdin, False)
        self.writing = False                    # stdin registered for POLLOUT
        self.blocking = -1                      # the output fd made blocking
        self.blocking_name: Any = None          # ... and its name
        self.done = False

    # -- input ---------------------------------------------------------------

    def feed(self, data: bytes) -> None:
        if data:
            self.pending.append(data)
            self.pending_bytes += len(data)
            if not self.writing and self.in_fd >= 0:
                self.poll.register(self.in_fd, _POLLOUT)
                self.writing = True

    def close_input(self) -> None:
        self.eof = True
        if not self.pending:
            self._close_stdin()

    def _close_stdin(self) -> None:
        fd, self.in_fd = self.in_fd, -1
        self.pending.clear()
        self.pending_bytes = 0
        if fd >= 0:
            if self.writing:
                self.poll.unregister(fd)
                self.writing = False
            os.close(fd)

    def _write(self) -> None:
        if getsignal(SIGPIPE) == SIG_IGN:  # Python's default
            self._write_pending()
            return
        # SIGPIPE is not ignored (luaipc handles it, as lua dies of it): a
        # write to a child that exited would end this process instead of
        # failing with EPIPE.  Block it for the writes; the kernel sends the
        # SIGPIPE of a failed write(2) to the writing thread, so the one left
        # pending is ours: take it back before unblocking.
        old = pthread_sigmask(SIG_BLOCK, _SIGPIPE_SET)
        try:
            if self._write_pending():
                sigtimedwait(_SIGPIPE_SET, 0)
        finally:
            if SIGPIPE not in old:
                pthread_sigmask(SIG_UNBLOCK, _SIGPIPE_SET)

    def _write_pending(self) -> bool:
        """Write what the pipe takes now; True if the child stopped reading."""
        pending, fd = self.pending, self.in_fd
        while pending:
            head = pending[0]
            if len(head) < _JOIN_SIZE and len(pending) > 1:
                parts, size = [], 0
                while pending and size < _JOIN_SIZE:
                    part = pending.popleft()
                    parts.append(part)
                    size += len(part)
                head = b"".join(parts)
                pending.appendleft(head)
            try:
                n = os.write(fd, head)
            except BlockingIOError:
                return False
            except BrokenPipeError:
                # The child stopped reading (exited, closed stdin): nobody
                # will take the rest.  As communicate(): not an error.
                self._close_stdin()
                return True
            self.pending_bytes -= n
            if n < len(head):
                pending[0] = memoryview(head)[n:]
                return False
            pending.popleft()
        self.poll.unregister(fd)
        self.writing = False
        if self.eof:
            self._close_stdin()
        return False

    # -- the loop --------------------------------------------------------------

    def step(self, timeout: float | None, out: list[Any]) -> None:
        if self.done:
            return
        names = self.names
        if not names and not self.writing:
            self._reap(timeout)
            return
        if timeout is None and self.in_fd < 0 and len(names) == 1:
            # One pipe left and no input can ever come: a blocking read is
            # the whole loop (what subprocess does), one syscall per chunk.
            self._read_blocking(out)
            return
        ready = self.poll.poll(poll_ms(timeout))
        for fd, _ev in ready:
            if fd == self.in_fd:
                self._write()
                continue
            name = names.get(fd)
            if name is None:
                continue
            for _ in range(_READS_PER_STEP):
                try:
                    data = os.read(fd, READ_SIZE)
                except BlockingIOError:
                    break
                except OSError as exc:
                    out.append(name)
                    out.append(exc)
                    data = b""
                if not data:  # EOF (or a failed read): this pipe is done
                    self.poll.unregister(fd)
                    del names[fd]
                    os.close(fd)
                    break
                out.append(name)
                out.append(data)
                if len(data) < READ_SIZE:
                    break
        if not names and not self.writing and (self.in_fd < 0 or not self.pending):
            # Nothing left to move: reap now if that costs no waiting.
            self._reap(0)

    def _read_blocking(self, out: list[Any]) -> None:
        ((fd, name),) = self.names.items()
        if fd != self.blocking:
            os.set_blocking(fd, True)   # once: this fd stays the last one
            self.blocking, self.blocking_name = fd, name
        try:
            data = os.read(fd, READ_SIZE)  # EINTR: retried, or Ctrl-C raises
        except OSError as exc:
            out.append(name)
            out.append(exc)
            data = b""
        if data:
            out.append(name)
            out.append(data)
            return
        self.blocking = -1
        self.poll.unregister(fd)
        del self.names[fd]
        os.close(fd)
        self._reap(0)

    def _reap(self, timeout: float | None) -> None:
        deadline = Deadline(timeout)
        for p in self.popens:
            if not wait_exit(p, deadline.remaining()):
                return
        self.done = True
        self._close_stdin()

    def close(self) -> None:
        """Close every pipe we still hold (the children are not touched)."""
        self._close_stdin()
        self.blocking = -1
        for fd in list(self.names):
            self.poll.unregister(fd)
            del self.names[fd]
            try:
                os.close(fd)
            except OSError:
                pass


def wait_any(pumps: list[Pump], timeout: float | None) -> None:
    """Sleep until at least one of ``pumps`` can move (a pipe is ready, or a
    child whose pipes are all closed has exited), or ``timeout`` passes.

    One ``poll`` over every pump's pipes, and over a pidfd (``pidfd_open``,
    Linux 5.3+) for each child left to reap, so that waiting on many
    processes is one sleep in the kernel: no thread per process, no busy
    loop.  The caller then steps each pump with a zero timeout."""
    poll = select.poll()
    pidfds: list[int] = []
    try:
        for p in pumps:
            if p.done:
                return
            if p.blocking >= 0:
                # A blocking read (Pump.step's one-pipe shortcut) would stall
                # the others: back to non-blocking for a shared loop.
                os.set_blocking(p.blocking, False)
                p.blocking, p.blocking_name = -1, None
            for fd in p.names:
                poll.register(fd, _POLLIN)
            if p.writing:
                poll.register(p.in_fd, _POLLOUT)
            if not p.names and not p.writing:
                for popen in p.popens:
                    if popen.returncode is None:
                        try:
                            fd = os.pidfd_open(popen.pid)
                        except ProcessLookupError:
                            return  # reaped already (not by us): step() sees it
                        pidfds.append(fd)
                        poll.register(fd, select.POLLIN)
        poll.poll(poll_ms(timeout))
    finally:
        for fd in pidfds:
            os.close(fd)


def pump_fds(pump: Any, writing: bool) -> tuple[list[tuple[int, int]], list[int]] | None:
    """What to poll for one ``ipc.proc`` Pump to be able to move:
    ``([(fd, events)...], pidfds)``, the pidfds new (the caller closes
    them); None if it can move now.  As ``_pump.wait_any`` does for many:
    a pipe made blocking for the one-pipe shortcut goes back to
    non-blocking, which a shared loop needs."""
    if pump.done:
        return None
    if pump.blocking >= 0:
        os.set_blocking(pump.blocking, False)
        pump.blocking, pump.blocking_name = -1, None
    fds = [(fd, select.POLLIN) for fd in pump.names]
    want_out = pump.in_fd >= 0 and (writing or pump.writing)
    if want_out:
        fds.append((pump.in_fd, select.POLLOUT))
    pidfds: list[int] = []
    if not fds:
        for popen in pump.popens:
            if popen.returncode is None:
                try:
                    pidfds.append(os.pidfd_open(popen.pid))
                except ProcessLookupError:  # reaped already: step() sees it
                    for fd in pidfds:
                        os.close(fd)
                    return None
        if not pidfds:
            return None
    return fds, pidfds
