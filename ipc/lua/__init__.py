"""The bridge between the ipc modules and lupa's Lua engines.

``new_runtime(engine)`` gives a ready ``LuaRuntime`` in which
``require "ipc.shm"`` (and every other module, and ``require "ipc"``) works;
``install(runtime)`` does the same for a runtime the caller made.

Each module's Lua face is a Lua chunk (``ipc/<module>/face.lua``) that gets
the shared helpers of ``support.lua``, a Lua table of its core module's
``__all__`` (``ipc/<module>/lua.py``), and ``part(name)``, which gives the
Lua parts several faces share (``_PARTS``),
compiled once per runtime; it returns the module table.  Every Python
object reaches a runtime at most once (see ``crossing.py``: lupa can hand
Lua the wrong object otherwise), so each runtime gets its own copies of the
core functions, and Lua never indexes a Python object.  Python never holds
a reference to the runtime: the chunks are compiled and run by Lua itself
when ``require`` asks for them, so dropping the runtime frees it.
"""
from __future__ import annotations

import os
import sys

from .. import MODULES
from .crossing import fresh

TYPE_CHECKING = False
if TYPE_CHECKING:  # pragma: no cover (typing costs ~3 ms of luaipc's start-up)
    from types import ModuleType
    from typing import Any, Protocol

    # What new_runtime() gives.  Every engine's LuaRuntime (lupa.lua54,
    # lupa.luajit21...) is a class of its own, built from one Cython source
    # with one API: lupa's default class (the newest engine) stands for all.
    from lupa import LuaRuntime

    from .shared import SharedRuntime

    class _Runtime(Protocol):
        """What install() needs of a runtime: any engine's LuaRuntime."""

        def eval(self, lua_code: str, *args: Any) -> Any: ...
        def table(self, *items: Any, **kwargs: Any) -> Any: ...
        def table_from(self, *args: Any, recursive: bool = False) -> Any: ...

__all__ = ["ENGINES", "DEFAULT_ENGINE", "ENV_VAR", "EngineError", "resolve_engine",
           "lupa_module", "new_runtime", "install", "complete_stdlib", "run_chunk",
           "RUNTIME_OPTIONS", "SharedRuntime"]

#: Engine names (as users type them) and the lupa module that provides each.
ENGINES = {
    "lua5.1": "lupa.lua51",
    "lua5.2": "lupa.lua52",
    "lua5.3": "lupa.lua53",
    "lua5.4": "lupa.lua54",
    "lua5.5": "lupa.lua55",
    "luajit2.0": "lupa.luajit20",
    "luajit2.1": "lupa.luajit21",
}
DEFAULT_ENGINE = "lua5.4"
ENV_VAR = "LUAIPC_ENGINE"

#: What the faces need of a runtime: Lua strings stay bytes (binary data
#: round-trips), and ``return None, msg, errno`` arrives as three values.
#: Keyword arguments of ``LuaRuntime``: ``LuaRuntime(**RUNTIME_OPTIONS)``.
RUNTIME_OPTIONS: dict[str, Any] = {"encoding": None, "unpack_returned_tuples": True}


class EngineError(ValueError):
    """An unknown engine name, or an engine this lupa build lacks."""


def resolve_engine(engine: str | None = None) -> str:
    """The engine to use: the argument, else ``$LUAIPC_ENGINE``, else lua5.4."""
    name = engine or os.environ.get(ENV_VAR) or DEFAULT_ENGINE
    if name not in ENGINES:
        # Say where a bad name came from only when the caller did not pass
        # it: a stale $LUAIPC_ENGINE is otherwise a puzzle.
        source = "" if engine else f" (from ${ENV_VAR})"
        raise EngineError(f"unknown Lua engine {name!r}{source}; "
                          f"valid engines: {', '.join(ENGINES)}")
    return name


def _module(name: str) -> ModuleType:
    """importlib.import_module without importlib (~0.3 ms of start-up)."""
    __import__(name)
    return sys.modules[name]


def lupa_module(engine: str | None = None) -> ModuleType:
    """The lupa module (``lupa.lua54`` etc.) of an engine."""
    name = resolve_engine(engine)
    try:
        return _module(ENGINES[name])
    except ImportError as exc:  # a lupa build without this engine
        raise EngineError(f"Lua engine {name!r} is not available in this lupa "
                          f"installation ({exc})") from exc


def new_runtime(engine: str | None = None, **options: Any) -> LuaRuntime:
    """A new ``LuaRuntime`` of ``engine`` with the ipc modules installed.

    Extra keyword arguments go to ``LuaRuntime``; the two options the faces
    depend on (``RUNTIME_OPTIONS``) are set for you.
    """
    runtime: LuaRuntime = lupa_module(engine).LuaRuntime(**{**options, **RUNTIME_OPTIONS})
    install(runtime)
    complete_stdlib(runtime)
    return runtime


def install(runtime: _Runtime) -> None:
    """Make ``require "ipc.<module>"`` and ``require "ipc"`` work in ``runtime``.

    Nothing is imported or compiled until a script requires a module.
    """
    _check_runtime(runtime)
    run_chunk(runtime, _LOADER, b"=[ipc.loader]", fresh(_face),
              runtime.table_from([m.encode() for m in MODULES]))


def complete_stdlib(runtime: _Runtime) -> None:
    """Give a runtime what the ``lua`` command has and lupa's PUC-Lua builds
    lack (they are compiled without LUA_USE_POSIX): ``io.popen``, the
    decoded status of ``os.execute``, ``os.tmpname`` with mkstemp."""
    from . import posix
    core = runtime.table()
    exports = _exports(posix)
    for k, v in zip(exports[::2], exports[1::2], strict=True):
        core[k] = v
    run_chunk(runtime, _read_lua(__name__, "posix.lua"), b"=[ipc.posix]", core)


def run_chunk(runtime: _Runtime, source: bytes, chunkname: bytes, *args: object) -> Any:
    """Compile ``source`` with the runtime's own ``load`` and call it."""
    return runtime.eval(_RUN)(source, chunkname, *args)


# -- internals --------------------------------------------------------------

# Run once per install(): registers the preloaders; compiles nothing else.
_LOADER = b"""local face, modules = ...
  local load = loadstring or load   -- 5.1 and LuaJIT spell it loadstring
  local support
  local parts = {}                  -- shared Lua parts, compiled once
  -- Base functions as they are now, before any script runs (a script may
  -- replace a global before its first require): for the C API, which acts
  -- on what they report (ipc/_memfile.lua).
  local base = { version = _VERSION, tostring = tostring, format = string.format,
                 match = string.match,
                 running = coroutine.running,
                 getregistry = debug and debug.getregistry,
                 getmetatable = debug and debug.getmetatable }
  local function pack(...) return { n = select("#", ...), ... } end
  local open
  local function part(name)
    local p = parts[name]
    if p == nil then p = open("_" .. name); parts[name] = p end
    return p
  end
  function open(name)
    local r = pack(pcall(face, name))
    if not r[1] then error(tostring(r[2]), 0) end   -- e.g. not implemented yet
    local src, chunkname, core = r[2], r[3], {}
    for i = 4, r.n, 2 do core[r[i]] = r[i + 1] end  -- name, value, name, value...
    local chunk = assert(load(src, chunkname))
    if name == "_support" then return chunk(core) end
    if not support then support = open("_support") end
    return chunk(support, core, part, base)
  end
  for i = 1, #modules do
    local name = modules[i]
    -- package.preload ignores a bare Python function: wrap it in Lua.
    package.preload["ipc." .. name] = function() return open(name) end
  end
  package.preload["ipc"] = function()
    local all = {}
    for i = 1, #modules do all[modules[i]] = require("ipc." .. modules[i]) end
    return all
  end"""


_RUN = "function(src, name, ...) return assert((loadstring or load)(src, name))(...) end"


#: The Lua parts several faces share (``part("memfile")`` in a face), and
#: where each lives: (package, file).
_PARTS = {
    "_memfile": ("ipc", "_memfile.lua"),    # the file methods of shm, mmap, strfile
    "_wire": ("ipc.linda", "wire.lua"),     # the msgpack codec of lindas and lanes
}


def _face(module: bytes) -> tuple[object, ...]:
    """Source and chunk name of a module's Lua face, then its core namespace
    as name, value, name, value... (the loader makes a Lua table of them)."""
    name = module.decode()
    if name == "_support":
        from . import support as core
        return (_read_lua(__name__, "support.lua"), b"=[ipc.support]", *_exports(core))
    where = _PARTS.get(name)
    if where is not None:
        return (_read_lua(*where), f"=[ipc.{name[1:]}]".encode())
    try:
        core = _module(f"ipc.{name}.lua")
    except ModuleNotFoundError as exc:
        if exc.name not in (f"ipc.{name}", f"ipc.{name}.lua"):
            raise  # a real missing dependency, not a missing face
        raise NotImplementedError(f"module 'ipc.{name}' is not implemented yet") from None
    return (_read_lua(f"ipc.{name}", "face.lua"), f"=[ipc.{name}]".encode(), *_exports(core))


def _exports(core: ModuleType) -> list[object]:
    """A core module's ``__all__``, flat: [b"name", value, ...], each value
    a fresh copy for this runtime (``crossing.fresh``).  The loader makes a
    Lua table of them, so faces never index a Python object."""
    flat: list[object] = []
    for k in core.__all__:
        flat += [k.encode(), fresh(getattr(core, k))]
    return flat


_SOURCES: dict[tuple[str, str], bytes] = {}


def _read_lua(package: str, filename: str) -> bytes:
    key = (package, filename)
    src = _SOURCES.get(key)
    if src is None:
        src = _SOURCES[key] = read_data(package, filename)
    return src


def read_data(package: str, filename: str) -> bytes:
    """A data file shipped beside a package's modules (a Lua chunk): read
    directly where the package is a plain directory, through
    importlib.resources otherwise.  (For ipc's own tools, e.g. the
    interpreter's driver.lua.)"""
    # A plain file beside the package's __init__ (any normal install): read
    # it directly, as importlib.resources costs ~8 ms of start-up to import.
    # Anything else (a zip import...) goes through importlib.resources.
    path = getattr(sys.modules.get(package) or _module(package), "__file__", None)
    if path:
        try:
            with open(os.path.join(os.path.dirname(path), filename), "rb") as f:
                return f.read()
        except OSError:
            pass
    from importlib import resources
    return resources.files(package).joinpath(filename).read_bytes()


def _check_runtime(runtime: _Runtime) -> None:
    probe = runtime.eval('function(f) return "s", select("#", f()) end')
    kind, count = probe(lambda: (1, 2))
    if not isinstance(kind, bytes) or count != 2:
        raise ValueError("install() needs a LuaRuntime made with encoding=None and "
                         "unpack_returned_tuples=True (see ipc.lua.RUNTIME_OPTIONS), "
                         "or use ipc.lua.new_runtime()")


def __getattr__(name: str) -> Any:
    # PEP 562: SharedRuntime (threads, futures) loads only when asked for,
    # so that the interpreter's start-up does not pay for it.
    if name == "SharedRuntime":
        from .shared import SharedRuntime
        return SharedRuntime
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
