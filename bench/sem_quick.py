"""Quick side-by-side for ipc.sem against raw posix_ipc.

    python bench/sem_quick.py [--n 200000] [--trips 20000] [--rounds 5]

1. Uncontended inc+dec: a loop of ``s:inc(); s:dec()`` in Lua (lua5.4 and
   luajit2.1 runtimes in this process) beside ``release(); acquire()`` on a
   raw posix_ipc.Semaphore in Python.
2. Ping-pong: two processes bounce through two semaphores; round-trip time.
   Lua: this process runs the Lua side (in a runtime), the echo is a luaipc
   child running tests/lua/sem/pingpong.lua.  Raw: both sides are Python
   on posix_ipc.

Rounds are interleaved so a busy machine hurts every row alike; medians.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import posix_ipc

from ipc.lua import new_runtime

ROOT = Path(__file__).resolve().parent.parent
PINGPONG_LUA = ROOT / "tests" / "lua" / "sem" / "pingpong.lua"
LUAIPC = [str(Path(sys.executable).with_name("luaipc"))]

RAW_ECHO = """
import posix_ipc, sys
ping, pong = posix_ipc.Semaphore(sys.argv[1]), posix_ipc.Semaphore(sys.argv[2])
for _ in range(int(sys.argv[3])):
    ping.acquire(); pong.release()
"""

LUA_LOOP = """
local sem = require "ipc.sem"
local name = ...
local s = assert(sem.open(name, 1))
return function(n)
  for _ = 1, n do s:inc(); s:dec() end
end, function() s:close() end
"""

LUA_PINGPONG = """
local sem = require "ipc.sem"
local a, b = ...
local ping, pong = assert(sem.open(a)), assert(sem.open(b))
return function(n)
  for _ = 1, n do ping:inc(); pong:dec() end
end
"""


def fresh() -> str:
    return "luaipcb-" + uuid.uuid4().hex[:12]


def raw_loop(n: int) -> float:
    name = "/" + fresh()
    s = posix_ipc.Semaphore(name, posix_ipc.O_CREX, 0o600, 1)
    s.unlink()
    rel, acq = s.release, s.acquire
    t = time.perf_counter()
    for _ in range(n):
        rel(); acq()
    dt = time.perf_counter() - t
    s.close()
    return dt / n


def lua_loop(rt, n: int) -> float:
    loop, close = rt.execute(LUA_LOOP, fresh().encode())
    t = time.perf_counter()
    loop(n)
    dt = time.perf_counter() - t
    close()
    return dt / n


def pingpong(trips: int, lua_rt=None) -> float:
    a, b = fresh(), fresh()
    ping = posix_ipc.Semaphore("/" + a, posix_ipc.O_CREX, 0o600, 0)
    pong = posix_ipc.Semaphore("/" + b, posix_ipc.O_CREX, 0o600, 0)
    try:
        if lua_rt is None:
            child = subprocess.Popen([sys.executable, "-c", RAW_ECHO, "/" + a, "/" + b, str(trips)])
            rel, acq = ping.release, pong.acquire

            def run(n):
                for _ in range(n):
                    rel(); acq()
        else:
            env = dict(os.environ, LUAIPC_ENGINE=lua_rt[1])
            child = subprocess.Popen(LUAIPC + [str(PINGPONG_LUA), a, b, str(trips)], env=env,
                                     stdout=subprocess.DEVNULL)
            run = lua_rt[0].execute(LUA_PINGPONG, a.encode(), b.encode())
        warm = min(1000, trips // 10)
        run(warm)                                   # the child has started
        t = time.perf_counter()
        run(trips - warm)
        dt = time.perf_counter() - t
        child.wait(timeout=60)
        return dt / (trips - warm)
    finally:
        for s in (ping, pong):
            s.unlink()
            s.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--trips", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    rts = {e: new_runtime(e) for e in ("lua5.4", "luajit2.1")}
    loops = {"raw posix_ipc (Python)": [], "ipc.sem lua5.4": [], "ipc.sem luajit2.1": []}
    pp = {"raw posix_ipc (Python)": [], "ipc.sem lua5.4": [], "ipc.sem luajit2.1": []}
    for _ in range(args.rounds):
        loops["raw posix_ipc (Python)"].append(raw_loop(args.n))
        for e, rt in rts.items():
            loops[f"ipc.sem {e}"].append(lua_loop(rt, args.n))
        pp["raw posix_ipc (Python)"].append(pingpong(args.trips))
        for e, rt in rts.items():
            pp[f"ipc.sem {e}"].append(pingpong(args.trips, (rt, e)))
    for title, rows in (("uncontended inc+dec (per pair)", loops),
                        ("ping-pong round trip", pp)):
        base = statistics.median(rows["raw posix_ipc (Python)"])
        print(title)
        for k, v in rows.items():
            m = statistics.median(v)
            print(f"  {k:26s} {m * 1e6:8.3f} us   {m / base:5.2f}x")


if __name__ == "__main__":
    main()
