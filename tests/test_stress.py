"""Sustained load with crashes (issue 7, item 5).

16 worker processes -- half Python, half Lua under luaipc on every engine in
turn -- run for a fixed time (CI: 15 s; LUAIPC_STRESS_SECONDS=120 for a long
run).  Half of them guard their critical section with a semaphore
(ipc.sem), half with an fcntl file lock (ipc.filelock); each group has its
own counters in one shared-memory segment (ipc.shm).  At random moments the
test SIGKILLs a random worker and starts a replacement.

The commit protocol makes the counts exact although a worker can die
anywhere, even between two writes: under the lock a worker first rolls
forward a pending journal entry left by a holder that died, checks the
invariant A == B, then writes a journal entry (new A, its slot, its new
slot count), sets the journal flag (one byte), applies the three writes and
clears the flag.  Every process incarnation has its own slot, so at the end
A == B == the sum of all slots of its group, and each survivor's reported
count equals its slot.

Recovery: a file lock is released by the kernel when its holder dies.  A
semaphore is not: its holders record themselves in an ipc.sem.Ledger (the
Lua workers write the same ledger file), and after each kill the test calls
Ledger.recover(), which gives back the unit of a dead recorded holder.  The
ledger cannot see a holder killed in the instant between its decrement and
its record (or between unrecord and increment) -- a documented limit -- so
a watchdog resets the semaphore when the sem group has made no progress for
5 s while nobody alive holds it (the posix_ipc#53 watchdog pattern); the
figures say how often each recovery was needed.
"""
from __future__ import annotations

import itertools
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers.children import LUAIPC, child_env
from helpers.lua import installed
from helpers.names import SHM_DIR

import ipc.sem
import ipc.shm

SECONDS = float(os.environ.get("LUAIPC_STRESS_SECONDS", "15"))
WORKERS = 16
MAX_SLOTS = 4000
W = 20
GROUPS = {"sem": 64, "flock": 320}
HERE = Path(__file__).parent
PY_WORKER = HERE / "stress" / "worker.py"
LUA_WORKER = HERE / "lua" / "stress" / "worker.lua"

#: The Lua workers take the installed engines in turn.
ENGINES = installed()

pytestmark = [pytest.mark.stress, pytest.mark.timeout(int(SECONDS * 4 + 240))]


def _slot(i: int) -> int:
    return 1024 + i * W


class Workers:
    def __init__(self, names: dict, tmp: Path):
        self.names, self.tmp = names, tmp
        self.live: dict[int, tuple] = {}   # slot -> (Popen, group, kind)
        self.slots: dict[int, str] = {}    # slot -> group
        self.next_slot = 0
        self.engines = itertools.cycle(ENGINES)

    def spawn(self, group: str, lang: str) -> None:
        slot = self.next_slot
        self.next_slot += 1
        assert slot < MAX_SLOTS
        args = [group, self.names["shm"], self.names["sem"], str(self.tmp / "lockfile"),
                str(self.tmp / "ledger"), str(slot)]
        if lang == "python":
            cmd, env, kind = [sys.executable, str(PY_WORKER), *args], child_env(), "python"
        else:
            kind = next(self.engines)
            cmd, env = [*LUAIPC, str(LUA_WORKER), *args], child_env(kind)
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True)
        self.live[slot] = (p, group, kind)
        self.slots[slot] = group


@pytest.mark.parametrize("seconds", [SECONDS])
def test_sixteen_processes_with_kills(seconds, make_name, tmp_path):
    names = {"shm": make_name(), "sem": make_name()}
    (tmp_path / "lockfile").write_bytes(b"")
    (tmp_path / "ledger").write_bytes(b"")
    h = ipc.shm.create(names["shm"], 1024 + MAX_SLOTS * W)
    buf = h.buf
    buf[0:1] = b"0"
    for base in GROUPS.values():
        for off in (0, 20, 48, 68, 88):
            buf[base + off:base + off + W] = b"%020d" % 0
        buf[base + 40:base + 41] = b"0"
    for i in range(MAX_SLOTS):
        buf[_slot(i):_slot(i) + W] = b"%020d" % 0
    sem = ipc.sem.open(names["sem"], 1)
    ledger = ipc.sem.Ledger(sem, tmp_path / "ledger")
    rnd = random.Random(os.environ.get("LUAIPC_STRESS_SEED"))
    ws = Workers(names, tmp_path)
    kills = recovered = watchdog_resets = 0
    kinds_killed: dict[str, int] = {}
    survivors: dict[int, int] = {}
    try:
        for i in range(WORKERS):
            ws.spawn("sem" if i % 2 == 0 else "flock", "python" if i % 4 < 2 else "lua")
        deadline = time.monotonic() + seconds
        last_a, last_change = -1, time.monotonic()

        def watchdog() -> int:
            """The ledger's blind spot (see the module docstring): reset the
            semaphore when the sem group made no progress for 5 s while it is
            taken and nobody alive is recorded as holding it."""
            nonlocal last_a, last_change
            a = int(bytes(buf[GROUPS["sem"]:GROUPS["sem"] + W]))
            now = time.monotonic()
            if a != last_a:
                last_a, last_change = a, now
            elif now - last_change > 5 and sem.value == 0 and not ledger.holders():
                ipc.sem.reset(names["sem"], 1)
                last_change = now
                return 1
            return 0

        while time.monotonic() < deadline:
            time.sleep(rnd.uniform(0.1, 0.6))
            slot = rnd.choice(list(ws.live))
            p, group, kind = ws.live.pop(slot)
            if p.poll() is not None:
                out, err = p.communicate()
                pytest.fail(f"worker {kind}/{group} exited early ({p.returncode}): {err}")
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=30)
            p.stdout.close(), p.stderr.close()
            kills += 1
            kinds_killed[kind] = kinds_killed.get(kind, 0) + 1
            recovered += len(ledger.recover())
            ws.spawn(group, "python" if kind == "python" else "lua")
            watchdog_resets += watchdog()
        buf[0:1] = b"1"                              # stop
        recovered += len(ledger.recover())
        # The watchdog keeps running while the workers stop: a unit lost by
        # the last kill would otherwise leave the sem workers waiting forever.
        stopping = time.monotonic() + 90
        while any(p.poll() is None for p, _g, _k in ws.live.values()):
            if time.monotonic() > stopping:
                break  # communicate() below reports who did not stop
            time.sleep(0.1)
            watchdog_resets += watchdog()
        for slot, (p, group, kind) in list(ws.live.items()):
            try:
                out, err = p.communicate(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                pytest.fail(f"worker {kind}/{group} did not stop (deadlock?): {err}")
            assert p.returncode == 0 and out.splitlines()[-1].startswith("done "), (kind, err)
            survivors[slot] = int(out.split()[-1])
        ws.live.clear()

        # a journal left pending by the last holder killed in a group is
        # rolled forward here, as the next holder would have done
        for base in GROUPS.values():
            if buf[base + 40:base + 41] == b"1":
                ja = int(bytes(buf[base + 48:base + 68]))
                js = int(bytes(buf[base + 68:base + 88]))
                jv = int(bytes(buf[base + 88:base + 108]))
                buf[base:base + W] = buf[base + 20:base + 20 + W] = b"%020d" % ja
                buf[_slot(js):_slot(js) + W] = b"%020d" % jv
                buf[base + 40:base + 41] = b"0"
        slot_counts = {i: int(bytes(buf[_slot(i):_slot(i) + W])) for i in ws.slots}
        totals = {}
        for group, base in GROUPS.items():
            a = int(bytes(buf[base:base + W]))
            b = int(bytes(buf[base + 20:base + 20 + W]))
            s = sum(n for i, n in slot_counts.items() if ws.slots[i] == group)
            assert a == b == s, (group, a, b, s)
            totals[group] = a
        for slot, n in survivors.items():                # survivors' work: exact
            assert slot_counts[slot] == n, (slot, slot_counts[slot], n)
        assert sem.value == 1 and ledger.holders() == []
    finally:
        for p, _g, _k in ws.live.values():
            p.kill()
            p.wait()
        buf.release()            # the view first: then the segment can go
        h.close()
        sem.close()
    left = [p.name for p in SHM_DIR.iterdir() if p.name.endswith(tuple(names.values()))]
    print(f"\nstress {seconds:g} s, {WORKERS} processes (Python and Lua on "
          f"{len(ENGINES)} engines): {sum(totals.values())} operations "
          f"(sem {totals['sem']}, flock {totals['flock']}), {kills} processes killed "
          f"{dict(sorted(kinds_killed.items()))}, {len(ws.slots)} started, "
          f"{len(survivors)} survivors; semaphore units recovered by the ledger "
          f"{recovered}, by the watchdog {watchdog_resets}; objects left {len(left)}")
    assert totals["sem"] > 0 and totals["flock"] > 0
    assert left == []
