"""ipc.mq: 100-byte messages through a POSIX message queue.

Two processes: one sends N messages, another receives them.  The receiver
prints a line after its first and after its last message; the time between
the two lines (seen here) gives microseconds per message, so start-up is
left out.  Ours: both sides ipc.mq (``luaipc`` children of the engine, or
Python); reference: both sides raw posix_ipc from Python.  The queue holds
the system's default number of messages.  Two-process rates depend a lot
on scheduling, so a second case gives the steadier cost of one send +
receive inside one process.
"""
from __future__ import annotations

import sys

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

SIZE = 100

PY_RAW = {
    "send": """
import sys, posix_ipc
q = posix_ipc.MessageQueue("/" + sys.argv[1]); m = b"x" * int(sys.argv[3]); send = q.send
for _ in range(int(sys.argv[2])): send(m)
""",
    "receive": """
import sys, posix_ipc
q = posix_ipc.MessageQueue("/" + sys.argv[1]); n = int(sys.argv[2]); receive = q.receive
receive(); print("first", flush=True)
for _ in range(n - 1): receive()
print("last", flush=True)
""",
}

PY_IPC = {
    "send": """
import sys
from ipc import mq
q = mq.open(sys.argv[1]); m = b"x" * int(sys.argv[3]); send = q.send
for _ in range(int(sys.argv[2])): send(m)
""",
    "receive": """
import sys
from ipc import mq
q = mq.open(sys.argv[1]); n = int(sys.argv[2]); receive = q.receive
receive(); print("first", flush=True)
for _ in range(n - 1): receive()
print("last", flush=True)
""",
}

LUA = {
    "send": """
local mq = require "ipc.mq"
local q = assert(mq.open(arg[1]))
local m = string.rep("x", tonumber(arg[3]))
for _ = 1, tonumber(arg[2]) do q:send(m) end
""",
    "receive": """
local mq = require "ipc.mq"
local q = assert(mq.open(arg[1]))
local n = tonumber(arg[2])
q:receive(); io.stdout:write("first\\n"); io.stdout:flush()
for _ = 2, n do q:receive() end
io.stdout:write("last\\n"); io.stdout:flush()
""",
}

LUA_PAIR = """
local mq = require "ipc.mq"
local q = assert(mq.open(...))
local m = string.rep("x", 100)
return function(n) for _ = 1, n do q:send(m); q:receive() end end,
       function() q:close() end
"""


def _commands(kind: str, engine: str, scratch) -> dict:
    if kind == "raw":
        return {r: ([sys.executable, "-c", PY_RAW[r]], None) for r in PY_RAW}
    if engine == "python":
        return {r: ([sys.executable, "-c", PY_IPC[r]], None) for r in PY_IPC}
    return {r: ([*luaipc_command(), scratch.write(f"mq_{r}.lua", LUA[r])], lua_env(engine))
            for r in LUA}


def _two_process(cmds: dict, count: int) -> float:
    name = fresh()
    q = posix_ipc.MessageQueue("/" + name, posix_ipc.O_CREX, 0o600,
                               posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT, SIZE)
    try:
        return first_to_last_us(cmds, [name, str(count), str(SIZE)], count)
    finally:
        q.close()
        q.unlink()


def two_process(st: Settings, engine: str, scratch) -> Group:
    ours_cmds = _commands("ours", engine, scratch)
    raw_cmds = _commands("raw", engine, scratch)
    n = st.messages
    return Group("mq 100 B, two processes", engine, "us",
                 lambda: _two_process(ours_cmds, n),
                 [Ref("raw posix_ipc (Python)", lambda: _two_process(raw_cmds, n))],
                 note=f"{n} messages per run; per message")


def one_process(st: Settings, engine: str, runtime) -> Group:
    name = fresh()
    raw = posix_ipc.MessageQueue("/" + name, posix_ipc.O_CREX, 0o600, 10, SIZE)
    m = b"x" * SIZE
    send, receive = raw.send, raw.receive

    def raw_loop(k):
        for _ in range(k):
            send(m)
            receive()
    g = Group("mq 100 B send+receive, one process", engine, "us", None,
              [Ref("raw posix_ipc (Python)", per_op_us(raw_loop, st.loop // 2))])
    g.cleanup += [lambda: posix_ipc.unlink_message_queue("/" + name), raw.close]
    if runtime is not None:
        loop, close = runtime.execute(LUA_PAIR, name.encode())
        g.cleanup.append(close)
    else:
        from ipc import mq
        q = mq.open(name)
        qs, qr = q.send, q.receive

        def loop(k):
            for _ in range(k):
                qs(m)
                qr()
        close = q.close
        g.cleanup.append(close)
    g.ours = per_op_us(loop, st.loop // 2)
    return g


def groups(st: Settings, engines, runtimes, scratch):
    for engine in engines:
        yield lambda e=engine: two_process(st, e, scratch)
    for engine in engines:
        yield lambda e=engine: one_process(st, e, runtimes(e))
