"""Messages per second through a POSIX message queue between two processes:
raw posix_ipc from Python beside ipc.mq from Python and from Lua.

    python bench/mq_quick.py [--count 100000] [--size 100] [--repeat 3]
                             [--engines lua5.4,luajit2.1]

One process sends ``count`` messages of ``size`` bytes, another receives
them; the queue holds as many messages as the system allows by default
(``/proc/sys/fs/mqueue/msg_max``).  The receiver prints a line after its
first and after its last message; the time between the two lines (seen by
this script) gives the rate, so start-up costs are left out.  Best of
``repeat`` runs.  Two-process rates depend a lot on scheduling (a slower
sender can mean fewer, fuller wake-ups for the receiver), so the script also
prints the steadier cost of one send + receive inside one process, which
shows the overhead each layer adds.  Standalone: no bench framework needed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import posix_ipc

PY_RAW = {
    "send": """
import sys, posix_ipc
q = posix_ipc.MessageQueue(sys.argv[1]); m = b"x" * int(sys.argv[3])
for _ in range(int(sys.argv[2])): q.send(m)
""",
    "receive": """
import sys, posix_ipc
q = posix_ipc.MessageQueue(sys.argv[1]); n = int(sys.argv[2])
q.receive(); print("first", flush=True)
for _ in range(n - 1): q.receive()
print("last", flush=True)
""",
}

PY_IPC = {
    "send": """
import sys
from ipc import mq
q = mq.open(sys.argv[1].lstrip("/")); m = b"x" * int(sys.argv[3]); send = q.send
for _ in range(int(sys.argv[2])): send(m)
""",
    "receive": """
import sys
from ipc import mq
q = mq.open(sys.argv[1].lstrip("/")); n = int(sys.argv[2]); receive = q.receive
receive(); print("first", flush=True)
for _ in range(n - 1): receive()
print("last", flush=True)
""",
}

LUA = {
    "send": """
local mq = require "ipc.mq"
local q = assert(mq.open((arg[1]:gsub("^/", ""))))
local m = string.rep("x", tonumber(arg[3]))
for _ = 1, tonumber(arg[2]) do q:send(m) end
""",
    "receive": """
local mq = require "ipc.mq"
local q = assert(mq.open((arg[1]:gsub("^/", ""))))
local n = tonumber(arg[2])
q:receive(); io.stdout:write("first\\n"); io.stdout:flush()
for _ = 2, n do q:receive() end
io.stdout:write("last\\n"); io.stdout:flush()
""",
}


def luaipc_command() -> list[str]:
    script = Path(sys.executable).with_name("luaipc")
    if script.exists():
        return [str(script)]
    found = shutil.which("luaipc")
    return [found] if found else [sys.executable, "-m", "ipc"]


def command(kind: str, role: str, tmp: Path) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if kind == "posix_ipc":
        return [sys.executable, "-c", PY_RAW[role]], env
    if kind == "ipc.mq":
        return [sys.executable, "-c", PY_IPC[role]], env
    env["LUAIPC_ENGINE"] = kind
    script = tmp / f"mq_bench_{role}.lua"
    script.write_text(LUA[role])
    return luaipc_command() + [str(script)], env


def one_run(kind: str, count: int, size: int, tmp: Path) -> float:
    name = f"/luaipc-bench-{os.getpid()}"
    q = posix_ipc.MessageQueue(name, posix_ipc.O_CREX, 0o600,
                               posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT, size)
    try:
        rcmd, renv = command(kind, "receive", tmp)
        scmd, senv = command(kind, "send", tmp)
        args = [name, str(count), str(size)]
        receiver = subprocess.Popen(rcmd + args, env=renv, stdout=subprocess.PIPE, text=True)
        sender = subprocess.Popen(scmd + args, env=senv)
        assert receiver.stdout.readline().strip() == "first"
        t0 = time.perf_counter()
        assert receiver.stdout.readline().strip() == "last"
        elapsed = time.perf_counter() - t0
        receiver.wait(60)
        sender.wait(60)
        if receiver.returncode or sender.returncode:
            raise RuntimeError(f"{kind}: a child failed")
        return (count - 1) / elapsed
    finally:
        q.close()
        q.unlink()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000)
    ap.add_argument("--size", type=int, default=100)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--engines", default="lua5.4,luajit2.1")
    a = ap.parse_args(argv)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"mq_quick_{os.getpid()}"
    tmp.mkdir(exist_ok=True)
    kinds = ["posix_ipc", "ipc.mq"] + [e for e in a.engines.split(",") if e]
    print(f"{a.count} messages of {a.size} bytes, sender and receiver in two processes, "
          f"queue of {posix_ipc.QUEUE_MESSAGES_MAX_DEFAULT} (best of {a.repeat})")
    base = None
    try:
        for kind in kinds:
            label = kind if kind in ("posix_ipc", "ipc.mq") else f"ipc.mq from Lua ({kind})"
            label = {"posix_ipc": "raw posix_ipc (Python)", "ipc.mq": "ipc.mq (Python)"}.get(kind, label)
            rate = max(one_run(kind, a.count, a.size, tmp) for _ in range(a.repeat))
            base = base or rate
            print(f"  {label:32s} {rate:12,.0f} msg/s   {rate / base:5.2f} x raw")
        in_process(kinds, a.size)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


def in_process(kinds: list[str], size: int, n: int = 100_000) -> None:
    """Microseconds per send + receive pair, one process, best of 3."""
    from ipc import mq
    from ipc.lua import new_runtime

    name = f"luaipc-bench-{os.getpid()}"
    q = mq.open(name, 10, size)
    m = b"x" * size

    def best(f) -> float:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            f()
            times.append(time.perf_counter() - t)
        return min(times) / n * 1e6

    def loop(send, receive):
        def f():
            for _ in range(n):
                send(m)
                receive()
        return f

    print(f"one process, {n} x (send + receive) of {size} bytes:")
    try:
        for kind in kinds:
            if kind == "posix_ipc":
                us = best(loop(q._mq.send, q._mq.receive))
            elif kind == "ipc.mq":
                us = best(loop(q.send, q.receive))
            else:
                lua = new_runtime(kind)
                us = best(lua.eval("""function(name, n, size)
                  local mq = require "ipc.mq"
                  local q = assert(mq.open(name))
                  local m = string.rep("x", size)
                  return function() for _ = 1, n do q:send(m); q:receive() end end
                end""")(name.encode(), n, size))
            print(f"  {kind:32s} {us:6.2f} us")
    finally:
        q.close()


if __name__ == "__main__":
    sys.exit(main())
