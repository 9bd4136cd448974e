"""The ``luaipc`` command: a drop-in for the ``lua`` standalone interpreter
whose scripts can ``require "ipc.shm"`` and the other modules.

    luaipc [--engine NAME] [options] [script [args]]

Options as ``lua`` 5.4: ``-e stat``, ``-l name`` (and ``-l g=mod``), ``-i``,
``-v``, ``-E``, ``-W``, ``--`` and ``-``.  ``--engine NAME`` picks the Lua
engine (default: ``$LUAIPC_ENGINE``, else lua5.4) and exports it so child
``luaipc`` processes run on the same one; it is not put in ``arg``, so
``arg[-1]`` stays the interpreter as with ``lua script.lua``.
"""
from __future__ import annotations

import atexit
import ctypes  # (interrupt imports it anyway)
import os
import sys

from .. import __version__
from ..lua import (
    DEFAULT_ENGINE,
    ENGINES,
    ENV_VAR,
    RUNTIME_OPTIONS,
    EngineError,
    complete_stdlib,
    install,
    lupa_module,
    read_data,
    resolve_engine,
    run_chunk,
)
from ..lua.crossing import fresh
from . import interrupt
from .interrupt import flush_c_stdio as _flush_c_stdio

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, NoReturn

    from lupa import LuaRuntime

PROGNAME = "luaipc"

USAGE = f"""\
usage: {PROGNAME} [options] [script [args]]
Available options are:
  -e stat       execute string 'stat'
  -i            enter interactive mode after executing 'script'
  -l mod        require library 'mod' into global 'mod'
  -l g=mod      require library 'mod' into global 'g'
  -v            show version information
  -E            ignore environment variables
  -W            turn warnings on
  --engine NAME run on Lua engine NAME (also $LUAIPC_ENGINE)
  --            stop handling options
  -             stop handling options and execute stdin
Engines: {", ".join(ENGINES)} (default {DEFAULT_ENGINE})
"""

class UsageError(Exception):
    pass


#: glibc's malloc gives a big free block back to the kernel at once: blocks
#: over its mmap threshold are unmapped, and the heap's top is trimmed past
#: twice that.  A script that makes and drops strings of a MiB (a loop of
#: ``h:read(1 MiB)``) then page-faults through every new string: 3-4x
#: slower on lua5.3 and lua5.5 (``python -m bench --only shm``).  luaipc
#: owns its process as ``lua`` does, so it keeps blocks up to 4 MiB in the
#: heap and up to 8 MiB free at its top (mallopt; a library may not do
#: this, so ``ipc.lua`` leaves a host's malloc alone).  The user's own
#: settings (``MALLOC_*_THRESHOLD_``, ``glibc.malloc.*`` tunables) win.
_MALLOPT = ((-3, 4 << 20, "MALLOC_MMAP_THRESHOLD_"),   # M_MMAP_THRESHOLD
            (-1, 8 << 20, "MALLOC_TRIM_THRESHOLD_"))   # M_TRIM_THRESHOLD


def _tune_malloc() -> None:
    if "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", ""):
        return
    if any(env in os.environ for _, _, env in _MALLOPT):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)   # (not every libc)
    if mallopt is not None:
        for param, value, _ in _MALLOPT:
            mallopt(param, value)


def _take_engine(argv: list[str]) -> tuple[str | None, list[str]]:
    """Remove ``--engine NAME`` / ``--engine=NAME`` from the options part."""
    engine, out, i = None, [argv[0]], 1
    while i < len(argv):
        a = argv[i]
        if a == "--engine" or a.startswith("--engine="):
            if a == "--engine":
                if i + 1 >= len(argv):
                    raise UsageError("'--engine' needs argument")
                engine, i = argv[i + 1], i + 2
            else:
                engine, i = a.split("=", 1)[1], i + 1
            continue
        out.append(a)
        i += 1
        if not a.startswith("-") or a in ("-", "--"):
            out.extend(argv[i:])  # the script and its arguments: left alone
            break
        if a in ("-e", "-l") and i < len(argv):
            out.append(argv[i])
            i += 1
    return engine, out


def _collect(argv: list[str]) -> tuple[set[str], int]:
    """lua.c's collectargs: the flags seen and the index of the script
    (0 when there is none)."""
    flags: set[str] = set()
    i = 1
    while i < len(argv):
        a = argv[i]
        if not a.startswith("-"):
            return flags, i
        if a == "--":
            return flags, (i + 1 if i + 1 < len(argv) else 0)
        if a == "-":
            return flags, i
        opt, rest = a[1], a[2:]
        if opt in "EWiv":
            if rest:
                raise UsageError(f"unrecognized option '{a}'")
            flags.add(opt)
            if opt == "i":
                flags.add("v")
        elif opt in "el":
            if opt == "e":
                flags.add("e")
            if not rest:
                i += 1
                if i >= len(argv) or argv[i].startswith("-"):
                    raise UsageError(f"'{a}' needs argument")
        else:
            raise UsageError(f"unrecognized option '{a}'")
        i += 1
    return flags, 0


def _self_command(argv0: str) -> str:
    """A command that starts luaipc again, for ``arg``'s lowest index."""
    if os.path.basename(argv0) != "__main__.py" and os.path.isfile(argv0):
        return _shell_quote(argv0)
    return f"{_shell_quote(sys.executable)} -m ipc"


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./-_")


def _shell_quote(s: str) -> str:
    """shlex.quote without importing shlex and re (start-up time)."""
    if s and all(c in _SAFE for c in s):
        return s
    return "'" + s.replace("'", "'\"'\"'") + "'"


def _make_runtime(engine: str, ignore_env: bool) -> LuaRuntime:
    mod = lupa_module(engine)
    hidden: dict[str, str] = {}
    if ignore_env:  # -E: package.path/cpath from the defaults, not LUA_PATH*
        for key in list(os.environ):
            if key.startswith(("LUA_PATH", "LUA_CPATH")):
                hidden[key] = os.environ.pop(key)
    try:
        runtime: LuaRuntime = mod.LuaRuntime(register_eval=False, register_builtins=False,
                                             **RUNTIME_OPTIONS)
    finally:
        os.environ.update(hidden)  # children still see them, as with lua -E
    install(runtime)
    complete_stdlib(runtime)
    interrupt.arm(runtime, mod, run_chunk)
    return runtime


def _os_exit(code: Any = None, _close: object = None) -> NoReturn:
    """os.exit: flush Lua's C streams, run Python's exit handlers (which
    release what this process created), then leave at once, uncatchable by
    pcall as in lua (by the signal instead, if an ending one came)."""
    if code is None or code is True:
        status = 0
    elif code is False:
        status = 1
    else:
        try:
            status = int(code)
        except (TypeError, ValueError):
            status = 1
    interrupt.leaving()
    _flush_c_stdio()
    try:
        atexit._run_exitfuncs()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        interrupt.left()
        os._exit(status & 0xFF)


def _readline(prompt: bytes) -> bytes | None:
    _flush_c_stdio()
    try:
        line = input(prompt.decode(errors="replace"))
    except EOFError:
        return None
    except KeyboardInterrupt:
        sys.stdout.write("\n")
        return b""
    return os.fsencode(line)


def _implementation(runtime: LuaRuntime) -> str:
    impl = runtime.lua_implementation  # bytes, as the runtime has no encoding
    return impl.decode() if isinstance(impl, bytes) else impl


def _version_line(runtime: LuaRuntime) -> bytes:
    from lupa.version import __version__ as lupa_version
    impl = _implementation(runtime)
    return f"{PROGNAME} {__version__}  {impl}  (lupa {lupa_version})".encode()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv if argv is None else argv)
    _tune_malloc()
    try:
        engine_opt, argv = _take_engine(argv)
        flags, script = _collect(argv)
    except UsageError as exc:
        sys.stderr.write(f"{PROGNAME}: {exc}\n{USAGE}")
        return 1
    try:
        engine = resolve_engine(engine_opt)
        runtime = _make_runtime(engine, "E" in flags)
    except EngineError as exc:
        sys.stderr.write(f"{PROGNAME}: {exc}\n")
        return 1
    os.environ[ENV_VAR] = engine  # children started by the script inherit it
    try:
        return _run(runtime, argv, flags, script)
    except KeyboardInterrupt:
        interrupt.leaving()  # raised for SIGTERM & co.: luaipc ends by it here
        _flush_c_stdio()
        sys.stderr.write(f"{PROGNAME}: interrupted!\n")
        return 1
    finally:
        _flush_c_stdio()
        interrupt.leaving()
        del runtime  # finalize the script's handles while Python is whole
        interrupt.left()


def _run(runtime: LuaRuntime, argv: list[str], flags: set[str], script: int) -> int:
    if "readline" not in sys.modules and ("i" in flags or sys.stdin.isatty()):
        try:
            import readline  # noqa: F401  (line editing for input())
        except ImportError:
            pass
    lg: Any = runtime.globals()  # Lua tables take attribute access (types-lupa lacks it)
    lg.python = None  # lupa's bridge object: not part of the lua command
    # Fresh copies, as the bridge sends every Python function (see
    # ipc/lua/crossing.py): Lua gets each object once.
    lg.os.exit = fresh(_os_exit)
    driver_src = read_data(__package__, "driver.lua")
    D = run_chunk(runtime, driver_src, b"=[luaipc]",
                  PROGNAME.encode(), fresh(_readline), _version_line(runtime))

    args = [_self_command(argv[0]).encode()] + [os.fsencode(a) for a in argv[1:]]
    D.setargs(runtime.table_from(args), script)
    if "v" in flags:
        D.version()
    if "W" in flags and lg.warn is not None:
        lg.warn(b"@on")
    if "E" not in flags and not _lua_init(runtime, D):
        return 1
    limit = script if script > 0 else len(argv)
    i = 1
    while i < limit:  # -e and -l, in command-line order
        a = argv[i]
        if a[:2] in ("-e", "-l"):
            value = a[2:] or argv[i + 1]
            if a[:2] == "-e":
                ok = D.dostring(os.fsencode(value), b"=(command line)")
            else:
                ok = D.dolibrary(os.fsencode(value))
            if not ok:
                return 1
            i += 1 if a[2:] else 2
        else:
            i += 1
    if script > 0:
        name = argv[script]
        stdin_script = name == "-" and argv[script - 1] != "--"
        if not D.script(None if stdin_script else os.fsencode(name)):
            return 1
    if "i" in flags:
        D.repl()
    elif script == 0 and not flags & {"e", "v"}:
        if sys.stdin.isatty():
            D.version()
            D.repl()
        elif not D.dofile(None):
            return 1
    return 0


def _lua_init(runtime: LuaRuntime, D: Any) -> bool:
    major, minor = runtime.lua_version
    names = ["LUA_INIT"]
    if (major, minor) >= (5, 2) and "LuaJIT" not in _implementation(runtime):
        names.insert(0, f"LUA_INIT_{major}_{minor}")
    for var in names:
        value = os.environb.get(var.encode())
        if value is not None:
            if value.startswith(b"@"):
                return bool(D.dofile(value[1:]))
            return bool(D.dostring(value, b"=" + var.encode()))
    return True


if __name__ == "__main__":
    raise SystemExit(main())
