"""Core functions for the Lua face of ipc.lanes (face.lua).

The face encodes a lane's function and arguments (wire.lua) and decodes
its results; these move the bytes and manage the processes (see
``ipc/lanes/__init__.py`` for the protocol and what survives a kill).  A
timeout is None (forever), 0 or > 0; one that passes is ``False``.
"""
from __future__ import annotations

import _signal as signal  # not signal: its wrapper imports enum (start-up)
import os

from .._timeout import FOREVER
from ..linda import Linda
from . import Pool, done, nproc, take

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Literal

__all__ = ["pool", "submit", "result", "running", "cancel", "kill", "close", "nproc",
           "serve", "take", "done", "FOREVER"]


def pool(n: float, engine: bytes, once: bool, *env: bytes) -> Pool:
    """A Pool; ``env`` (name, value, name, value...) replaces the
    processes' environment when given (the face always passes LUAIPC_ENGINE
    through it then)."""
    environ = None
    if env:
        environ = {env[i].decode(errors="surrogateescape"): env[i + 1].decode(
            errors="surrogateescape") for i in range(0, len(env), 2)}
    return Pool(int(n), engine.decode(), once=once, env=environ)


def submit(p: Pool, job: int, payload: bytes) -> None:
    p.submit(int(job), payload)


def result(p: Pool, job: int, timeout: float | None) -> bytes | Literal[False]:
    got = p.result(int(job), timeout)
    return False if got is None else got


def running(p: Pool, job: int) -> bytes:
    """``"pending"``, ``"running"`` or ``"waiting"`` (see Pool.state)."""
    return p.state(int(job)).encode()



def cancel(p: Pool, job: int) -> bool:
    return p.cancel(int(job))


def kill(p: Pool, job: int) -> bool:
    """SIGKILL the process running ``job`` (a cancel whose time ran out)."""
    pid = p.running(int(job))
    return pid is not None and p.signal(pid, signal.SIGKILL)


def close(p: Pool) -> None:
    p.close()


def serve(name: bytes) -> tuple[Linda, int]:
    """In a lane process: its pool's linda, and its pid."""
    return Linda(name, create=False), os.getpid()


