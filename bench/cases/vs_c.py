"""Side by side with the C LuaIPC: the same Lua scripts under ``lua5.3`` with
the C modules, and under ``luaipc`` on lua5.3, lua5.4 and luajit2.1.

The C LuaIPC is not built here: code of another repository, and recipes
that build it, stay out of this one.  Build it yourself from
https://github.com/siffiejoe/lua-luaipc and pass the directory that holds
the result: ``python -m bench --c-luaipc DIR [--lua lua5.3]``.  DIR goes first in
``LUA_CPATH`` as ``DIR/?.so``, so it may hold the one ``ipc.so`` that the
Makefile builds (Lua's all-in-one loader finds ``luaopen_ipc_shm`` in it)
or one ``ipc/<module>.so`` per module.  Without the option every row is
still measured on our side, and its C column says it was not given.

Both sides run each script as a process of their own.  The script sets up,
prints ``go``, does the work, then prints ``done`` and a check value; the
clock is this process's, between the two lines, so neither side's start-up
is in the figure and no Lua clock is needed (lua5.3's ``os.clock`` is CPU
time).  The start-up rows time whole processes instead.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from ..core import Group, Ref, Settings, fresh, lua_env, luaipc_command

#: Our engines beside the C LuaIPC: its own Lua (5.3), the default engine
#: and the fastest.
SIDE_ENGINES = ("lua5.3", "lua5.4", "luajit2.1")

NOT_GIVEN = "C LuaIPC: not given (--c-luaipc DIR)"

MIB = 1024 * 1024
LINE = 15            # strfile lines of 15 bytes and a newline: 65,536 per MiB

# Prepended to every script: the protocol described above.  Scripts get
# their arguments in ``arg`` (n, then a name or a path) and define ``run(n)``
# returning a check value, which is printed so no work can be dropped.
HARNESS = """\
local n = tonumber(arg[1])
local function timed(run, close)
  io.stdout:write("go\\n"); io.stdout:flush()
  local check = run(n)
  io.stdout:write("done ", tostring(check), "\\n"); io.stdout:flush()
  if close then close() end
end
"""

SCRIPTS = {
    "sem": """
local sem = require "ipc.sem"
local s = assert(sem.open(arg[2], 1))
timed(function(n)
  for _ = 1, n do s:inc(); s:dec() end
  return n
end, function() s:close() end)
""",
    "shm_small": """
local shm = require "ipc.shm"
local h = assert(shm.create(arg[2], 2 * 1024 * 1024))
timed(function(n)
  local acc = 0
  for _ = 1, n do   -- the result is used, so no JIT can drop the read
    h:seek("set", 64); h:write("abcdefgh"); h:seek("set", 64); acc = acc + #h:read(8)
  end
  return acc
end, function() h:close() end)
""",
    "shm_big": """
local shm = require "ipc.shm"
local h = assert(shm.create(arg[2], 2 * 1024 * 1024))
local MiB = string.rep("x", 1024 * 1024)
timed(function(n)
  local acc = 0
  for _ = 1, n do
    h:seek("set", 0); h:write(MiB); h:seek("set", 0); acc = acc + #h:read(#MiB)
  end
  return acc
end, function() h:close() end)
""",
    "filelock": """
local filelock = require "ipc.filelock"
local f = assert(io.open(arg[2], "w+"))
local lock, unlock = filelock.lock, filelock.unlock
timed(function(n)
  for _ = 1, n do lock(f, "w"); unlock(f) end
  return n
end, function() f:close() end)
""",
    "strfile": f"""
local strfile = require "ipc.strfile"
local text = string.rep(string.rep("x", {LINE}) .. "\\n", {MIB // (LINE + 1)})
local h = assert(strfile.open(text))
timed(function(n)
  local lines = 0
  for _ = 1, n do
    h:seek("set", 0)
    for _ in h:lines() do lines = lines + 1 end
  end
  return lines
end, function() h:close() end)
""",
    # The C LuaIPC may lose the last bytes of a child's output (DESIGN.md),
    # so the check value is the byte count and the rate uses it.
    "proc": """
local proc = require "ipc.proc"
timed(function(n)
  local total = 0
  local h = assert(proc.spawn("head -c " .. n .. " /dev/zero",
                   { stdout = true, callback = function(_, d) total = total + #(d or "") end }))
  assert(h:wait())
  return total
end)
""",
}


def script_text(key: str) -> str:
    return HARNESS + SCRIPTS[key]


def c_env(cdir: str, base: dict | None = None) -> dict:
    """The environment of a C LuaIPC process: ``DIR/?.so`` first in the C
    path.  The versioned variables (``LUA_CPATH_5_3``...) win over
    ``LUA_CPATH`` in lua5.2+, so any inherited one goes."""
    env = dict(os.environ if base is None else base)
    for k in [k for k in env if k.startswith("LUA_CPATH_")]:
        del env[k]
    cpath = os.path.join(os.path.abspath(cdir), "?.so")
    env["LUA_CPATH"] = cpath + ";" + env["LUA_CPATH"] if env.get("LUA_CPATH") else cpath
    return env


def c_command(lua: str, *args: str) -> list[str]:
    return [lua, *args]


def ours_command(script: str, *args: str) -> list[str]:
    return [*luaipc_command(), script, *args]


def check_c_dir(cdir: str, lua: str) -> str | None:
    """Why ``--c-luaipc DIR --lua LUA`` cannot run, or None."""
    d = Path(cdir)
    if not d.is_dir():
        return f"--c-luaipc {cdir}: not a directory"
    if not (d / "ipc.so").exists() and not list(d.glob("ipc/*.so")):
        return (f"--c-luaipc {cdir}: neither ipc.so nor ipc/*.so there "
                "(the directory of the built C LuaIPC)")
    if shutil.which(lua) is None:
        return f"--lua {lua}: no such interpreter"
    return None


def _marked(argv: list[str], env: dict) -> tuple[float, float]:
    """Run a script of the protocol: seconds between ``go`` and ``done``,
    and the check value."""
    with subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE) as p:
        first = p.stdout.readline()
        t = time.perf_counter()
        last = p.stdout.readline()
        dt = time.perf_counter() - t
        p.stdout.read()
    rc = p.returncode
    if rc != 0 or first != b"go\n" or not last.startswith(b"done "):
        raise RuntimeError(f"{argv[0]} {argv[1]} failed ({rc}): {first!r} {last!r}")
    return dt, float(last.split()[1])


def _runner(argv: list[str], env: dict, figure):
    def run() -> float:
        dt, check = _marked(argv, env)
        return figure(dt, check)
    return run


def _per_op_us(n: int):
    return lambda dt, _check: dt / n * 1e6


def _startup(argv: list[str], env: dict):
    # Once before the clock: the .pyc files of a normal install are there.
    subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL)

    def run() -> float:
        t = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdin=subprocess.DEVNULL)
        return (time.perf_counter() - t) * 1e3
    return run


class Side:
    """What the C side needs: the directory of its modules and its Lua."""

    def __init__(self, st: Settings, scratch) -> None:
        self.cdir, self.lua = st.c_luaipc, st.c_lua
        self.ref_name = f"C LuaIPC ({os.path.basename(self.lua)})"
        self.scratch = scratch
        self.scripts: dict[str, str] = {}

    def script(self, key: str) -> str:
        if key not in self.scripts:
            self.scripts[key] = self.scratch.write(f"vs_c_{key}.lua", script_text(key))
        return self.scripts[key]

    def ref(self, make) -> Ref:
        """The C reference built by ``make(command, env)``, or the reason it is
        skipped."""
        if self.cdir is None:
            return Ref(self.ref_name, None, NOT_GIVEN)
        return Ref(self.ref_name, make(lambda *a: c_command(self.lua, *a), c_env(self.cdir)))


def _script_group(st: Settings, side: Side, engine: str, key: str) -> Group:
    path = side.script(key)
    # One name per group: each run of either side removes what it created.
    arg = str(side.scratch.path / f"vs_c-{engine}.lock") if key == "filelock" else fresh()
    n, case, unit, goal = st.loop, "", "us", None
    figure = _per_op_us(n)
    if key == "sem":
        case = "sem inc+dec"
    elif key == "shm_small":
        case = "shm seek+write 8+seek+read 8"
        goal = ("<=", 2.7) if engine == "lua5.4" else None
    elif key == "shm_big":
        n, case, unit = st.mib_loops, "shm 1 MiB write+read", "MB/s"
        figure = lambda dt, _c: 2 * MIB * st.mib_loops / dt / 1e6  # noqa: E731
        goal = (">=", 1.0) if engine == "lua5.4" else None
    elif key == "filelock":
        case = "filelock lock+unlock"
        goal = {"lua5.4": ("<=", 2.0), "luajit2.1": ("<=", 1.0)}.get(engine)
    elif key == "strfile":
        n, case, unit = max(1, st.mib_loops // 20), "strfile 1 MiB lines()", "M lines/s"
        figure = lambda dt, lines: lines / dt / 1e6  # noqa: E731
        goal = (">=", 1.0)
    elif key == "proc":
        n = st.proc_mib << 20
        case, unit = f"proc {st.proc_mib} MiB through a callback", "MB/s"
        figure = lambda dt, total: total / dt / 1e6  # noqa: E731
    args = (str(n), arg)
    ref = side.ref(lambda cmd, env: _runner(cmd(path, *args), env, figure))
    return Group(f"vs C: {case}", engine, unit,
                 _runner(ours_command(path, *args), lua_env(engine), figure), [ref], goal=goal,
                 note="the same Lua script on both sides, timed from go to done")


def _startup_group(st: Settings, side: Side, engine: str, code: str) -> Group:
    opts = ("-e", code)
    ref = side.ref(lambda cmd, env: _startup(cmd(*opts), env))
    return Group(f"vs C: start-up -e '{code}'", engine, "ms",
                 _startup([*luaipc_command(), *opts], lua_env(engine)), [ref],
                 reps=st.startup_reps, note="whole processes")


KEYS = ("sem", "shm_small", "shm_big", "filelock", "strfile", "proc")


def groups(st: Settings, _engines, _runtimes, scratch):
    side = Side(st, scratch)
    for key in KEYS:
        for engine in st.side_engines:
            yield lambda e=engine, k=key: _script_group(st, side, e, k)
    for code in ("", 'require "ipc.shm"'):
        for engine in st.side_engines:
            yield lambda e=engine, c=code: _startup_group(st, side, e, c)
