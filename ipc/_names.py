"""Names of shared-memory segments, semaphores and message queues.

LuaIPC names an object ``"/" + name``, so a C program using
``shm_open("/name")`` or ``sem_open("/name")``, or the C LuaIPC, meets the
same object.  Names are checked here, before anything touches the OS, so a
bad name can neither escape ``/dev/shm`` nor leave a half-made object.
"""
from __future__ import annotations

import errno
import os

from ._errors import IPCError, os_error

NAME_MAX = 255  # Linux: a name is one file in /dev/shm or /dev/mqueue
SEM_NAME_MAX = NAME_MAX - 4  # glibc stores "/name" as /dev/shm/sem.name


def os_name(name: str | bytes, max_len: int = NAME_MAX) -> str:
    """Return the OS name (``"/" + name``) or raise an IPCError.

    Empty names, names with a ``/`` or a NUL byte get EINVAL (what
    ``shm_open`` gives the C LuaIPC for such a name), and so do names that
    are not UTF-8 (posix_ipc could not remove them); names longer than
    the OS allows get ENAMETOOLONG.
    """
    if isinstance(name, bytes):
        name = os.fsdecode(name)
    elif not isinstance(name, str):
        raise TypeError(f"name must be str or bytes, not {type(name).__name__}")
    if not name:
        raise _bad(errno.EINVAL, name, "name is empty")
    if "/" in name:
        raise _bad(errno.EINVAL, name, "name must not contain '/'"
                   + ("; the leading '/' of the C API is added for you" if name[0] == "/" else ""))
    if "\0" in name:
        raise _bad(errno.EINVAL, name, "name must not contain a NUL byte")
    if name in (".", ".."):
        raise _bad(errno.EINVAL, name, f"name must not be {name!r}")
    size = len(os.fsencode(name))
    if size > max_len:
        raise _bad(errno.ENAMETOOLONG, name, f"name too long ({size} > {max_len} bytes)")
    try:
        # posix_ipc makes an object of a name that is not UTF-8 (e.g. the Lua
        # name "a\xd1") but can never remove it (its unlink functions encode
        # strictly): refuse such a name rather than leave an object behind.
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(errno.EINVAL, name, "name must be UTF-8") from None
    return "/" + name


def _bad(code: int, name: str, reason: str) -> IPCError:
    exc = os_error(code, name)
    exc.reason = reason  # strerror stays the C text: the Lua triple is LuaIPC's
    return exc
