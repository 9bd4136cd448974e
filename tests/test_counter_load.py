"""Load: 8 processes (4 Lua under luaipc on different engines, 4 Python)
each add 1 to a shared counter 2,000 times, first under a semaphore, then
under an fcntl file lock; the final count is exact.

The counter is a number in a plain file (read, add, write back under the
lock): a correct mutual exclusion is all it needs, and it keeps this test
independent of ipc.shm.
"""
from __future__ import annotations

import pytest
from helpers.children import finish, spawn_lua, spawn_py, wait_line
from helpers.lua import installed

import ipc.sem

N = 2000
#: Four Lua children, each on another engine, spread over the list (every
#: other installed one): eight processes are what two cores can run in
#: time, and four engines already mix PUC-Lua and LuaJIT, old and new.
LUA_ENGINES = installed()[::2][:4]
PY_CHILDREN = 4

PY_COUNT = """
import ipc.sem, ipc.filelock as fl, os, sys
how, name, path, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
fd = os.open(path, os.O_RDWR)
s = ipc.sem.open(name) if how == "sem" else None
go = ipc.sem.open(name + "-go")
print("ready", flush=True)
go.dec()
for _ in range(n):
    s.dec() if s else fl.lock(fd, "w")
    v = int(os.pread(fd, 32, 0).split()[0])
    os.pwrite(fd, b"%d\\n" % (v + 1), 0)
    s.inc() if s else fl.unlock(fd)
print("done")
"""


@pytest.mark.timeout(300)
@pytest.mark.parametrize("how", ["sem", "filelock"])
def test_eight_processes_count_exactly(how, name, tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0\n")
    mutex = ipc.sem.open(name, 1)
    go = ipc.sem.open(name + "-go", 1)          # starting gate (count 1, taken below)
    go.dec()
    children = []
    try:
        for engine in LUA_ENGINES:
            children.append(spawn_lua("sem/count.lua", how, name, counter, N, engine=engine))
        for _ in range(PY_CHILDREN):
            children.append(spawn_py(PY_COUNT, how, name, counter, N))
        for p in children:
            wait_line(p)
        for _ in children:
            go.inc()
        for p in children:
            code, out, err = finish(p, timeout=240)
            assert (code, out) == (0, "done\n"), err
        assert counter.read_text() == f"{N * len(children)}\n"
        assert mutex.value == 1
    finally:
        for p in children:
            p.kill()
        mutex.close()
        go.close()
