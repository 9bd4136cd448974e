"""A Python program and a Lua script share memory and take turns.

    python examples/python_and_lua.py

Python creates a segment and two semaphores, starts a Lua script under
luaipc, and they play ping-pong: each side adds one to a number in the
segment and hands the turn to the other.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from contextlib import closing

import ipc.sem
import ipc.shm

ROUNDS = 100

LUA = r"""
local shm, sem = require "ipc.shm", require "ipc.sem"
local name, rounds = arg[1], tonumber(arg[2])
local box = assert(shm.attach(name))
local ping, pong = assert(sem.open(name .. "-ping")), assert(sem.open(name .. "-pong"))
for _ = 1, rounds do
  ping:dec()                                    -- Python's turn is over
  box:seek("set", 0)
  local n = tonumber(box:read("l"))
  box:seek("set", 0)
  box:write(("%d\n"):format(n + 1))
  pong:inc()                                    -- Python's turn
end
print(("Lua (%s) saw the number reach %d"):format(_VERSION, rounds * 2 - 1))
"""


def luaipc() -> list[str]:
    """The luaipc beside this Python (a venv), else on PATH, else python -m ipc."""
    script = os.path.join(os.path.dirname(sys.executable), "luaipc")
    if os.path.exists(script):
        return [script]
    found = shutil.which("luaipc")
    return [found] if found else [sys.executable, "-m", "ipc"]


def main() -> int:
    name = f"luaipc-example-{os.getpid()}"
    # A semaphore's `with` takes and gives back a unit; the handles' lifetime
    # is managed here with closing() instead (the creator's close unlinks).
    with ipc.shm.create(name, 64) as box, \
            closing(ipc.sem.open(name + "-ping", 1)) as ping, \
            closing(ipc.sem.open(name + "-pong", 1)) as pong:
        ping.acquire()                          # semaphores are created with
        pong.acquire()                          # 1 (LuaIPC: n = 0 opens); take it
        box.write(b"0\n")
        child = subprocess.Popen([*luaipc(), "-e", LUA, "-", name, str(ROUNDS)],
                                 stdin=subprocess.DEVNULL)
        try:
            for _ in range(ROUNDS):
                ping.release()                  # the Lua side's turn
                pong.acquire(timeout=30)        # wait for it to hand back
                box.seek(0)
                n = int(box.readline())
                box.seek(0)
                box.write(b"%d\n" % (n + 1))
        finally:
            child.wait(timeout=30)
        box.seek(0)
        total = int(box.readline())
    print(f"Python and Lua counted to {total} in {ROUNDS} round trips")
    return 0 if total == 2 * ROUNDS and child.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
