"""Python half of the Lua faces' shared helpers (see support.lua)."""
from __future__ import annotations

import ctypes
import errno
import os

__all__ = ["classify", "token"]


class _Token:
    """The Python object behind a Lua handle on PUC-Lua 5.2+ (support.lua
    gives lupa's userdata for it the handle's metatable)."""

    __slots__ = ("__weakref__",)


def token() -> _Token:
    """A new token: one per handle, so Lua never gets one twice."""
    return _Token()


def anew(exc: BaseException) -> BaseException:
    """A new exception that Lua sees as it would see ``exc``, for code that
    got ``exc`` back from Lua and must raise it again: re-raising the same
    object would hand it to Lua a second time (see crossing.py)."""
    try:
        new = type(exc)(*exc.args)
    except Exception:  # noqa: BLE001  (a constructor that wants other arguments)
        return RuntimeError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, OSError) and isinstance(new, OSError):
        new.errno, new.strerror, new.filename = exc.errno, exc.strerror, exc.filename
    return new


def classify(exc: BaseException) -> tuple[bytes, bytes, int] | tuple[bytes, bytes]:
    """How a Python exception reaches Lua: ``("os", strerror, errno)`` for an
    OS failure (the face returns ``nil, msg, errno``), ``("error", msg)``
    for anything else (the face raises a Lua error with msg)."""
    if isinstance(exc, OSError) and isinstance(exc.errno, int):
        text = exc.strerror or os.strerror(exc.errno)
        return b"os", text.encode(errors="replace"), exc.errno
    if isinstance(exc, KeyboardInterrupt):
        return b"error", b"interrupted!"  # what lua.c says on Ctrl-C
    return b"error", f"{type(exc).__name__}: {exc}".encode(errors="replace")


_libc = ctypes.CDLL(None, use_errno=True)
_libc.fileno.argtypes = [ctypes.c_void_p]
_libc.fileno.restype = ctypes.c_int
_HEX = frozenset(b"0123456789abcdefABCDEF")


def _file_address(text: bytes) -> int | None:
    r"""The hex number in the ``(0x...)`` that ends ``text``, as the regular
    expression ``\((?:0x)?([0-9a-fA-F]+)\)\s*$`` finds it; without re, which
    costs ~3 ms of the first ``require`` of any module."""
    body = text.rstrip()
    if not body.endswith(b")"):
        return None
    _, paren, digits = body[:-1].rpartition(b"(")
    if not paren:
        return None
    if digits.startswith(b"0x") and len(digits) > 2:
        digits = digits[2:]
    if not digits or not _HEX.issuperset(digits):
        return None
    return int(digits, 16)


def lua_file_fd(text: bytes) -> int:
    """The descriptor of an open Lua file, from its ``tostring()``.

    A Lua io file reaches Python only as a userdata lupa cannot look into,
    but ``tostring(f)`` is ``"file (0x...)"``, the address of its C
    ``FILE*``, on every engine; libc's ``fileno()`` of it is the descriptor.
    The caller must check ``io.type(f) == "file"`` first (a closed file's
    FILE* is gone).  Raises OSError(EBADF) when there is no address.
    """
    address = _file_address(text)
    if address is None:
        raise OSError(errno.EBADF, os.strerror(errno.EBADF))
    fd: int = _libc.fileno(address)
    if fd < 0:
        code = ctypes.get_errno() or errno.EBADF
        raise OSError(code, os.strerror(code))
    return fd
