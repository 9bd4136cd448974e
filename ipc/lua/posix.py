"""Python half of posix.lua: what lupa's PUC-Lua builds lack.

lupa compiles Lua 5.1-5.5 without LUA_USE_POSIX, so ``io.popen`` says
"'popen' not supported", ``os.execute`` returns the raw wait status (768
for ``exit 3``) and ``os.tmpname`` uses tmpnam.  The interpreter and
``new_runtime()`` restore what the ``lua`` command has; ``install()`` into a
caller's runtime leaves its standard library alone.
"""
from __future__ import annotations

import errno
import os

__all__ = ["popen", "path", "opened", "wait", "tmpname"]

# subprocess and tempfile are imported when a script first asks for
# io.popen / os.tmpname: together they cost ~4 ms of every start-up.


class _Popen:
    """One io.popen child: the pipe end Lua reads or writes, and the child."""

    def __init__(self, cmd: bytes, mode: bytes):
        import subprocess
        reading = mode.startswith(b"r")
        # io.popen runs its command through /bin/sh, as C's popen(3) does.
        self.proc = subprocess.Popen(  # noqa: S602
            cmd, shell=True,
            stdout=subprocess.PIPE if reading else None,
            stdin=None if reading else subprocess.PIPE)
        pipe = self.proc.stdout if reading else self.proc.stdin
        if pipe is None:  # never: the pipe was asked for (this tells the type checker)
            raise OSError(errno.EPIPE, os.strerror(errno.EPIPE))
        self.fd = pipe.fileno()
        self.pipe = pipe

    def path(self) -> bytes:
        return f"/dev/fd/{self.fd}".encode()

    def opened(self) -> None:
        # Lua has its own descriptor on the pipe now; drop ours so EOF works.
        self.pipe.close()

    def wait(self) -> tuple[bool | None, bytes, int]:
        """os.execute-style result of the child: ok, "exit"|"signal", code."""
        status = self.proc.wait()
        if status < 0:
            return None, b"signal", -status
        return (True if status == 0 else None), b"exit", status


# posix.lua looks these up once and calls them with the child: it never
# looks up attributes of Python objects per call (see ipc/lua/support.lua).
def popen(cmd: bytes, mode: bytes) -> _Popen | tuple[None, bytes, int]:
    """A new child, or ``None, "cmd: strerror", errno`` as lua's io.popen
    says a failure (no descriptor left, no process left...)."""
    try:
        return _Popen(cmd, mode)
    except OSError as exc:  # the lazy import of subprocess included (EMFILE)
        code = exc.errno or 0
        return None, cmd + b": " + os.strerror(code).encode(), code


def path(child: _Popen) -> bytes:
    return child.path()


def opened(child: _Popen) -> None:
    child.opened()


def wait(child: _Popen) -> tuple[bool | None, bytes, int]:
    return child.wait()


def tmpname() -> bytes:
    import tempfile
    fd, path = tempfile.mkstemp(prefix="lua_")
    os.close(fd)
    return os.fsencode(path)
