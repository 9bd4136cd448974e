"""The Lua engines and running Lua code in a runtime.

The one engine list is ``ipc.lua.ENGINES``.  An engine this lupa build
lacks is skipped (the ``engine`` fixture calls ``skip_if_missing``); a
test that runs on a subset of the engines, for time, takes it from here
(``TWO_ENGINES``) or derives it from ``ENGINES`` and says why.
"""
from __future__ import annotations

import functools
import os
from typing import Any

import pytest

from ipc.lua import DEFAULT_ENGINE, ENGINES, EngineError, lupa_module

__all__ = [
    "DEFAULT_ENGINE",
    "ENGINES",
    "EXPECTED_VERSION",
    "LUAJITS",
    "TWO_ENGINES",
    "installed",
    "is_luajit",
    "lua_version",
    "missing",
    "run",
    "run_one",
    "skip_if_missing",
]

#: What ``_VERSION`` says on each engine.
EXPECTED_VERSION = {
    "lua5.1": b"Lua 5.1", "lua5.2": b"Lua 5.2", "lua5.3": b"Lua 5.3",
    "lua5.4": b"Lua 5.4", "lua5.5": b"Lua 5.5",
    "luajit2.0": b"Lua 5.1", "luajit2.1": b"Lua 5.1",
}


def is_luajit(engine: str) -> bool:
    return engine.startswith("luajit")


def lua_version(engine: str) -> tuple[int, int]:
    """The language an engine speaks: (5, 4) for lua5.4, (5, 1) for LuaJIT."""
    major, minor = EXPECTED_VERSION[engine].split()[1].split(b".")
    return int(major), int(minor)


LUAJITS = [e for e in ENGINES if is_luajit(e)]
#: For a test too slow to run on all seven engines: the default engine and
#: the newest LuaJIT, the two implementations of hooks, signals and the
#: garbage collector that the others share.
TWO_ENGINES = (DEFAULT_ENGINE, LUAJITS[-1])


@functools.cache
def missing(engine: str) -> str | None:
    """Why this lupa cannot run ``engine``, or None if it can."""
    try:
        lupa_module(engine)
    except EngineError as exc:
        return str(exc)
    return None


def skip_if_missing(engine: str) -> None:
    reason = missing(engine)
    if reason:
        pytest.skip(reason)


def installed() -> list[str]:
    """The engines of ``ENGINES`` that this lupa has, in that order."""
    return [e for e in ENGINES if missing(e) is None]


def _lua_args(args: tuple) -> list:
    # Lua strings are bytes (the runtimes have encoding=None): str and paths
    # are handed over as their bytes.
    return [os.fsencode(a) if isinstance(a, (str, os.PathLike)) else a for a in args]


def run(lua, code: str, *args: Any) -> tuple:
    """Run a Lua chunk with ``...`` = args; all its results, as a tuple.

    (lupa cannot tell one ``nil`` from no result: both give ``(None,)``.)
    """
    r = lua.execute(code, *_lua_args(args))
    return r if isinstance(r, tuple) else (r,)


def run_one(lua, code: str, *args: Any) -> Any:
    """Run a Lua chunk with ``...`` = args; its one result."""
    r = lua.execute(code, *_lua_args(args))
    assert not isinstance(r, tuple), f"the chunk returned {len(r)} values: {r!r}"
    return r
