"""ipc.sem.Ledger among threads and processes, with real SIGKILLs
(issue 11, "Threads"; issue 12: the Ledger apart from Semaphore).

Before: fcntl locks did not keep the threads of one process apart, so
records were lost or duplicated and ``recover()`` later handed out phantom
units (a 4-unit semaphore became 5, 7, 10, even 226); and a holder killed
during its first hold always lost its unit, because ``acquire()`` imported
psutil and portalocker between its decrement and its record.

Here: threads x processes hold and release through one ledger while
processes are SIGKILLed at random; after ``recover()`` the semaphore is back
at its capacity exactly, round after round.  And a holder is killed at each
step of a hold, stopped there deterministically by a profile hook on the
very call that ends the step (the decrement, the write of its record, the
increment), to show what ``recover()`` finds.
"""
from __future__ import annotations

import errno
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time

import pytest
from helpers.children import child_env, finish, inside_wait, spawn_py, wait_line

import ipc
import ipc.sem
import ipc.sem._ledger as ledger_module
from ipc.sem._ledger import RECORD

pytestmark = pytest.mark.timeout(180)

WORKER = """
import ipc.sem, random, sys, threading, time
name, path, capacity, threads = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ledger = ipc.sem.Ledger(ipc.sem.open(name), path, capacity=capacity or None)

def work():
    rnd = random.Random()
    while True:
        with ledger.hold(timeout=60):
            time.sleep(rnd.uniform(0, 0.003))
        time.sleep(rnd.uniform(0, 0.001))

for _ in range(threads):
    threading.Thread(target=work, daemon=True).start()
print("ready", flush=True)
time.sleep(600)
"""


def _spawn_workers(n: int, name: str, path, capacity: int, threads: int) -> list:
    procs = [spawn_py(WORKER, name, path, capacity, threads) for _ in range(n)]
    for p in procs:
        wait_line(p)
    return procs


def _hold_until(ledger, stop: threading.Event, rnd: random.Random) -> None:
    while not stop.is_set():
        try:
            with ledger.hold(timeout=1):
                time.sleep(rnd.uniform(0, 0.003))
        except ipc.Timeout:
            pass          # (without a capacity, units lost to kills may run out)




def _kill(procs: list) -> None:
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
        p.wait(timeout=30)
        p.stdout.close(), p.stderr.close()


@pytest.mark.parametrize("capacity", [4, None], ids=["capacity", "no-capacity"])
def test_threads_and_processes_with_kills(capacity, name, tmp_path):
    """4 processes x 4 threads, plus 2 threads here, hold and release one
    4-unit semaphore through one ledger for 10 rounds; in each round random
    workers are SIGKILLed and replaced and recover() runs meanwhile.  At
    the end of a round everything is killed and recovered: with the
    capacity known the value is exactly 4; without, never more than 4 (a
    process killed in the instant between its decrement and its record
    loses its unit then, and nothing more)."""
    units = 4
    sem = ipc.sem.open(name, units)
    path = tmp_path / "ledger"
    ledger = ipc.sem.Ledger(sem, path, capacity=capacity)
    rnd = random.Random(os.environ.get("LUAIPC_STRESS_SEED"))
    procs: list = []
    kills = 0
    try:
        for _ in range(10):
            stop = threading.Event()
            mine = [threading.Thread(target=_hold_until, args=(ledger, stop, rnd))
                    for _ in range(2)]
            procs = _spawn_workers(4, name, path, capacity or 0, 4)
            for t in mine:
                t.start()
            for _ in range(3):
                time.sleep(rnd.uniform(0.05, 0.3))
                victim = procs.pop(rnd.randrange(len(procs)))
                _kill([victim])
                kills += 1
                ledger.recover()
                procs += _spawn_workers(1, name, path, capacity or 0, 4)
            time.sleep(rnd.uniform(0.05, 0.3))
            _kill(procs)
            ledger.recover()                  # so that our threads can finish
            stop.set()
            for t in mine:
                t.join(60)
            assert not any(t.is_alive() for t in mine)
            ledger.recover()
            if capacity is None:
                assert sem.value <= units
                sem.reset(units)               # the next round starts full
            else:
                assert sem.value == units
            assert ledger.holders() == []
            assert path.stat().st_size == 0   # no stale records pile up
    finally:
        _kill(procs)
        sem.close()
    assert kills == 30


def test_threads_of_one_process(name, tmp_path):
    """16 threads, half of them with a Ledger object of their own on the same
    file, 100 holds each, while another thread keeps calling recover():
    nothing is ever given back (everyone is alive), no unit is lost."""
    sem = ipc.sem.open(name, 4)
    path = tmp_path / "ledger"
    shared = ipc.sem.Ledger(sem, path, capacity=4)
    pid = os.getpid()
    seen: list[int] = []
    given: list[int] = []
    stop = threading.Event()

    def hold(ledger) -> None:
        for _ in range(100):
            with ledger.hold(timeout=60):
                seen.append(ledger.holders().count(pid))

    def recover() -> None:
        while not stop.is_set():
            given.extend(shared.recover())
            time.sleep(0.001)

    threads = [threading.Thread(target=hold, args=(shared if i % 2 else
                                                   ipc.sem.Ledger(sem, path, capacity=4),))
               for i in range(16)]
    rec = threading.Thread(target=recover)
    rec.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    rec.join(60)
    assert given == []
    assert len(seen) == 1600 and min(seen) >= 1 and max(seen) <= 4
    assert sem.value == 4 and shared.holders() == []
    assert shared.recover() == [] and path.stat().st_size == 0
    sem.close()


def test_a_release_during_recover_does_not_cost_a_dead_units(name, tmp_path, monkeypatch):
    """A live holder releases while recover() looks at who is alive: the
    value then no longer agrees with the records read.  recover() used to
    count that unit twice (free, and held) and so dropped the unit of a
    process that died between its decrement and its record (the 4-unit
    semaphore of the test above came back at 3, now and then)."""
    sem = ipc.sem.open(name, 2)
    path = tmp_path / "ledger"
    ledger = ipc.sem.Ledger(sem, path, capacity=2)
    ledger.acquire()                              # a live holder: us
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    sem.acquire()                                 # ... its unit, taken before it died
    with open(path, "ab") as f:                   # ... and its record, still "waiting"
        f.write(f"w {gone.pid} -1.0".encode().ljust(RECORD - 1) + b"\n")
    real_alive = ledger_module._alive
    released = []

    def alive(pid: int, start: float) -> bool:
        if not released:                          # right in the middle of recover()
            released.append(pid)
            ledger.release()
        return real_alive(pid, start)

    monkeypatch.setattr(ledger_module, "_alive", alive)
    try:
        assert ledger.recover() == [gone.pid]
        assert released and sem.value == 2 and ledger.holders() == []
    finally:
        sem.close()


# -- a holder killed at each step of its first hold --------------------------------

STOPPED = """
import ipc.sem, os, posix_ipc, sys
name, path, capacity, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
ledger = ipc.sem.Ledger(ipc.sem.open(name), path, capacity=capacity or None)
steps = [tuple(s.split(":")) for s in steps]       # (event, function), in order

def watched(f, name):
    if name == "pwrite":
        return f is os.pwrite
    return (getattr(f, "__name__", None) == name
            and isinstance(getattr(f, "__self__", None), posix_ipc.Semaphore))

def hook(frame, event, arg):
    if steps and event == steps[0][0] and watched(arg, steps[0][1]):
        steps.pop(0)
        if not steps:
            sys.setprofile(None)
            print("stopped", flush=True)
            sys.stdin.readline()                  # SIGKILLed here

print("ready", flush=True)
sys.setprofile(hook)
ledger.acquire(timeout=30)
ledger.release()
sys.setprofile(None)
print("finished", flush=True)
"""

#: Where the holder stops: the calls (profile events) that lead there; the
#: record it leaves; whether it still holds the unit.
STEPS = {
    "claimed, before the decrement": (["c_call:acquire"], b"w", False),
    "after the decrement": (["c_return:acquire"], b"w", True),
    "after its record": (["c_return:acquire", "c_return:pwrite"], b"h", True),
    "releasing, before the increment": (["c_call:release"], b"r", True),
    "after the increment": (["c_return:release"], b"r", False),
}


@pytest.mark.parametrize("capacity", [1, None], ids=["capacity", "no-capacity"])
@pytest.mark.parametrize("where", list(STEPS))
def test_holder_killed_at_each_step_of_its_first_hold(where, capacity, name, tmp_path):
    steps, state, holds = STEPS[where]
    sem = ipc.sem.open(name, 1)
    path = tmp_path / "ledger"
    ledger = ipc.sem.Ledger(sem, path, capacity=capacity)
    child = subprocess.Popen([sys.executable, "-c", STOPPED, name, str(path), str(capacity or 0),
                              *steps], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=child_env())
    try:
        wait_line(child)
        wait_line(child, "stopped")            # it waits on its stdin, stopped there
        data = path.read_bytes()
        assert len(data) == RECORD and data.split()[:2] == [state, str(child.pid).encode()]
        assert sem.value == (0 if holds else 1)
        child.kill()
        assert child.wait(timeout=30) == -signal.SIGKILL
        given = ledger.recover()
        if state == b"h" or (holds and capacity):
            assert (given, sem.value) == ([child.pid], 1)
        elif holds:                           # the documented loss without a capacity
            assert (given, sem.value) == ([], 0)
        else:                                 # held nothing: nothing to give back
            assert (given, sem.value) == ([], 1)
        assert ledger.recover() == [] and path.stat().st_size == 0
    finally:
        if child.poll() is None:
            child.kill()
        child.wait()
        sem.close()


def test_the_profile_hook_stops_nowhere_unasked(name, tmp_path):
    """The child above, with a step that never comes, runs its hold to the
    end: the hook itself changes nothing."""
    sem = ipc.sem.open(name, 1)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger")
    p = spawn_py(STOPPED, name, ledger.path, 0, "c_call:no_such_function")
    code, out, err = finish(p, timeout=60)
    assert (code, out.split()) == (0, ["ready", "finished"]), err
    assert sem.value == 1 and ledger.holders() == []
    sem.close()


# -- the file ------------------------------------------------------------------------

def test_missing_directories_are_created_owner_only(name, tmp_path):
    sem = ipc.sem.open(name, 1)
    path = tmp_path / "run" / "app" / "jobs.ledger"
    ledger = ipc.sem.Ledger(sem, path)
    with ledger.hold(timeout=5):
        assert ledger.holders() == [os.getpid()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    sem.close()


def test_a_path_that_cannot_be_a_file_is_a_clear_error(name, tmp_path):
    sem = ipc.sem.open(name, 1)
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(ipc.IPCError) as info:
        ipc.sem.Ledger(sem, tmp_path / "plain" / "jobs.ledger")
    assert info.value.errno == errno.ENOTDIR and "plain" in str(info.value)
    assert sem.value == 1
    sem.close()


def test_records_of_the_earlier_format_are_read(name, tmp_path):
    """``pid start`` lines (earlier versions; tests/lua/stress/worker.lua)
    count as holders, blank lines are skipped; a dead one's unit comes back
    and its line is blanked."""
    sem = ipc.sem.open(name, 2)
    assert sem.dec(0)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path = tmp_path / "ledger"
    path.write_bytes(f"          \n{dead.pid} -1.0\n{os.getpid()} -1.0\n".encode())
    ledger = ipc.sem.Ledger(sem, path)
    assert sorted(ledger.holders()) == sorted([dead.pid, os.getpid()])
    assert ledger.recover() == [dead.pid]
    assert sem.value == 2 and ledger.holders() == [os.getpid()]
    sem.close()


def test_release_without_acquire_is_an_error_and_changes_nothing(name, tmp_path):
    sem = ipc.sem.open(name, 1)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger")
    with pytest.raises(ValueError, match="does not hold"):
        ledger.release()
    assert sem.value == 1
    with pytest.raises(ValueError, match="capacity"):
        ipc.sem.Ledger(sem, tmp_path / "ledger", capacity=0)
    with pytest.raises(TypeError):
        ledger.acquire(timeout="soon")
    assert sem.value == 1 and (tmp_path / "ledger").read_bytes() == b""
    sem.close()


def test_a_timed_out_or_interrupted_acquire_leaves_no_record(name, tmp_path):
    sem = ipc.sem.open(name, 1)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger", capacity=1)
    ledger.acquire()
    with pytest.raises(ipc.Timeout):
        ledger.acquire(timeout=0.1)
    assert ledger.holders() == [os.getpid()]
    other = ipc.sem.open(sem.name)
    waiter_error: list[BaseException] = []

    def wait() -> None:
        try:
            ipc.sem.Ledger(other, ledger.path).acquire(timeout=60)
        except ValueError as exc:
            waiter_error.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    deadline = time.monotonic() + 60
    while not inside_wait(t):
        assert time.monotonic() < deadline, "the waiter never blocked"
        time.sleep(0.01)
    other.close()                               # ends the waiter's dec()
    t.join(30)
    assert [str(e) for e in waiter_error] == ["semaphore closed while waiting"]
    ledger.release()
    assert sem.value == 1 and ledger.recover() == []
    assert (tmp_path / "ledger").stat().st_size == 0
    sem.close()


def test_a_forked_child_holds_and_releases_its_own_units(name, tmp_path):
    sem = ipc.sem.open(name, 2)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger", capacity=2)
    ledger.acquire()
    pid = os.fork()
    if pid == 0:                                # the child: its own records only
        code = 1
        try:
            with pytest.raises(ValueError):
                ledger.release()                # the parent's unit is not the child's
            with ledger.hold(timeout=10):
                if sorted(ledger.holders()) == sorted([os.getppid(), os.getpid()]):
                    code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.holders() == [os.getpid()] and sem.value == 1
    ledger.release()
    assert sem.value == 2 and ledger.recover() == []
    sem.close()
