"""ipc.loop: what waiting inside a loop task costs.

Ping-pong in a loop: as ``sem ping-pong`` (a ``luaipc`` child of the same
engine echoes), but this side runs the trips inside a ``loop.run`` task,
so every ``pong:dec()`` that finds no unit suspends the task and a helper
thread waits.  Reference: the same trips blocking, outside a loop.
Microseconds per round trip (goal from issue 16: within 1.5x).

Wake: 1000 tasks each wait on a semaphore of their own; all are given a
unit once.  Microseconds of process CPU (helper threads included) per task,
spawn to join, against a blocking ``inc+dec`` of one semaphore (goal:
the loop adds at most 20 us per wake on lua5.4).  Lua engines only.

asyncio receive: 1000 coroutines each ``await ipc.loop.receive(q)`` on one
of 10 queues (100 each; a queue holds 10 messages here, the machine's
``/proc/sys/fs/mqueue/msg_max``), all waiting before another process sends
1000 messages of 100 bytes round-robin; all must arrive.  Reference: one
blocking ``q.receive()`` after another, in the order they are sent.
Microseconds per message, from the go to the last message (goal: within
2x).  Python only.
"""
from __future__ import annotations

import asyncio
import subprocess
import sys
import time

from ..core import Group, Ref, Settings, fresh, lua_env, luaipc_command
from .sem import LUA_ECHO, LUA_PING, _pingpong

LUA_PING_LOOP = """
local loop = require "ipc.loop"
local sem = require "ipc.sem"
local a, b = ...
local ping, pong = assert(sem.open(a)), assert(sem.open(b))
return function(n)
  loop.run(function() for _ = 1, n do ping:inc(); pong:dec() end end)
end, function() ping:close(); pong:close() end
"""

LUA_WAKE = """
local loop = require "ipc.loop"
local sem = require "ipc.sem"
local prefix, n = ...
local ss = {}
for i = 1, n do ss[i] = assert(sem.open(prefix .. i, 1)); assert(ss[i]:dec()) end
return function()
  loop.run(function()
    local ts = {}
    for i = 1, n do ts[i] = loop.spawn(function() return ss[i]:dec() end) end
    loop.sleep(0)                            -- every task now waits
    for i = 1, n do ss[i]:inc() end
    for i = 1, n do assert(ts[i]:join()) end
  end)
end, function() for i = 1, n do ss[i]:close() end end
"""

LUA_BLOCKING = """
local sem = require "ipc.sem"
local s = assert(sem.open(..., 1))
return function(n) for _ = 1, n do s:inc(); s:dec() end end, function() s:close() end
"""

TASKS = 1000


def pingpong(st: Settings, engine: str, runtime, scratch) -> Group:
    trips = max(300, st.trips // 10)          # a thread per wait: slower
    echo = [*luaipc_command(), scratch.write("loop_echo.lua", LUA_ECHO)]
    env = lua_env(engine)

    def side(code):
        return lambda a, b: runtime.execute(code, a.encode(), b.encode())
    return Group("loop sem ping-pong", engine, "us",
                 lambda: _pingpong(trips, echo, env, side(LUA_PING_LOOP)),
                 [Ref("the same, blocking (no loop)",
                      lambda: _pingpong(trips, echo, env, side(LUA_PING)))],
                 goal=("<=", 1.5), note="round trip; this side in a loop task")


def _cpu_us_per(fn, n: int):
    def run() -> float:
        t = time.process_time()
        fn()
        return (time.process_time() - t) / n * 1e6
    return run


def wake(st: Settings, engine: str, runtime) -> Group:
    n = 50 if st.mode == "smoke" else TASKS
    run, close = runtime.execute(LUA_WAKE, fresh().encode(), n)
    loop_b, close_b = runtime.execute(LUA_BLOCKING, fresh().encode())
    g = Group(f"loop wake {n} tasks", engine, "us", _cpu_us_per(run, n),
              [Ref("blocking inc+dec (no loop)", _cpu_us_per(lambda: loop_b(n), n))],
              goal=None, note="CPU per task, spawn to join (goal: <= 20 us added)")
    g.cleanup += [close, close_b]
    return g


#: Sends argv[1] messages round-robin on the queues argv[2:] for each line
#: of input (so that its start-up is not timed).
SENDER = """
import sys
from ipc import mq
n, qs = int(sys.argv[1]), [mq.open(name) for name in sys.argv[2:]]
m, k = b"x" * 100, len(qs)
print("ready", flush=True)
for _line in sys.stdin:
    for i in range(n):
        qs[i % k].send(m)
"""
QUEUES = 10


def asyncio_receive(st: Settings) -> Group:
    from ipc import loop as aio, mq
    n = 100 if st.mode == "smoke" else 1000
    names = [fresh() for _ in range(QUEUES)]
    qs = [mq.open(name, 10, 100) for name in names]
    sender = subprocess.Popen([sys.executable, "-c", SENDER, str(n), *names],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def close() -> None:
        sender.stdin.close()
        if sender.wait(30):
            raise RuntimeError("the asyncio receive bench's sender failed")
        sender.stdout.close()
        for q in qs:
            q.close()

    if sender.stdout.readline().strip() != "ready":
        close()
        raise RuntimeError("the asyncio receive bench's sender did not start")

    def go() -> float:
        sender.stdin.write("go\n")
        sender.stdin.flush()
        return time.perf_counter()

    def delivered(got: list) -> None:
        if len(got) != n or any(q.current_messages for q in qs):
            raise RuntimeError(f"asyncio receive: {len(got)} of {n} messages delivered")

    def ours() -> float:
        async def main() -> float:
            rs = [asyncio.ensure_future(aio.receive(qs[i % QUEUES])) for i in range(n)]
            await asyncio.sleep(0.01)         # every receive now waits on its queue
            t0 = go()
            got = await asyncio.gather(*rs)
            t = time.perf_counter() - t0
            delivered(got)
            return t / n * 1e6
        return asyncio.run(main())

    def blocking() -> float:
        t0 = go()
        got = [qs[i % QUEUES].receive() for i in range(n)]
        t = time.perf_counter() - t0
        delivered(got)
        return t / n * 1e6

    g = Group(f"loop asyncio {n} receives on {QUEUES} queues", "python", "us", ours,
              [Ref("blocking receive, queue by queue", blocking)], goal=("<=", 2.0),
              note="per message; all waiting before another process sends")
    g.cleanup.append(close)
    return g


def groups(st: Settings, engines, runtimes, scratch):
    for engine in engines:
        if engine != "python":
            yield lambda e=engine: pingpong(st, e, runtimes(e), scratch)
    for engine in engines:
        if engine != "python":
            yield lambda e=engine: wake(st, e, runtimes(e))
    if "python" in engines:
        yield lambda: asyncio_receive(st)
