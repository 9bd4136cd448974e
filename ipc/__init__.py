"""luaipc: inter-process communication for Lua and Python.

The modules (``ipc.shm``, ``ipc.sem``, ``ipc.mmap``, ``ipc.filelock``,
``ipc.proc``, ``ipc.strfile``, ``ipc.mq``, ``ipc.loop``, ``ipc.linda``,
``ipc.lanes``) load lazily on first use, so
``import ipc`` costs next to nothing; ``ipc.lua`` is the bridge that makes
them ``require``-able from a lupa ``LuaRuntime``.  ``ipc.cleanup_on_signals()``
(opt-in) makes SIGTERM and SIGHUP release what the program created.
"""
from __future__ import annotations

from ._errors import ExistsError, Interrupted, IPCError, NotFoundError, PermissionDenied, Timeout

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms of start-up

__version__ = "0.4.0"

#: The modules LuaIPC has, plus the ones luaipc adds, in ``require`` order.
MODULES = ("shm", "sem", "mmap", "filelock", "proc", "strfile", "mq", "loop", "linda",
           "lanes")

# The modules spelled out, not *MODULES: linters and type checkers read
# __all__ without running it.
__all__ = ["__version__", "MODULES", "IPCError", "ExistsError", "NotFoundError",
           "PermissionDenied", "Timeout", "Interrupted", "cleanup_on_signals", "lua",
           "shm", "sem", "mmap", "filelock", "proc", "strfile", "mq", "loop", "linda",
           "lanes"]

if TYPE_CHECKING:  # pragma: no cover
    from . import filelock, lanes, linda, loop, lua, mmap, mq, proc, sem, shm, strfile
    from ._signals import cleanup_on_signals


def __getattr__(name: str) -> object:
    # PEP 562: import a submodule the first time it is asked for (by
    # __import__, which sets it here: importing importlib costs ~0.3 ms).
    if name in MODULES or name == "lua":
        __import__(f"{__name__}.{name}")
        return globals()[name]
    if name == "cleanup_on_signals":
        from ._signals import cleanup_on_signals
        return cleanup_on_signals
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(MODULES) | {"lua", "cleanup_on_signals"})
