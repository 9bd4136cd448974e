"""ipc.lanes: starting lanes, pools of them, and real parallelism.

- spawn + join of an empty lane, against ``luaipc -e ''`` (a lane is one
  such process, plus its linda and its job);
- 1,000 empty lanes on ``lanes.pool(2)``, against multiprocessing.Pool(2)
  mapping an empty function over 1,000 items (the Python peer); issue 15's
  goal is >= 5,000 lanes/s (Lanes 4.0.1 does 1,000 lanes in 40 ms, in
  threads of one process);
- 4 lanes each burning a fixed amount of CPU, against the same work done
  one after another in one lane: on 2 cores the ratio shows the parallelism
  (0.5 is perfect).
"""
from __future__ import annotations

import multiprocessing
import subprocess
import time

from ..core import Group, Ref, Settings, lua_env, luaipc_command

SPAWN = """
local lanes = require "ipc.lanes"
return function(n)
  for _ = 1, n do local h = lanes.gen(function() end)(); assert(h:join()); h:close() end
end
"""

POOL = """
local lanes = require "ipc.lanes"
local p = assert(lanes.pool(2))
local g = p:gen(function() end)
assert(g():join())                    -- the processes are up
return function(n)
  local hs = {}
  for i = 1, n do hs[i] = g() end
  for i = 1, n do assert(hs[i]:join()) end
end, function() p:close() end
"""

BURN = """
local lanes = require "ipc.lanes"
local function burn(n) local x = 0; for i = 1, n do x = x + i % 7 end; return x end
return function(lanes_n, work)
  local hs = {}
  for i = 1, lanes_n do hs[i] = lanes.gen(burn)(work) end
  for i = 1, lanes_n do assert(hs[i]:join()) end
end
"""


def _noop(_: int) -> None:
    return None


def spawn(st: Settings, engine: str, runtime) -> Group:
    loop = runtime.execute(SPAWN)
    n = 3 if st.mode == "smoke" else 10

    def ours() -> float:
        t = time.perf_counter()
        loop(n)
        return (time.perf_counter() - t) / n * 1e3

    cmd = [*luaipc_command(), "-e", ""]
    env = lua_env(engine)

    def startup() -> float:
        t = time.perf_counter()
        for _ in range(n):
            subprocess.run(cmd, env=env, check=True)
        return (time.perf_counter() - t) / n * 1e3
    return Group("lane spawn+join, empty function", engine, "ms", ours,
                 [Ref("luaipc -e '' start-up", startup)], goal=("<=", 1.3),
                 reps=max(3, st.reps // 2))


def pool(st: Settings, engine: str, runtime) -> Group:
    loop, close = runtime.execute(POOL)
    n = 200 if st.mode == "smoke" else 1000

    def ours() -> float:
        t = time.perf_counter()
        loop(n)
        return n / (time.perf_counter() - t)

    mp = multiprocessing.get_context("spawn").Pool(2)
    mp.map(_noop, range(10))

    def peer() -> float:
        t = time.perf_counter()
        mp.map(_noop, range(n), chunksize=1)
        return n / (time.perf_counter() - t)
    g = Group(f"{n} empty lanes on lanes.pool(2)", engine, "lanes/s", ours,
              [Ref("multiprocessing.Pool(2).map, chunksize 1", peer)],
              note="goal: >= 5,000 lanes/s")
    g.cleanup += [close, mp.terminate]
    return g


def parallel(st: Settings, engine: str, runtime) -> Group:
    burn = runtime.execute(BURN)
    work = {"smoke": 2_000_000, "quick": 20_000_000}.get(st.mode, 60_000_000)
    if "jit" in engine:
        work *= 10                    # LuaJIT runs the loop about ten times faster

    def four() -> float:
        t = time.perf_counter()
        burn(4, work)
        return time.perf_counter() - t

    def serial() -> float:
        t = time.perf_counter()
        burn(1, 4 * work)
        return time.perf_counter() - t
    return Group("4 CPU-bound lanes vs the same work in one lane", engine, "s", four,
                 [Ref("one lane doing all four shares", serial)],
                 note="2 cores: 0.5 is perfect parallelism", reps=max(3, st.reps // 2))


def groups(st: Settings, engines, runtimes, _scratch):
    for engine in engines:
        if engine == "python":
            continue                  # lanes are Lua functions
        yield lambda e=engine: spawn(st, e, runtimes(e))
        yield lambda e=engine: pool(st, e, runtimes(e))
        yield lambda e=engine: parallel(st, e, runtimes(e))
