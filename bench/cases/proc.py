"""ipc.proc: stream ``head -c N /dev/zero`` through a stdout callback.

Ours: ``proc.spawn`` with ``stdout = true`` and a callback that counts the
bytes, then ``h:wait()`` (Lua), or the same from Python.  Reference:
CPython's ``subprocess.Popen`` reading the pipe with 64 KiB reads.  MB/s.
The full run streams 256 MiB per call; quick mode less (the row says how
much).  (The C LuaIPC reads 1 KiB at a time: ~580 MB/s on this class of
machine.)
"""
from __future__ import annotations

import subprocess

from ..core import Group, Ref, Settings

LUA = """
local proc = require "ipc.proc"
local n = ...
return function()
  local total = 0
  local h = assert(proc.spawn("head -c " .. n .. " /dev/zero",
                   { stdout = true, callback = function(s, d) total = total + #d end }))
  assert(h:wait())
  assert(total == n, total)
end
"""


def _timed(fn, n: int):
    import time

    def run() -> float:
        t = time.perf_counter()
        fn()
        return n / (time.perf_counter() - t) / 1e6
    return run


def _py_ipc(n: int) -> None:
    from ipc import proc
    total = 0

    def cb(stream, data):
        nonlocal total
        total += len(data)

    assert proc.spawn(["head", "-c", str(n), "/dev/zero"], stdout=True, callback=cb).wait() == 0
    assert total == n, total


def _py_subprocess(n: int) -> None:
    p = subprocess.Popen(["head", "-c", str(n), "/dev/zero"], stdout=subprocess.PIPE, bufsize=0)
    total, read = 0, p.stdout.read
    while True:
        d = read(65536)
        if not d:
            break
        total += len(d)
    p.stdout.close()
    assert p.wait() == 0 and total == n, total


def _group(st: Settings, engine: str, runtime) -> Group:
    n = st.proc_mib << 20
    ref = Ref("subprocess, 64 KiB reads", _timed(lambda: _py_subprocess(n), n))
    if runtime is not None:
        ours = _timed(runtime.execute(LUA, n), n)
    else:
        ours = _timed(lambda: _py_ipc(n), n)
    note = f"{st.proc_mib} MiB per run"
    if st.proc_mib != 256:
        note += f" ({st.mode} mode; the full run streams 256 MiB)"
    return Group("proc stdout callback", engine, "MB/s", ours, [ref], goal=(">=", 0.9),
                 note=note)


def groups(st: Settings, engines, runtimes, scratch):
    for engine in engines:
        yield lambda e=engine: _group(st, e, runtimes(e))
