"""Python half of the Lua faces' shared helpers (see support.lua)."""
from __future__ import annotations

import os


class LuaArgError(Exception):
    """Raised by a face's Python code for misuse; reaches Lua as a plain error.

    ``LuaArgError(2, "read", "invalid format")`` becomes
    ``bad argument #2 to 'read' (invalid format)``; with one argument the
    message is used as it is.
    """

    def __init__(self, *args):
        if len(args) == 3:
            n, fname, msg = args
            text = f"bad argument #{n} to '{fname}' ({msg})"
        else:
            (text,) = args
        super().__init__(text)


def classify(exc: BaseException):
    """How a Python exception reaches Lua: ``("os", strerror, errno)`` for an
    OS failure (the face returns ``nil, msg, errno``), ``("error", msg)``
    for anything else (the face raises a Lua error with msg)."""
    if isinstance(exc, OSError) and isinstance(exc.errno, int):
        text = exc.strerror or os.strerror(exc.errno)
        return b"os", text.encode(errors="replace"), exc.errno
    if isinstance(exc, KeyboardInterrupt):
        return b"error", b"interrupted!"  # what lua.c says on Ctrl-C
    if isinstance(exc, LuaArgError):
        return b"error", str(exc).encode(errors="replace")
    return b"error", f"{type(exc).__name__}: {exc}".encode(errors="replace")
