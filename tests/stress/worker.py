"""A stress worker in Python (see tests/test_stress.py and
tests/lua/stress/worker.lua, which does the same in Lua).

    worker.py GROUP SHM SEM LOCKFILE LEDGER SLOT
"""
import os
import sys

import ipc.filelock
import ipc.sem
import ipc.shm

W = 20


def main() -> int:
    group, shmname, semname, lockfile, ledger_path, slot = sys.argv[1:7]
    slot = int(slot)
    h = ipc.shm.attach(shmname)
    buf = h.buf
    base = 64 if group == "sem" else 320
    A, B, JF, JA, JS, JV = base, base + 20, base + 40, base + 48, base + 68, base + 88

    def SLOT(i):
        return 1024 + i * W

    def num(off):
        return int(bytes(buf[off:off + W]))

    def put(off, v):
        buf[off:off + W] = b"%020d" % v

    if group == "sem":
        ledger = ipc.sem.Ledger(ipc.sem.open(semname), ledger_path)
        lock, unlock = ledger.acquire, ledger.release
    else:
        fd = os.open(lockfile, os.O_RDWR)

        def lock():
            ipc.filelock.lock(fd, "w")

        def unlock():
            ipc.filelock.unlock(fd)

    count = 0
    print("ready", flush=True)
    while buf[0:1] != b"1":
        lock()
        if buf[JF:JF + 1] == b"1":  # a holder died mid-update: roll its journal forward
            ja = num(JA)
            put(A, ja), put(B, ja), put(SLOT(num(JS)), num(JV))
            buf[JF:JF + 1] = b"0"
        a, b = num(A), num(B)
        if a != b:
            print(f"invariant broken: A={a} B={b}", file=sys.stderr)
            return 3
        my = num(SLOT(slot))
        put(JA, a + 1), put(JS, slot), put(JV, my + 1)
        buf[JF:JF + 1] = b"1"
        put(A, a + 1), put(B, a + 1), put(SLOT(slot), my + 1)
        buf[JF:JF + 1] = b"0"
        count = my + 1
        unlock()
    print(f"done {count}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
