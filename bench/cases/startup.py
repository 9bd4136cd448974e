"""Start-up: ``luaipc -e ''`` beside the floor of any Python-hosted Lua.

Ours: ``luaipc -e ''`` on the engine, and ``luaipc -e 'require "ipc.shm"'``
(the first require of a memory module).  References: ``python -c 'import
lupa.lua54, posix_ipc'`` (the engine's own lupa module: the least any
Python-hosted Lua with POSIX IPC can cost) and a bare ``python -c pass``.
Milliseconds of wall time per process, from spawn to exit.

Every command runs with bytecode caching on, in a scratch
``PYTHONPYCACHEPREFIX`` (so nothing is written into the source tree), and
once before the clock starts: a normal install has its .pyc files, and a
``PYTHONDONTWRITEBYTECODE=1`` environment would otherwise charge luaipc for
compiling its own modules on every start.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

from ..core import Group, Ref, Settings, luaipc_command


def _env(scratch, engine=None) -> dict:
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(scratch.path / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if engine:
        env["LUAIPC_ENGINE"] = engine
    return env


def _timed(cmd: list[str], env):
    subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL)   # warm-up

    def run() -> float:
        t = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdin=subprocess.DEVNULL)
        return (time.perf_counter() - t) * 1e3
    return run


def _group(st: Settings, engine: str, scratch, code: str) -> Group:
    env = _env(scratch)
    ours = _timed([*luaipc_command(), "-e", code], _env(scratch, engine))
    mod = "lupa." + engine.replace(".", "")          # lua5.3 -> lupa.lua53
    refs = [Ref(f"python -c 'import {mod}, posix_ipc'",
                _timed([sys.executable, "-c", f"import {mod}, posix_ipc"], env)),
            Ref("python -c pass", _timed([sys.executable, "-c", "pass"], env))]
    # The goals of issue 14, for a regular (not editable) install: an
    # editable one's finder imports re at every start.
    return Group(f"start-up luaipc -e '{code}'", engine, "ms", ours, refs,
                 goal=("<=", 1.35 if code else 1.25), reps=st.startup_reps)


def groups(st: Settings, engines, _runtimes, scratch):
    for code in ("", 'require "ipc.shm"'):
        for engine in engines:
            if engine != "python":
                yield lambda e=engine, c=code: _group(st, e, scratch, c)
