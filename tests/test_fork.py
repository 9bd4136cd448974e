"""A forked child never removes its parent's named objects (issue 11 point 4).

Each test runs a real Python program that creates a segment, a semaphore
and a queue, then forks for real (``os.fork`` or multiprocessing's fork
context).  The child closes, drops or keeps the inherited creator handles
and ends in one of the ways a process ends; the parent then checks that
every name is still there and works, and that its own close removes it.
The program runs as a child of pytest so that "exits normally" really is
an interpreter shutdown (atexit runs the handles' finalizers).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from helpers.names import leftovers

# The parent's side, shared by every program below: after the child is
# gone, the names must exist and work, and the parent's close removes them.
PARENT = r"""
import json, os, sys
import ipc.mq, ipc.sem, ipc.shm

def exists(name):
    out = {"shm": os.path.exists("/dev/shm/" + name),
           "sem": os.path.exists("/dev/shm/sem." + name)}
    try:
        ipc.mq.open(name).close()
        out["mq"] = True
    except FileNotFoundError:
        out["mq"] = False
    return out

def works(name, shm_write, sem_dec, mq_receive):
    # a fresh handle of each name, so the name itself is what is tested
    shm_write(b"parent")
    g = ipc.shm.attach(name)
    shm_ok = g.read(6) == b"parent"
    g.close()
    t = ipc.sem.open(name)
    t.inc()
    t.close()
    sem_ok = sem_dec(5) is True
    q = ipc.mq.open(name)
    q.send(b"ping", timeout=5)
    q.close()
    mq_ok = mq_receive(5) == b"ping"
    return {"shm": shm_ok, "sem": sem_ok, "mq": mq_ok}

def report(name, status, shm_write, sem_dec, mq_receive, close):
    out = {"status": status, "after_child": exists(name),
           "works": works(name, shm_write, sem_dec, mq_receive)}
    close()
    out["after_close"] = exists(name)
    print(json.dumps(out), flush=True)
"""

# How an os.fork() child ends.  "close"/"drop" release the handles first;
# "keep" leaves them to the interpreter's exit (or to nothing: os._exit).
PY_FORK = PARENT + r"""
import gc
name, action, ending = sys.argv[1:4]
h = ipc.shm.create(name, 64)
s = ipc.sem.open(name, 1)
s.dec(0)
q = ipc.mq.open(name, 4, 64)

pid = os.fork()
if pid == 0:
    # what the child sees: the handles are open, but not the child's to unlink
    print(json.dumps({"child_owner": [h.owner, s.owner, q.owner]}), flush=True)
    if action == "close":
        h.close(); s.close(); q.close()
        h.close(); s.close(); q.close()  # idempotent there too
    elif action == "drop":
        del h, s, q
        gc.collect()
    if ending == "_exit":
        os._exit(0)
    elif ending == "sys.exit":
        sys.exit(3)
    # "normal": fall off the end of the program (atexit runs the finalizers)
else:
    _, status = os.waitpid(pid, 0)
    report(name, os.waitstatus_to_exitcode(status), lambda b: (h.seek(0), h.write(b)),
           s.dec, lambda t: q.receive(t)[0], lambda: (h.close(), s.close(), q.close()))
"""

# multiprocessing with the fork start method: the target runs in a forked
# child that multiprocessing ends with os._exit after the target returns.
MP_FORK = PARENT + r"""
import gc, multiprocessing

def target(action, ending):
    global h, s, q
    if action == "close":
        h.close(); s.close(); q.close()
    elif action == "drop":
        del h, s, q
        gc.collect()
    if ending == "sys.exit":
        sys.exit(3)
    if ending == "raise":
        raise RuntimeError("the target failed")

if __name__ == "__main__":
    name, action, ending = sys.argv[1:4]
    h = ipc.shm.create(name, 64)
    s = ipc.sem.open(name, 1)
    s.dec(0)
    q = ipc.mq.open(name, 4, 64)
    ctx = multiprocessing.get_context("fork")
    p = ctx.Process(target=target, args=(action, ending))
    p.start()
    p.join(30)
    report(name, p.exitcode, lambda b: (h.seek(0), h.write(b)), s.dec,
           lambda t: q.receive(t)[0], lambda: (h.close(), s.close(), q.close()))
"""

# Lua handles made in a lupa runtime of the parent; the forked child
# collects the whole runtime (or closes the handles from Lua) and exits.
LUA_FORK = PARENT + r"""
import gc
from ipc.lua import new_runtime
name, engine, action = sys.argv[1:4]
rt = new_runtime(engine)
rt.execute('''
  local name = ...
  local shm, sem, mq = require "ipc.shm", require "ipc.sem", require "ipc.mq"
  H = assert(shm.create(name, 64))
  S = assert(sem.open(name, 1))
  assert(S:dec(0))
  Q = assert(mq.open(name, 4, 64))
''', name.encode())

pid = os.fork()
if pid == 0:
    if action == "lua-close":
        rt.execute("assert(H:close()); assert(S:close()); assert(Q:close())")
    rt.execute("H, S, Q = nil, nil, nil; collectgarbage(); collectgarbage()")
    del rt
    gc.collect()
    sys.exit(0)
else:
    _, status = os.waitpid(pid, 0)
    write = rt.eval("function(b) H:seek('set', 0); return H:write(b) end")
    # untimed inc/dec: on LuaJIT the FFI's sem_post/sem_trywait on the
    # parent's own sem_t*, which the child's sem_close must have left alone
    dec = rt.eval("function(t) assert(S:inc()); assert(S:dec()); return S:dec() end")
    receive = rt.eval("function(t) return (Q:receive(t)) end")
    close = rt.eval("function() H:close(); S:close(); Q:close() end")
    report(name, os.waitstatus_to_exitcode(status), write, dec, receive, close)
"""

ALL_THERE = {"shm": True, "sem": True, "mq": True}
NONE_LEFT = {"shm": False, "sem": False, "mq": False}


def run_program(code: str, *args: str) -> tuple[list[dict], subprocess.CompletedProcess]:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                       timeout=60, stdin=subprocess.DEVNULL, check=False)
    lines = [json.loads(line) for line in r.stdout.splitlines() if line.startswith("{")]
    assert r.returncode == 0 and lines, (r.returncode, r.stdout, r.stderr)
    return lines, r


def check_parent(out: dict, status: int, name: str) -> None:
    assert out["status"] == status
    assert out["after_child"] == ALL_THERE, "the child removed a name of its parent"
    assert out["works"] == ALL_THERE
    assert out["after_close"] == NONE_LEFT, "the parent's close did not remove its names"
    assert leftovers(name) == []


@pytest.mark.parametrize(("action", "ending", "status"), [
    ("close", "normal", 0),
    ("close", "_exit", 0),
    ("drop", "normal", 0),
    ("drop", "_exit", 0),
    ("keep", "normal", 0),
    ("keep", "sys.exit", 3),
    ("keep", "_exit", 0),
])
def test_os_fork_child_leaves_the_names(name, action, ending, status):
    (child, parent), _ = run_program(PY_FORK, name, action, ending)
    assert child == {"child_owner": [False, False, False]}
    check_parent(parent, status, name)


@pytest.mark.parametrize(("action", "ending", "status"), [
    ("close", "return", 0),
    ("drop", "return", 0),
    ("keep", "return", 0),
    ("keep", "sys.exit", 3),
    ("close", "raise", 1),
])
def test_multiprocessing_fork_child_leaves_the_names(name, action, ending, status):
    (parent,), _ = run_program(MP_FORK, name, action, ending)
    check_parent(parent, status, name)


@pytest.mark.parametrize("action", ["collect", "lua-close"])
def test_lua_runtime_collected_in_the_child_leaves_the_names(name, engine, action):
    (parent,), _ = run_program(LUA_FORK, name, engine, action)
    check_parent(parent, 0, name)


def test_unlink_detaches_the_creator(make_name):
    """After the creator's unlink(), its close leaves alone a new object
    that someone else made under the same name."""
    import ipc.mq
    import ipc.sem
    import ipc.shm
    name = make_name()
    first = [ipc.shm.create(name, 8), ipc.sem.open(name, 1), ipc.mq.open(name, 2, 8)]
    for h in first:
        assert h.owner
        h.unlink()
        assert not h.owner
    second = [ipc.shm.create(name, 8), ipc.sem.open(name, 1), ipc.mq.open(name, 2, 8)]
    for h in first:
        h.close()
    assert len(leftovers(name)) == 3, "the first creator's close removed the second's names"
    for h in second:
        assert h.owner
        h.close()
        assert not h.owner
    assert leftovers(name) == []


def test_owner_is_false_in_a_forked_child(name):
    """A quick in-process check of the rule itself: the child (os._exit,
    so pytest's own state is never run twice) sees owner False."""
    import ipc.sem
    s = ipc.sem.open(name, 1)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.write(w, b"1" if s.owner else b"0")
            s.close()
        finally:
            os._exit(0)
    os.close(w)
    seen = os.read(r, 1)
    os.close(r)
    os.waitpid(pid, 0)
    assert seen == b"0" and s.owner
    assert os.path.exists(f"/dev/shm/sem.{name}")
    s.close()
    assert not os.path.exists(f"/dev/shm/sem.{name}")


# A grandchild that is given its grandparent's pid (the creator died; pids
# are reused): in a private pid namespace, ns_last_pid makes it happen for
# real.  The pid alone would call it the creator; the fork generation does not.
PID_REUSE = r"""
import json, os, sys, time
import ipc.sem
name = sys.argv[1]
c = os.fork()
if c == 0:
    s = ipc.sem.open(name, 1)
    creator = os.getpid()
    if os.fork() == 0:
        while os.path.exists(f"/proc/{creator}"):  # until it is gone and reaped
            time.sleep(0.01)                         # (a zombie still holds the pid)
        with open("/proc/sys/kernel/ns_last_pid", "w") as f:
            f.write(str(creator - 1))    # the next pid is the creator's
        g = os.fork()
        if g == 0:
            print(json.dumps({"same_pid": os.getpid() == creator, "owner": s.owner}),
                  flush=True)
            s.close()
            os._exit(0)
        os.waitpid(g, 0)
    os._exit(0)                          # the creator ends without closing
os.waitpid(c, 0)
while True:                              # pid 1 of the namespace reaps the orphans
    try:
        os.wait()
    except ChildProcessError:
        break
print(json.dumps({"exists": os.path.exists("/dev/shm/sem." + name)}), flush=True)
"""


def _can_unshare_pid() -> bool:
    try:
        return subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"],
                              capture_output=True, timeout=30, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def test_grandchild_with_the_creators_pid_leaves_the_name(name):
    if not _can_unshare_pid():
        pytest.skip("needs root and unshare -p (a private pid namespace)")
    r = subprocess.run(["unshare", "-p", "-f", "--mount-proc", sys.executable, "-c",
                        PID_REUSE, name], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, check=False)
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and len(lines) == 2, (r.stdout, r.stderr)
    assert lines[0] == {"same_pid": True, "owner": False}
    assert lines[1] == {"exists": True}, "a grandchild with the creator's pid removed the name"


# fork() called from C (here through ctypes): Python's at-fork hooks do not
# run, so the fork generation stays the same; the pid check still holds.
C_FORK = PARENT + r"""
import ctypes
name = sys.argv[1]
handles = [ipc.shm.create(name, 8), ipc.sem.open(name, 1), ipc.mq.open(name, 2, 8)]
pid = ctypes.CDLL(None, use_errno=True).fork()
if pid == 0:
    for h in handles:
        h.close()
    os._exit(0)
os.waitpid(pid, 0)
print(json.dumps({"after_child": exists(name)}), flush=True)
for h in handles:
    h.close()
"""


def test_fork_from_c_leaves_the_names(name):
    (out,), _ = run_program(C_FORK, name)
    assert out == {"after_child": ALL_THERE}
    assert leftovers(name) == []
