"""A signal whose handler returns resumes every wait (PEP 475).

Every blocking sem/mq call of both faces retries after a signal whose
handler returned (sem: its slices; mq: poll()); these tests reach it for
real: a child blocks (timed and untimed), gets SIGUSR1 twice (its
Python handler prints and returns), must still be blocked, and finishes
normally once the parent gives it what it waits for.
"""
from __future__ import annotations

import signal
import time

import pytest
from helpers.children import read_line, spawn_py

import ipc.mq
import ipc.sem

CHILD = r"""
import signal, sys
face, verb, name = sys.argv[1:4]
signal.signal(signal.SIGUSR1, lambda *a: print("handler", flush=True))
if face == "python":
    import ipc.mq, ipc.sem
    kind, _, timeout = verb.partition(":")
    t = float(timeout) if timeout else None
    if kind == "dec":
        s = ipc.sem.open(name); print("ready", flush=True); print(s.dec(t))
    elif kind == "receive":
        q = ipc.mq.open(name); print("ready", flush=True); print(q.receive(t)[0].decode())
    else:
        q = ipc.mq.open(name); print("ready", flush=True); q.send(b"y", t); print("sent")
else:
    from ipc.lua import new_runtime
    rt = new_runtime(face)
    code = {
        "dec": "local s = assert(require('ipc.sem').open(NAME)); READY(); "
               "return tostring(s:dec(T))",
        "receive": "local q = assert(require('ipc.mq').open(NAME)); READY(); return (q:receive(T))",
        "send": "local q = assert(require('ipc.mq').open(NAME)); READY(); "
                "return q:send('y', T) and 'sent'",
    }
    kind, _, timeout = verb.partition(":")
    rt.globals().NAME = name.encode()
    rt.globals().T = float(timeout) if timeout else None
    rt.globals().READY = lambda: print("ready", flush=True)
    print(rt.execute(code[kind]).decode())
"""

VERBS = ["dec", "dec:30", "receive", "receive:30", "send", "send:30"]


def check_resumes(face: str, verb: str, name: str) -> None:
    kind = verb.partition(":")[0]
    if kind == "dec":
        obj = ipc.sem.open(name, 1)
        obj.dec()
    else:
        obj = ipc.mq.open(name, 1, 8)
        if kind == "send":
            obj.send(b"full")
    p = spawn_py(CHILD, face, verb, name)
    try:
        assert read_line(p) == "ready", p.stderr.read() if p.poll() is not None else ""
        for _ in range(2):
            time.sleep(0.3)                       # let it enter the wait
            p.send_signal(signal.SIGUSR1)
            assert read_line(p) == "handler"
        time.sleep(0.3)
        assert p.poll() is None, "a signal whose handler returned ended the wait"
        if kind == "dec":
            obj.inc()
            expected = "True" if face == "python" else "true"
        elif kind == "receive":
            obj.send(b"x")
            expected = "x"
        else:
            assert obj.receive(5) == (b"full", 0)
            expected = "sent"
        out, err = p.communicate(timeout=20)
        assert (p.returncode, out.strip()) == (0, expected), err
        if kind == "send":
            assert obj.receive(5) == (b"y", 0)
    finally:
        p.kill()
        p.wait()
        obj.close()


@pytest.mark.parametrize("verb", VERBS)
def test_python_wait_resumes_after_a_handled_signal(name, verb):
    check_resumes("python", verb, name)


@pytest.mark.parametrize("verb", VERBS)
def test_lua_wait_resumes_after_a_handled_signal(name, engine, verb):
    check_resumes(engine, verb, name)
