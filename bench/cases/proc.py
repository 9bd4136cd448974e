"""ipc.proc: stream ``head -c N /dev/zero`` through a stdout callback.

A second row streams varied data (8 KiB slices of a random buffer, written
by a Python child) without a goal: zeros flatter LuaJIT, which reuses
identical strings, and on every engine they make equal chunks.

Ours: ``proc.spawn`` with ``stdout = true`` and a callback that counts the
bytes, then ``h:wait()`` (Lua), or the same from Python.  Reference:
CPython's ``subprocess.Popen`` reading the pipe with 64 KiB reads.  MB/s.
The full run streams 256 MiB per call; quick mode less (the row says how
much).  (The C LuaIPC reads 1 KiB at a time: ~580 MB/s on this class of
machine.)
"""
from __future__ import annotations

import shlex
import subprocess
import sys

from ..core import Group, Ref, Settings

LUA = """
local proc = require "ipc.proc"
local n, cmd = ...
return function()
  local total = 0
  local h = assert(proc.spawn(cmd,
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


def _zeros(n: int) -> list[str]:
    return ["head", "-c", str(n), "/dev/zero"]


def _varied(n: int) -> list[str]:
    # 8 KiB writes from a 1 MiB random buffer, at a moving offset: no two
    # consecutive chunks are equal.
    code = ("import os, sys\n"
            "n = int(sys.argv[1]); buf = memoryview(os.urandom(1 << 20) * 2); off = 0\n"
            "while n > 0:\n"
            "    k = os.write(1, buf[off:off + min(8192, n)]); n -= k\n"
            "    off = (off + 8191) % (1 << 20)\n")
    return [sys.executable, "-c", code, str(n)]


def _py_ipc(argv: list[str], n: int) -> None:
    from ipc import proc
    total = 0

    def cb(_stream, data):
        nonlocal total
        total += len(data)

    # Not asserts: under python -O the work inside them would go too.
    status = proc.spawn(argv, stdout=True, callback=cb).wait()
    _check(status, total, n)


def _py_subprocess(argv: list[str], n: int) -> None:
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, bufsize=0)
    total, read = 0, p.stdout.read
    while True:
        d = read(65536)
        if not d:
            break
        total += len(d)
    p.stdout.close()
    _check(p.wait(), total, n)


def _check(status: int, total: int, n: int) -> None:
    if status != 0 or total != n:
        raise RuntimeError(f"the child exited with {status} after {total} of {n} bytes")


def _group(st: Settings, engine: str, runtime, varied: bool) -> Group:
    n = st.proc_mib << 20
    argv = (_varied if varied else _zeros)(n)
    ref = Ref("subprocess, 64 KiB reads", _timed(lambda: _py_subprocess(argv, n), n))
    if runtime is not None:
        cmd = " ".join(shlex.quote(a) for a in argv)
        ours = _timed(runtime.execute(LUA, n, cmd.encode()), n)
    else:
        ours = _timed(lambda: _py_ipc(argv, n), n)
    note = f"{st.proc_mib} MiB per run"
    if st.proc_mib != 256:
        note += f" ({st.mode} mode; the full run streams 256 MiB)"
    if varied:
        return Group("proc stdout callback, varied data", engine, "MB/s", ours, [ref],
                     note=note + "; no goal: zeros are the issue's case")
    return Group("proc stdout callback", engine, "MB/s", ours, [ref], goal=(">=", 0.9),
                 note=note)


# Four children that each read their input, work 0.2 s, then answer: input
# queued by write() goes out only while a handle is waited on, so waiting
# on each in turn takes the sum; wait_all drives all four at once.
_WORKER = ["sh", "-c", "cat >/dev/null; sleep 0.2; head -c 65536 /dev/zero"]
_INPUT = b"x" * 200_000                     # more than a pipe holds


def _ms(fn):
    import time

    def run() -> float:
        t = time.perf_counter()
        fn()
        return (time.perf_counter() - t) * 1e3
    return run


def _many(together: bool) -> None:
    from ipc import proc
    got = [0]

    def cb(_stream, data):
        got[0] += len(data)

    hs = [proc.spawn(_WORKER, stdin=True, stdout=True, callback=cb) for _ in range(4)]
    for h in hs:
        h.write(_INPUT)
        h.close_stdin()
    statuses = proc.wait_all(hs) if together else [h.wait() for h in hs]
    _check(max(statuses), got[0], 4 * 65536)


def _many_threads() -> None:
    import threading
    ps = [subprocess.Popen(_WORKER, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
          for _ in range(4)]
    outs: list[bytes] = [b""] * 4

    def talk(i: int) -> None:
        outs[i] = ps[i].communicate(_INPUT)[0]
    ts = [threading.Thread(target=talk, args=(i,)) for i in range(4)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    _check(max(p.returncode for p in ps), sum(map(len, outs)), 4 * 65536)


def _many_group() -> Group:
    return Group("proc 4 children x 0.2 s, fed and drained", "python", "ms",
                 _ms(lambda: _many(True)),
                 [Ref("subprocess.communicate, a thread each", _ms(_many_threads)),
                  Ref("proc, wait() on each in turn", _ms(lambda: _many(False)))],
                 goal=("<=", 1.5), note="wait_all: about the slowest child, not the sum")


LUA_MANY = """
local proc = require "ipc.proc"
local worker, input, together = ...
return function()
  local got, hs = 0, {}
  for i = 1, 4 do
    hs[i] = assert(proc.spawn(worker, { stdin = true, stdout = true,
                                        callback = function(_, d) got = got + #d end }))
    hs[i]:write(input, proc.EOF)
  end
  if together then proc.waitall(hs) else for i = 1, 4 do hs[i]:wait() end end
  assert(got == 4 * 65536, got)
end
"""


def _many_lua_group(engine: str, runtime) -> Group:
    import shlex
    cmd, data = shlex.join(_WORKER).encode(), _INPUT

    def run(together: bool):
        return runtime.execute(LUA_MANY, cmd, data, together)
    return Group("proc 4 children x 0.2 s, fed and drained", engine, "ms",
                 _ms(run(True)),
                 [Ref("proc, h:wait() on each in turn", _ms(run(False)))],
                 goal=("<=", 0.5), note="proc.waitall: about the slowest child, not the sum")


def groups(st: Settings, engines, runtimes, _scratch):
    for varied in (False, True):
        for engine in engines:
            yield lambda e=engine, v=varied: _group(st, e, runtimes(e), v)
    for engine in engines:
        if engine == "python":
            yield _many_group
        else:
            yield lambda e=engine: _many_lua_group(e, runtimes(e))
