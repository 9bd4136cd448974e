"""LuaRuntimes and threads, on every engine (issue 11, "Threads").

lupa serialises the calls into one LuaRuntime with a lock, and a Lua call
that blocks in ipc (``s:dec()``, ``q:receive()``) holds that lock for as
long as it waits.  So:

* the pattern that works is one runtime per thread: two threads, each in
  its own runtime and each blocked in ``s:dec()``, are woken one at a time,
  by whoever posts to their semaphore (the main thread, another process);
* the hazard: while thread A waits in runtime R, thread B's call into R
  waits for A's call to end.  B's ``s:inc()`` cannot wake A; A times out,
  and only then does B's call run.
"""
from __future__ import annotations

import threading
import time

import pytest
from helpers.children import finish, inside_wait, spawn_py

import ipc.sem
from ipc.lua import new_runtime

pytestmark = pytest.mark.timeout(120)

WAIT = """
local sem = require "ipc.sem"
local name, ready = ...
local s = assert(sem.open(name))
ready()
local ok = s:dec()               -- the blocking fast path: sem_wait itself
s:close()
return ok
"""

POST = "import ipc.sem, sys; ipc.sem.open(sys.argv[1]).inc()"


def test_one_runtime_per_thread_blocks_and_wakes_independently(engine, make_name):
    names = {"by the main thread": make_name(), "by another process": make_name()}
    sems = {who: ipc.sem.open(n, 1) for who, n in names.items()}
    for s in sems.values():
        assert s.dec(0)                          # both at 0: the threads will wait
    results: dict[str, object] = {}
    ready = {who: threading.Event() for who in names}

    def run(who: str) -> None:
        runtime = new_runtime(engine)            # this thread's own runtime
        results[who] = runtime.execute(WAIT, names[who].encode(), ready[who].set)

    threads = {who: threading.Thread(target=run, args=(who,), daemon=True) for who in names}
    try:
        for t in threads.values():
            t.start()
        for e in ready.values():
            assert e.wait(60)
        a, b = threads["by another process"], threads["by the main thread"]
        time.sleep(0.2)
        assert a.is_alive() and b.is_alive()     # both blocked, each in its runtime

        sems["by the main thread"].inc()
        b.join(30)
        assert not b.is_alive() and results == {"by the main thread": True}
        assert a.is_alive()                      # still blocked: woken only by its own post

        code, _, err = finish(spawn_py(POST, names["by another process"]), timeout=60)
        assert code == 0, err
        a.join(30)
        assert not a.is_alive() and results["by another process"] is True
    finally:
        for s in sems.values():                  # never leave a thread blocked
            s.inc()
            s.close()


HAZARD = """
local sem = require "ipc.sem"
local s = assert(sem.open(...))
return function() return s:dec(1.0) end,   -- thread A: waits (1 s at most)
       function() return s:inc() end       -- thread B: would wake A
"""




def test_a_call_blocked_in_a_runtime_holds_it_against_other_threads(engine, name):
    """Thread A waits in ``s:dec(1.0)`` in runtime R; thread B then calls
    ``s:inc()`` in R.  B's call cannot run before A's ends, so A does not get
    B's unit: it times out (false), and then B's inc runs."""
    s = ipc.sem.open(name, 1)
    assert s.dec(0)
    runtime = new_runtime(engine)
    dec, inc = runtime.execute(HAZARD, name.encode())
    order: list[tuple[str, object]] = []
    a = threading.Thread(target=lambda: order.append(("A", dec())))
    b = threading.Thread(target=lambda: order.append(("B", inc())))
    try:
        a.start()
        deadline = time.monotonic() + 60
        while not inside_wait(a):               # A is in the semaphore's wait
            assert time.monotonic() < deadline, "A never blocked"
            time.sleep(0.01)
        b.start()
        a.join(60), b.join(60)
        assert order == [("A", False), ("B", True)]
        assert s.value == 1                      # B's unit, after A gave up
    finally:
        a.join(60), b.join(60)
        s.close()


# -- one runtime shared by threads: ipc.lua.SharedRuntime ----------------------------

DEC = 'local s = assert(require("ipc.sem").open(...)); local ok = s:dec(); s:close(); return ok'
INC = 'local s = assert(require("ipc.sem").open(...)); s:inc(); s:close(); return "posted"'


def test_shared_runtime_a_waiting_call_does_not_hold_up_the_others(engine, name):
    """Thread A's call waits in s:dec(); thread B's s:inc() goes through the
    same runtime and wakes it (with a plain runtime B would wait behind A:
    see the test above)."""
    from ipc.lua import SharedRuntime
    s = ipc.sem.open(name, 1)
    s.dec()
    got: list[object] = []
    with SharedRuntime(engine) as rt:
        a = threading.Thread(target=lambda: got.append(rt.call(DEC, name.encode())))
        a.start()
        time.sleep(0.3)
        assert a.is_alive()                     # A waits...
        assert rt.call(INC, name.encode()) == b"posted"   # ...and B is not held up
        a.join(10)
        assert got == [True]
    s.close()


def test_shared_runtime_many_threads_many_calls(engine):
    from ipc.lua import SharedRuntime
    results: dict[int, list[object]] = {}
    with SharedRuntime(engine) as rt:
        def worker(k: int) -> None:
            results[k] = [rt.call("local a, b = ...; return a * b", k, i) for i in range(50)]
        ts = [threading.Thread(target=worker, args=(k,)) for k in range(6)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        assert rt.call("return 1, 'two', nil") == (1, b"two", None)
        assert rt.call("return") == ()
    assert results == {k: [k * i for i in range(50)] for k in range(6)}


def test_shared_runtime_errors_close_and_refusals(engine, name):
    from ipc.lua import SharedRuntime
    s = ipc.sem.open(name, 1)
    s.dec()
    rt = SharedRuntime(engine)
    with pytest.raises(RuntimeError, match="boom"):
        rt.call("error('boom')")
    with pytest.raises(RuntimeError, match=r"SharedRuntime\.call"):
        rt.call("this is not Lua")
    with pytest.raises(TypeError):
        rt.call("return ...", object())
    errors: list[str] = []

    def waiter() -> None:
        try:
            rt.call(DEC, name.encode())
        except RuntimeError as exc:
            errors.append(str(exc))

    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    rt.close()                                  # ends the waiting call: cancelled
    t.join(10)
    assert not t.is_alive() and len(errors) == 1 and "cancel" in errors[0]
    rt.close()
    with pytest.raises(ValueError, match="closed"):
        rt.call("return 1")
    assert s.dec(0) is False                    # the cancelled wait took nothing
    s.close()
