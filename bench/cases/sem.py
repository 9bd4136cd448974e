"""ipc.sem: uncontended inc+dec, and a two-process ping-pong.

Uncontended: a loop of ``s:inc(); s:dec()`` (Lua) or ``s.inc(); s.dec()``
(Python) beside ``release(); acquire()`` on a raw posix_ipc.Semaphore, and
for Python also a multiprocessing.Semaphore.  Microseconds per pair.

Ping-pong: this process posts PING and waits for PONG; a child waits for
PING and posts PONG.  Ours: both sides ipc.sem (a Lua runtime here and a
``luaipc`` child of the same engine; or Python on both sides).  Reference:
both sides raw posix_ipc (and multiprocessing semaphores with a forked
child, for Python).  Microseconds per round trip, the child's start-up left
out (a warm-up of trips before the clock starts).
"""
from __future__ import annotations

import multiprocessing
import subprocess
import sys
import time

import posix_ipc

from ..core import Group, Ref, Settings, fresh, lua_env, luaipc_command, per_op_us

LUA_LOOP = """
local sem = require "ipc.sem"
local s = assert(sem.open(..., 1))
return function(n)
  for _ = 1, n do s:inc(); s:dec() end
end, function() s:close() end
"""

LUA_PING = """
local sem = require "ipc.sem"
local a, b = ...
local ping, pong = assert(sem.open(a)), assert(sem.open(b))
return function(n)
  for _ = 1, n do ping:inc(); pong:dec() end
end, function() ping:close(); pong:close() end
"""

LUA_ECHO = """-- echo: N times dec(PING) then inc(PONG)
local sem = require "ipc.sem"
local ping, pong = assert(sem.open(arg[1])), assert(sem.open(arg[2]))
for _ = 1, tonumber(arg[3]) do ping:dec(); pong:inc() end
"""

PY_ECHO = """
import sys
from ipc import sem
ping, pong = sem.open(sys.argv[1]), sem.open(sys.argv[2])
dec, inc = ping.dec, pong.inc
for _ in range(int(sys.argv[3])):
    dec(); inc()
"""

RAW_ECHO = """
import posix_ipc, sys
ping, pong = posix_ipc.Semaphore("/" + sys.argv[1]), posix_ipc.Semaphore("/" + sys.argv[2])
acq, rel = ping.acquire, pong.release
for _ in range(int(sys.argv[3])):
    acq(); rel()
"""


def _raw_sem(value: int):
    s = posix_ipc.Semaphore("/" + fresh(), posix_ipc.O_CREX, 0o600, value)
    s.unlink()
    return s


def _raw_loop(s):
    rel, acq = s.release, s.acquire

    def loop(n):
        for _ in range(n):
            rel()
            acq()
    return loop


def uncontended(st: Settings, engine: str, runtime) -> Group:
    raw = _raw_sem(1)
    g = Group("sem inc+dec", engine, "us", None, [], goal=None)
    g.cleanup.append(raw.close)
    g.refs.append(Ref("raw posix_ipc (Python)", per_op_us(_raw_loop(raw), st.loop)))
    if runtime is not None:
        loop, close = runtime.execute(LUA_LOOP, fresh().encode())
        g.cleanup.append(close)
        g.ours = per_op_us(loop, st.loop)
        g.goal = ("<=", 2.5 if engine == "lua5.4" else 1.5)
    else:
        from ipc import sem
        s = sem.open(fresh(), 1)
        g.cleanup.append(s.close)
        g.ours = per_op_us(_raw_loop_named(s.inc, s.dec), st.loop)
        ms = multiprocessing.Semaphore(1)
        g.refs.append(Ref("multiprocessing.Semaphore", per_op_us(_raw_loop(ms), st.loop)))
    return g


def _raw_loop_named(inc, dec):
    def loop(n):
        for _ in range(n):
            inc()
            dec()
    return loop


def _pingpong(trips: int, child_cmd: list[str], env=None, local=None) -> float:
    """Round-trip microseconds: ``local(a, b)`` gives (run(n), close) for
    this process's side; the child echoes ``trips`` times."""
    a, b = fresh(), fresh()
    ping = posix_ipc.Semaphore("/" + a, posix_ipc.O_CREX, 0o600, 0)
    pong = posix_ipc.Semaphore("/" + b, posix_ipc.O_CREX, 0o600, 0)
    child = None
    try:
        child = subprocess.Popen([*child_cmd, a, b, str(trips)], env=env,
                                 stdout=subprocess.DEVNULL)
        if local is None:
            rel, acq = ping.release, pong.acquire

            def run(n):
                for _ in range(n):
                    rel()
                    acq()
            close = None
        else:
            run, close = local(a, b)
        warm = max(1, trips // 10)
        run(warm)                                    # the child is up and running
        t = time.perf_counter()
        run(trips - warm)
        dt = time.perf_counter() - t
        if close is not None:
            close()
        if child.wait(timeout=120) != 0:
            raise RuntimeError(f"ping-pong child {child_cmd[:2]} failed")
        return dt / (trips - warm) * 1e6
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        for s in (ping, pong):
            s.unlink()
            s.close()


def _mp_echo(ping, pong, n):  # runs in the forked child
    for _ in range(n):
        ping.acquire()
        pong.release()


def _mp_pingpong(trips: int) -> float:
    ctx = multiprocessing.get_context("fork")
    ping, pong = ctx.Semaphore(0), ctx.Semaphore(0)
    child = ctx.Process(target=_mp_echo, args=(ping, pong, trips))
    child.start()
    try:
        rel, acq = ping.release, pong.acquire
        warm = max(1, trips // 10)
        for _ in range(warm):
            rel()
            acq()
        t = time.perf_counter()
        for _ in range(trips - warm):
            rel()
            acq()
        dt = time.perf_counter() - t
        child.join(120)
        return dt / (trips - warm) * 1e6
    finally:
        if child.is_alive():
            child.kill()
            child.join()


def pingpong(st: Settings, engine: str, runtime, scratch) -> Group:
    trips = st.trips
    raw = Ref("raw posix_ipc (Python)",
              lambda: _pingpong(trips, [sys.executable, "-c", RAW_ECHO]))
    if runtime is not None:
        echo = [*luaipc_command(), scratch.write("sem_echo.lua", LUA_ECHO)]
        env = lua_env(engine)

        def local(a, b):
            return runtime.execute(LUA_PING, a.encode(), b.encode())
        ours = lambda: _pingpong(trips, echo, env, local)  # noqa: E731
        refs = [raw]
    else:
        from ipc import sem

        def local(a, b):
            ping, pong = sem.open(a), sem.open(b)
            inc, dec = ping.inc, pong.dec

            def run(n):
                for _ in range(n):
                    inc()
                    dec()

            def close():
                ping.close()
                pong.close()
            return run, close
        ours = lambda: _pingpong(trips, [sys.executable, "-c", PY_ECHO], None, local)  # noqa: E731
        refs = [raw, Ref("multiprocessing.Semaphore (fork)", lambda: _mp_pingpong(trips))]
    return Group("sem ping-pong", engine, "us", ours, refs, goal=("<=", 1.1),
                 note="round trip between two processes")


def groups(st: Settings, engines, runtimes, scratch):
    for engine in engines:
        yield lambda e=engine: uncontended(st, e, runtimes(e))
    for engine in engines:
        yield lambda e=engine: pingpong(st, e, runtimes(e), scratch)
