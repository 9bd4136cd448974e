"""A semaphore held by a process that was killed (issue 7, item 2).

POSIX semaphores have no SEM_UNDO: a holder killed with SIGKILL takes its
unit to the grave.  The recovery ipc.sem offers is the ``Ledger``: holders
record themselves (pid + start time) while they hold a unit, and
``Ledger.recover()`` gives back the units of recorded holders that are dead.

Here, for real: a Python holder takes the (binary) semaphore through the
ledger and is SIGKILLed; a waiter -- Python, or luaipc on every engine --
blocks; ``ipcctl ls`` shows the semaphore at value 0, in use by the waiter
only; ``recover()`` names the dead holder and gives the unit back; the
waiter proceeds.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess

import pytest
from helpers.children import (
    IPCCTL,
    finish,
    spawn_lua,
    spawn_py,
    still_blocked,
    wait_line,
)

import ipc.sem

pytestmark = pytest.mark.timeout(120)

HOLDER = """
import ipc.sem, sys, time
s = ipc.sem.open(sys.argv[1])
ledger = ipc.sem.Ledger(s, sys.argv[2])
ledger.acquire(timeout=30)
print("ready", flush=True)
time.sleep(300)
"""

PY_WAITER = """
import ipc.sem, sys
s = ipc.sem.open(sys.argv[1])
print("ready", flush=True)
print("dec", s.dec(), flush=True)
s.inc()
"""


def ls(name: str) -> dict:
    r = subprocess.run([*IPCCTL, "ls", "--json", "-k", "sem", name], capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr
    objs = json.loads(r.stdout)
    assert len(objs) == 1, objs
    return objs[0]


def test_killed_holder_recovered_through_ledger(face, name, tmp_path):
    waiter = face                                  # "python", or an engine's luaipc
    sem = ipc.sem.open(name, 1)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger")
    holder = spawn_py(HOLDER, name, ledger.path)
    procs = [holder]
    try:
        wait_line(holder)
        assert ledger.holders() == [holder.pid]
        o = ls(name)
        assert o["value"] == 0 and o["state"] == "in-use"
        assert holder.pid in [p["pid"] for p in o["processes"]]

        holder.send_signal(signal.SIGKILL)
        assert holder.wait(timeout=30) == -signal.SIGKILL
        assert sem.value == 0                      # the unit died with it

        if waiter == "python":
            w = spawn_py(PY_WAITER, name)
            expected = "dec True"
        else:
            w = spawn_lua("sem/wait.lua", name, engine=waiter)
            expected = "dec\ttrue\tnil\tnil"
        procs.append(w)
        wait_line(w)
        assert still_blocked(w)                    # a waiter would block forever

        # meanwhile ipcctl shows it held (value 0), open only by the waiter:
        # nothing says the dead holder owed a unit -- the ledger does
        o = ls(name)
        assert o["value"] == 0 and o["state"] == "in-use", o
        pids = [p["pid"] for p in o["processes"]]
        assert w.pid in pids and holder.pid not in pids
        assert ledger.holders() == [holder.pid]

        assert ledger.recover() == [holder.pid]    # one unit back, its record gone
        assert ledger.holders() == []
        code, out, err = finish(w, timeout=60)
        assert (code, out.strip().splitlines()[-1]) == (0, expected), err
        if waiter != "python":                     # the Lua waiter closes without inc
            sem.inc()
        assert sem.value == 1
        assert ledger.recover() == []              # given back once only
        o = ls(name)
        assert o["value"] == 1 and [p["pid"] for p in o["processes"]] == [os.getpid()]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait()
        sem.close()


def test_holder_killed_inside_hold_block_python_waiter_uses_ledger_too(name, tmp_path):
    """The context-manager form: a holder dies inside ``with ledger.hold()``;
    a second process that also goes through the ledger gets in after
    recover(), and its own record comes and goes."""
    sem = ipc.sem.open(name, 1)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger")
    code = HOLDER.replace("ledger.acquire(timeout=30)\n", "ledger.hold(timeout=30).__enter__()\n")
    holder = spawn_py(code, name, ledger.path)
    wait_line(holder)                      # it holds the unit before the waiter starts
    holder.kill()
    holder.wait(timeout=30)
    waiter = spawn_py("""
import ipc.sem, os, sys
s = ipc.sem.open(sys.argv[1])
ledger = ipc.sem.Ledger(s, sys.argv[2])
print("ready", flush=True)
with ledger.hold(timeout=60):
    print("in", os.getpid() in ledger.holders(), flush=True)
print("out", os.getpid() in ledger.holders(), flush=True)
""", name, ledger.path)
    try:
        wait_line(waiter)
        assert still_blocked(waiter)
        assert ledger.recover() == [holder.pid]
        code, out, err = finish(waiter, timeout=60)
        assert (code, out.split("\n")[:2]) == (0, ["in True", "out False"]), err
        assert sem.value == 1 and ledger.holders() == []
    finally:
        for p in (holder, waiter):
            if p.poll() is None:
                p.kill()
            p.wait()
        sem.close()
