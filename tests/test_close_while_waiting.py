"""Closing a handle that other threads of the process are blocked on
(issue 11, "Threads").

Before: ``Semaphore.close()`` under a thread in ``acquire(timeout=t)``
killed the process with SIGSEGV when t ran out (posix_ipc's close is
sem_close, which unmaps the semaphore under the waiter); an untimed waiter
was never woken and later took a unit for a handle nobody could use; a
thread in ``MessageQueue.receive()`` stayed blocked forever.

Now the blocked calls end at once with ``ValueError("... closed while
waiting")`` and take nothing.  Each scenario runs in a child process, so
that a crash shows as its exit status instead of killing pytest; the
child waits until every thread is really inside the wait (its stack is in
the module's ``_wait``) before it closes, then lives past the longest
timeout, where the crash used to come.
"""
from __future__ import annotations

import json
import threading
import time

import pytest
from helpers.children import finish, read_line, spawn_py, still_blocked, wait_line

import ipc.mq
import ipc.sem

pytestmark = pytest.mark.timeout(120)

CHILD = r"""
import json, os, sys, threading, time
import ipc.mq, ipc.sem

kind, name = sys.argv[1], sys.argv[2]
if kind == "sem":
    h = ipc.sem.open(name)                 # not the creator: the name stays
    calls = {"dec()": h.dec, "acquire(timeout=1.5)": lambda: h.acquire(timeout=1.5),
             "dec(30)": lambda: h.dec(30)}
elif kind == "mq-receive":
    h = ipc.mq.open(name)
    calls = {"receive()": h.receive, "receive(timeout=1.5)": lambda: h.receive(timeout=1.5),
             "receive(30)": lambda: h.receive(30)}
else:                                      # mq-send: the queue is full
    h = ipc.mq.open(name)
    calls = {f"send({t})": (lambda t=t: h.send(b"from a closed handle", timeout=t))
             for t in (None, 1.5, 30)}

results = {}

def run(key, call):
    try:
        call()
        results[key] = "returned"
    except Exception as exc:
        results[key] = f"{type(exc).__name__}: {exc}"

def inside_wait(frame):
    while frame is not None:
        if frame.f_code.co_name == "_wait" and "/ipc/" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False

threads = [threading.Thread(target=run, args=item) for item in calls.items()]
for t in threads:
    t.start()
deadline = time.monotonic() + 60
while not all(inside_wait(sys._current_frames().get(t.ident)) for t in threads):
    assert time.monotonic() < deadline, "the threads never blocked"
    time.sleep(0.01)
h.close()
for t in threads:
    t.join(30)

def still_open():
    # Whether this process still maps the semaphore, or has a descriptor of
    # the queue or an eventfd: the OS close must have run once the calls left.
    if kind == "sem":
        with open("/proc/self/maps") as f:
            return "sem." + name in f.read()
    links = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            links.append(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            pass
    return "/" + name in links or any("eventfd" in link for link in links)

print(json.dumps({"alive": [t.is_alive() for t in threads], "results": results,
                  "still_open": still_open()}), flush=True)
time.sleep(2)                              # past the 1.5 s timeout
print("done", flush=True)
"""

OTHER_WAITER = """
import ipc.mq, ipc.sem, sys
kind, name = sys.argv[1], sys.argv[2]
h = ipc.sem.open(name) if kind == "sem" else ipc.mq.open(name)
print("ready", flush=True)
print("got", h.dec(60) if kind == "sem" else h.receive(60)[0].decode(), flush=True)
"""


def _closed_report(child) -> dict:
    line = read_line(child, timeout=90)  # it waits up to 60 s for its threads to block
    assert line, f"the child died: {child.wait(timeout=30)} {child.stderr.read()}"
    report = json.loads(line)
    assert report["alive"] == [False, False, False], report
    assert report["still_open"] is False, report
    return report["results"]


@pytest.mark.parametrize("kind", ["sem", "mq-receive"])
def test_blocked_waiters_end_with_an_error_and_take_nothing(kind, name):
    """Three threads wait (forever, 1.5 s, 30 s) on one handle; another
    process waits on the same object.  Closing the handle ends the three
    with the error; the next unit (message) goes to the other process."""
    if kind == "sem":
        mine = ipc.sem.open(name, 1)
        assert mine.dec(0)                  # value 0: everyone waits
    else:
        mine = ipc.mq.open(name, maxmsg=4, msgsize=64)
    other = spawn_py(OTHER_WAITER, kind, name)
    child = spawn_py(CHILD, kind, name)
    try:
        wait_line(other)
        results = _closed_report(child)
        expected = ("semaphore" if kind == "sem" else "message queue") + " closed while waiting"
        assert set(results.values()) == {f"ValueError: {expected}"}, results
        assert still_blocked(other)         # the closing took nothing
        if kind == "sem":
            assert mine.value == 0
            mine.inc()
            expect = "got True"
        else:
            assert mine.current_messages == 0
            mine.send(b"for the other process")
            expect = "got for the other process"
        code, out, err = finish(other, timeout=60)
        assert (code, out.splitlines()[-1]) == (0, expect), err
        code, out, err = finish(child, timeout=60)
        assert (code, out.strip()) == (0, "done"), err   # no SIGSEGV past the timeout
        if kind == "sem":
            assert mine.value == 0           # the other process has the unit
        else:
            assert mine.current_messages == 0
    finally:
        for p in (other, child):
            if p.poll() is None:
                p.kill()
            p.wait()
        mine.close()


def test_blocked_senders_end_with_an_error_and_send_nothing(name):
    mine = ipc.mq.open(name, maxmsg=1, msgsize=64)
    mine.send(b"the one message")
    child = spawn_py(CHILD, "mq-send", name)
    try:
        results = _closed_report(child)
        assert set(results.values()) == {"ValueError: message queue closed while waiting"}
        code, out, err = finish(child, timeout=60)
        assert (code, out.strip()) == (0, "done"), err
        assert mine.current_messages == 1
        assert mine.receive(0) == (b"the one message", 0)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        mine.close()


def test_a_closed_handle_stays_closed_for_later_calls(name):
    s = ipc.sem.open(name, 1)
    q = ipc.mq.open(name, maxmsg=1, msgsize=8)
    s.close(), q.close()
    with pytest.raises(ValueError, match="invalid semaphore"):
        s.dec(1)
    with pytest.raises(ValueError, match="closed message queue"):
        q.receive(1)
    with pytest.raises(ValueError, match="closed message queue"):
        q.send(b"x", 1)


def test_the_waiters_of_one_handle_are_woken_together_by_one_close(name):
    """Eight threads in receive() on one handle: one close() ends them all
    (the wake-up descriptor stays set once set)."""
    q = ipc.mq.open(name, maxmsg=2, msgsize=8)
    errors: list[str] = []

    def receive() -> None:
        try:
            q.receive(60)
        except ValueError as exc:
            errors.append(str(exc))

    threads = [threading.Thread(target=receive) for _ in range(8)]
    for t in threads:
        t.start()
    time.sleep(0.3)                          # most of them are polling by now
    q.close()
    for t in threads:
        t.join(30)
    assert not any(t.is_alive() for t in threads)
    assert len(errors) == 8 and set(errors) <= {"message queue closed while waiting",
                                               "I/O operation on closed message queue"}


@pytest.mark.parametrize("kind", ["sem", "mq"])
def test_an_idle_waiter_costs_almost_no_cpu(kind, name):
    """A thread blocked for a second: mq sleeps in poll() (no wake-ups), sem
    wakes 4 times to look for close() (slices of 0.05, 0.1, 0.2, 0.4 s...).
    The bound is over 100 times what either needs: it catches a busy loop,
    not a slow machine."""
    h = ipc.sem.open(name, 1) if kind == "sem" else ipc.mq.open(name, maxmsg=1, msgsize=8)
    if kind == "sem":
        h.dec()
    cpu: list[float] = []

    def wait() -> None:
        before = time.thread_time()
        assert h.dec(30) if kind == "sem" else h.receive(30)
        cpu.append(time.thread_time() - before)

    t = threading.Thread(target=wait)
    t.start()
    time.sleep(1.0)
    if kind == "sem":
        h.inc()
    else:
        h.send(b"go")
    t.join(30)
    h.close()
    assert len(cpu) == 1 and cpu[0] < 0.05, cpu
