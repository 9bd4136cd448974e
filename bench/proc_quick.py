"""Quick side-by-side: stream `head -c N /dev/zero` through a stdout callback.

    python bench/proc_quick.py [--mib 256] [--rounds 5] [--engine lua5.4]

Rows: ipc.proc from Lua (h:wait() with a callback that counts bytes),
ipc.proc from Python (same), and CPython's subprocess reading the pipe with
64 KiB reads.  Runs are interleaved (A B C A B C ...) so a busy machine hurts
all rows alike; the median of each is reported, and the ratios against
subprocess.  The C LuaIPC's figure on this machine class is ~580 MB/s (it
reads 1 KiB at a time).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from ipc import proc
from ipc.lua import new_runtime

LUA = """
local proc = require "ipc.proc"
local n = ...
return function()
  local total = 0
  local h = proc.spawn("head -c " .. n .. " /dev/zero",
                       { stdout = true, callback = function(s, d) total = total + #d end })
  assert(h:wait())
  assert(total == n, total)
end
"""


def lua_runner(engine: str, n: int):
    rt = new_runtime(engine)
    return rt.execute(LUA, n)


def py_ipc(n: int) -> None:
    total = 0

    def cb(stream, data):
        nonlocal total
        total += len(data)

    assert proc.spawn(["head", "-c", str(n), "/dev/zero"], stdout=True, callback=cb).wait() == 0
    assert total == n


def py_subprocess(n: int) -> None:
    p = subprocess.Popen(["head", "-c", str(n), "/dev/zero"], stdout=subprocess.PIPE, bufsize=0)
    total, read = 0, p.stdout.read
    while True:
        d = read(65536)
        if not d:
            break
        total += len(d)
    p.stdout.close()
    assert p.wait() == 0 and total == n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--engine", default="lua5.4")
    a = ap.parse_args()
    n = a.mib << 20
    lua_fn = lua_runner(a.engine, n)
    rows = {f"ipc.proc from Lua ({a.engine})": lua_fn,
            "ipc.proc from Python": lambda: py_ipc(n),
            "subprocess, 64 KiB reads": lambda: py_subprocess(n)}
    times: dict[str, list[float]] = {k: [] for k in rows}
    for _ in range(a.rounds):
        for name, fn in rows.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    base = n / statistics.median(times["subprocess, 64 KiB reads"]) / 1e6
    print(f"streaming {a.mib} MiB from head -c {n} /dev/zero, median of {a.rounds}:")
    for name, ts in times.items():
        rate = n / statistics.median(ts) / 1e6
        best = n / min(ts) / 1e6
        print(f"  {name:32s} {rate:7.0f} MB/s (best {best:5.0f})  "
              f"{rate / base:4.2f}x subprocess  {rate / 580:4.2f}x C LuaIPC (~580 MB/s)")


if __name__ == "__main__":
    main()
