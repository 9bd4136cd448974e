"""Core functions of the Lua face of ipc.proc (see face.lua).

The event loop of ``h:wait()`` runs in Lua and calls ``step`` once per turn:
Python waits for readiness, moves the bytes and hands back what arrived;
Lua calls the callback.  So a callback may yield on every engine: no yield
ever has to cross a Python frame.
"""
from __future__ import annotations

import errno as _errno
import os
import signal as _signal
from typing import TYPE_CHECKING, Any

from ..lua.support import lua_file_fd
from . import Process, shutdown_all
from ._pump import READ_SIZE, Pump, wait_any as _wait_any

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["spawn", "step", "step_now", "wait_any", "kill", "describe", "eof"]

_read = os.read


class _EOFType:
    """proc.EOF: one unique value (a userdata in Lua, as LuaIPC's)."""
    __slots__ = ("__weakref__",)

    def __repr__(self) -> str:
        return "proc.EOF"

    __str__ = __repr__


def eof() -> _EOFType:
    """A new proc.EOF for one runtime's face (the face keeps it and compares
    it raw; each runtime gets its own object, see ipc/lua/crossing.py)."""
    return _EOFType()


def _noop(stream: object, data: bytes) -> None:  # the Lua face delivers output itself
    pass


class LuaProcess(Process):
    """A Process whose stream names are already Lua strings."""
    _NAMES = (b"stdout", b"stderr")


def _stream(v: object) -> bool | int | None:
    if v is True:
        return True
    if isinstance(v, bytes):
        return lua_file_fd(v)
    return None


def spawn(cmd: bytes, stdin: object, stdout: object, stderr: object) -> tuple[
        LuaProcess, Callable[[], tuple[Any, ...] | None]]:
    """A LuaProcess and its reader (or an OSError: the face returns nil,
    msg, errno)."""
    h = LuaProcess(cmd, stdin=_stream(stdin), stdout=_stream(stdout),
                   stderr=_stream(stderr), callback=_noop)
    return h, _reader(h)


_INTERRUPTED = (None, b"interrupted!")


def _read_last(h: LuaProcess, pump: Pump) -> tuple[Any, ...] | None:
    """One blocking read of h's last output pipe, when nothing is left to
    feed: ``(stream, chunk)``; None when there is no such pipe, at EOF or on
    a failed read (step's general path then reaps or reports it);
    ``(nil, "interrupted!")`` after Ctrl-C, the child shut down."""
    fd = pump.blocking
    if fd < 0:
        return None
    try:
        chunk = _read(fd, READ_SIZE)
    except KeyboardInterrupt:
        h.shutdown(0.5)
        return _INTERRUPTED
    except OSError:
        return None
    return (pump.blocking_name, chunk) if chunk else None


def _reader(h: LuaProcess) -> Callable[[], tuple[Any, ...] | None]:
    """The turn of h:wait() once a single output pipe is left and no input
    can come (step says so with code 1): _read_last with no arguments to
    convert."""
    pump = h.pump

    def read() -> tuple[Any, ...] | None:
        return _read_last(h, pump)
    return read


def step(h: LuaProcess, data: bytes | None, eof: bool | None) -> tuple[Any, ...]:
    """Feed ``data`` (queued by h:write since the last turn), close stdin if
    ``eof``, wait for the pipes and move bytes.  Returns ``kind, code`` and
    then the output: ``stream, data`` pairs, or ``stream, errno, message``
    for a failed read.  ``kind`` is false while running (``code`` is 1 once
    a single output pipe is left and no input can come: the reader that
    spawn returned can do the next turns), "exit"/"signal" once reaped,
    nil on failure: ``nil, message, errno`` for an OS error,
    ``nil, "interrupted!"`` for Ctrl-C.  Errors come back as values, so the
    face needs no pcall per turn."""
    pump = h.pump
    got = _read_last(h, pump)  # the last pipe, nothing to feed: one read is the turn
    if got is _INTERRUPTED:
        return got
    if got is not None:
        return (False, 1, *got)
    return _step(h, pump, data, eof, None)


def step_now(h: LuaProcess, data: bytes | None, eof: bool | None) -> tuple[Any, ...]:
    """``step`` that does not wait: what moves now, for proc.waitall, which
    sleeps in ``wait_any`` over every handle instead.  Code 1 is never
    returned (the one-pipe reader would block the others)."""
    return _step(h, h.pump, data, eof, 0)


def _step(h: LuaProcess, pump: Pump, data: bytes | None, eof: bool | None,
          timeout: float | None) -> tuple[Any, ...]:
    out: list[Any] = []
    try:
        if data is not None:
            pump.feed(data)
        if eof and not pump.eof:
            pump.close_input()
        pump.step(timeout, out)
    except KeyboardInterrupt:
        # Ctrl-C: do not leave the child running (term, a grace, then kill).
        h.shutdown(0.5)
        return (None, b"interrupted!")
    except OSError as exc:
        code = exc.errno or _errno.EIO
        return (None, (exc.strerror or os.strerror(code)).encode(errors="replace"), code)
    rc = h.returncode if pump.done else None
    head: tuple[Any, ...]
    if rc is None:
        head = (False, 1 if pump.blocking >= 0 and timeout is None else 0)
    else:
        head = (b"signal", -rc) if rc < 0 else (b"exit", rc)
    if not out:
        return head
    if len(out) == 2 and type(out[1]) is bytes:
        return (*head, out[0], out[1])
    flat = list(head)
    for i in range(0, len(out), 2):
        name, data = out[i], out[i + 1]
        if isinstance(data, OSError):
            code = data.errno or _errno.EIO
            msg = (data.strerror or os.strerror(code)).encode(errors="replace")
            flat += [name, code, msg]
        else:
            flat += [name, data]
    return tuple(flat)


def wait_any(*handles: LuaProcess) -> tuple[Any, ...]:
    """Sleep until one of ``handles`` can move (``_pump.wait_any``: one
    poll over every pipe and pidfd).  ``()`` then; ``nil, message, errno``
    for an OS error (EMFILE for a pidfd, say); ``nil, "interrupted!"`` for
    Ctrl-C, every child shut down first."""
    try:
        _wait_any([h.pump for h in handles], None)
    except KeyboardInterrupt:
        shutdown_all(0.5, list(handles))  # one grace for all of them
        return _INTERRUPTED
    except OSError as exc:
        code = exc.errno or _errno.EIO
        return (None, (exc.strerror or os.strerror(code)).encode(errors="replace"), code)
    return ()


_SIGNALS = {b"term": _signal.SIGTERM, b"kill": _signal.SIGKILL}


def kill(h: LuaProcess, sig: bytes) -> bool:
    h.send_signal(_SIGNALS[sig])
    return True


def describe(h: LuaProcess) -> bytes:
    rc = h.returncode
    if rc is None:
        return f"pid {h.pid}".encode()
    return f"pid {h.pid}, {'signal' if rc < 0 else 'exit'} {abs(rc)}".encode()
