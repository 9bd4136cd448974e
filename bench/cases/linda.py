"""ipc.linda: the value ``{1, "two", x = 3.5}`` through a linda.

References, as issue 15 names them: a raw posix_ipc MessageQueue carrying
``msgpack.packb(value)`` from Python (what people hand-roll today), and,
for the 1 MiB string, a raw 1 MiB copy into and out of shared memory from
Python.

Cases:
- one process: send + receive of the value (the steady cost of one pair);
- two processes: one sends N values, another receives them (per value;
  the receiver's first and last lines bracket the timing, as in mq.py);
- a 1 MiB string sent and received in one process (MB/s).
"""
from __future__ import annotations

import mmap
import sys
import time

import msgpack
import posix_ipc

from ..core import (
    Group,
    Ref,
    Settings,
    first_to_last_us,
    fresh,
    lua_env,
    luaipc_command,
    per_op_us,
)

VALUE_PY = [1, "two", {"x": 3.5}]    # the nearest Python value: a list plus a dict
VALUE_LUA = '{ 1, "two", x = 3.5 }'
MIB = 1 << 20

LUA_PAIR = """
local linda = require "ipc.linda"
local l = assert(linda.open(...))
local v = VALUE
return function(n) for _ = 1, n do l:send("k", v); l:receive("k") end end,
       function() l:close() end
""".replace("VALUE", VALUE_LUA)

LUA_MIB = """
local linda = require "ipc.linda"
local l = assert(linda.open(...))
local s = string.rep("x", 1048576)
return function(n) for _ = 1, n do l:send("k", s); local _, got = l:receive("k") end end,
       function() l:close() end
"""

SEND_PY = """
import sys, ipc.linda as L
l = L.open(sys.argv[1]); v = [1, "two", {"x": 3.5}]; send = l.send
for _ in range(int(sys.argv[2])): send("k", v)
"""
RECEIVE_PY = """
import sys, ipc.linda as L
l = L.open(sys.argv[1]); n = int(sys.argv[2]); receive = l.receive
receive("k"); print("first", flush=True)
for _ in range(n - 1): receive("k")
print("last", flush=True)
"""
SEND_LUA = """
local l = assert(require("ipc.linda").open(arg[1]))
local v = VALUE
for _ = 1, tonumber(arg[2]) do l:send("k", v) end
""".replace("VALUE", VALUE_LUA)
RECEIVE_LUA = """
local l = assert(require("ipc.linda").open(arg[1]))
local n = tonumber(arg[2])
l:receive("k"); io.stdout:write("first\\n"); io.stdout:flush()
for _ = 2, n do l:receive("k") end
io.stdout:write("last\\n"); io.stdout:flush()
"""
SEND_RAW = """
import sys, msgpack, posix_ipc
q = posix_ipc.MessageQueue("/" + sys.argv[1]); v = [1, "two", {"x": 3.5}]; send = q.send
packb = msgpack.packb
for _ in range(int(sys.argv[2])): send(packb(v))
"""
RECEIVE_RAW = """
import sys, msgpack, posix_ipc
q = posix_ipc.MessageQueue("/" + sys.argv[1]); n = int(sys.argv[2]); receive = q.receive
unpackb = msgpack.unpackb
unpackb(receive()[0]); print("first", flush=True)
for _ in range(n - 1): unpackb(receive()[0])
print("last", flush=True)
"""


def _raw_pair(name: str):
    q = posix_ipc.MessageQueue("/" + name, posix_ipc.O_CREX, 0o600, 10, 256)
    send, receive, packb, unpackb = q.send, q.receive, msgpack.packb, msgpack.unpackb

    def loop(k: int) -> None:
        for _ in range(k):
            send(packb(VALUE_PY))
            unpackb(receive()[0])

    def close() -> None:
        q.close()
        q.unlink()
    return loop, close


def one_process(st: Settings, engine: str, runtime) -> Group:
    from ipc import linda
    name = fresh()
    ld = linda.create(name)
    raw_loop, raw_close = _raw_pair(fresh())
    g = Group("linda send+receive {1,'two',x=3.5}, one process", engine, "us", None,
              [Ref("raw posix_ipc mq + msgpack (Python)", per_op_us(raw_loop, st.loop // 10))],
              goal=("<=", 1.5 if engine == "python" else 2.0 if "jit" in engine else 3.0))
    g.cleanup += [raw_close, ld.close]
    if runtime is not None:
        loop, close = runtime.execute(LUA_PAIR, name.encode())
        g.cleanup.append(close)
    else:
        send, receive = ld.send, ld.receive

        def loop(k: int) -> None:
            for _ in range(k):
                send("k", VALUE_PY)
                receive("k")
    g.ours = per_op_us(loop, st.loop // 10)
    return g


def _two(cmds: dict, count: int, raw: bool) -> float:
    name = fresh()
    if raw:
        holder = posix_ipc.MessageQueue("/" + name, posix_ipc.O_CREX, 0o600, 10, 256)
    else:
        from ipc import linda
        holder = linda.create(name)
        holder.limit("k", 10)            # as deep as the queue of the reference
    try:
        return first_to_last_us(cmds, [name, str(count)], count)
    finally:
        holder.close()
        if raw:
            holder.unlink()


def two_process(st: Settings, engine: str, scratch) -> Group:
    if engine == "python":
        ours = {"send": ([sys.executable, "-c", SEND_PY], None),
                "receive": ([sys.executable, "-c", RECEIVE_PY], None)}
    else:
        ours = {"send": ([*luaipc_command(), scratch.write("linda_send.lua", SEND_LUA)],
                         lua_env(engine)),
                "receive": ([*luaipc_command(), scratch.write("linda_receive.lua", RECEIVE_LUA)],
                            lua_env(engine))}
    raw = {"send": ([sys.executable, "-c", SEND_RAW], None),
           "receive": ([sys.executable, "-c", RECEIVE_RAW], None)}
    n = max(200, st.messages // 5)
    return Group("linda {1,'two',x=3.5}, two processes", engine, "us",
                 lambda: _two(ours, n, False),
                 [Ref("raw posix_ipc mq + msgpack (Python)", lambda: _two(raw, n, True))],
                 goal=("<=", 1.5 if engine == "python" else 2.0 if "jit" in engine else 3.0),
                 note=f"{n} values per run; per value")


def one_mib(st: Settings, engine: str, runtime) -> Group:
    from ipc import linda
    name = fresh()
    ld = linda.create(name)
    seg = posix_ipc.SharedMemory("/" + fresh(), posix_ipc.O_CREX, size=MIB)
    mm = mmap.mmap(seg.fd, MIB)
    seg.close_fd()
    payload = b"x" * MIB
    n = max(4, st.mib_loops // 4)

    def raw_loop(k: int) -> None:
        for _ in range(k):
            mm[:MIB] = payload
            mm[:MIB]

    def mbps(fn):
        def run() -> float:
            t = time.perf_counter()
            fn(n)
            return n * 2 * MIB / 1e6 / (time.perf_counter() - t)
        return run
    g = Group("linda 1 MiB string send+receive", engine, "MB/s", None,
              [Ref("raw 1 MiB shm write+read (Python)", mbps(raw_loop))], goal=(">=", 0.5))
    g.cleanup += [seg.unlink, mm.close, ld.close]
    if runtime is not None:
        loop, close = runtime.execute(LUA_MIB, name.encode())
        g.cleanup.append(close)
    else:
        s = "x" * MIB

        def loop(k: int) -> None:
            for _ in range(k):
                ld.send("k", s)
                ld.receive("k")
    g.ours = mbps(loop)
    return g


def groups(st: Settings, engines, runtimes, scratch):
    for engine in engines:
        yield lambda e=engine: one_process(st, e, runtimes(e))
    for engine in engines:
        yield lambda e=engine: two_process(st, e, scratch)
    for engine in engines:
        yield lambda e=engine: one_mib(st, e, runtimes(e))
