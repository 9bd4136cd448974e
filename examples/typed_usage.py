"""The README's Python API, as a program that ``mypy --strict`` checks.

    python examples/typed_usage.py
    mypy --strict examples/typed_usage.py

Each step is a README example, made complete (its own names, files in a
temporary directory, everything removed at the end).  ``assert_type`` pins
what a type checker must see: handles keep their type through ``with``,
``wait()`` gives the exit status, ``new_runtime()`` a lupa ``LuaRuntime``.
At run time it does nothing.
"""
from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from pathlib import Path
from typing import IO, Any

import lupa.lua54

import ipc.filelock as fl
import ipc.lua
import ipc.mmap
import ipc.mq
import ipc.sem
import ipc.shm
from ipc import proc

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing_extensions import assert_type  # the type checker's own copy
else:
    def assert_type(value, _type):  # typing.assert_type from 3.11 on: no dependency
        return value


def unique(what: str) -> str:
    """A name nobody else uses (named objects are machine-wide)."""
    return f"typed-{what}-{os.getpid()}-{secrets.token_hex(4)}"


def shared_memory() -> None:
    name = unique("shm")
    with ipc.shm.create(name, 4096) as h:        # ipc.ExistsError if taken
        assert_type(h, ipc.shm.SharedMemory)
        h.write(b"hello")
        with ipc.shm.attach(name) as g:          # attaching never unlinks
            assert_type(g, ipc.shm.SharedMemory)
            g.seek(0)
            assert g.read(5) == b"hello"
            view = g.buf                         # the memory itself, no copy
            assert bytes(view[:5]) == b"hello"
            view.release()
    # the creator's close removed the name
    try:
        ipc.shm.attach(name)
    except ipc.NotFoundError:
        pass
    else:
        raise AssertionError(f"{name} outlived its creator")


def semaphores(tmp: Path) -> None:
    # with s: holds a unit for the block; the handle lives until close().
    with contextlib.closing(ipc.sem.open(unique("sem"), 1)) as s:
        assert_type(s, ipc.sem.Semaphore)
        with s as held:                          # acquire ... release
            assert_type(held, ipc.sem.Semaphore)
        s.acquire(timeout=2)                     # ipc.Timeout after 2 s
        s.release()
        # A ledger gives back the units of holders that died.
        ledger = ipc.sem.Ledger(s, tmp / "jobs.ledger")
        with ledger.hold(timeout=5):
            pass                                 # the work
        given_back = ledger.recover()
        assert given_back == []                  # nobody died


def file_locks(tmp: Path) -> None:
    data = tmp / "data"
    data.write_bytes(b"0" * 100)
    with open(data, "r+b") as f, fl.locked(f, "w", timeout=5) as rng:
        assert_type(rng, fl.RangeLock)           # excludes Lua, C and LuaIPC lockers
        f.write(b"1")
    with fl.PathLock(tmp / "app.lock", timeout=5) as fh:   # portalocker, lockf-style
        assert_type(fh, IO[Any])
    with ipc.mmap.open(data, "rw") as m:         # the file, mapped
        assert_type(m, ipc.mmap.MappedFile)
        assert m.read(1) == b"1"


def message_queues() -> None:
    with ipc.mq.open(unique("mq"), 10, 1024) as q:   # create: 10 messages of <= 1024 bytes
        assert_type(q, ipc.mq.MessageQueue)
        q.send(b"hello", priority=5)
        data, prio = q.receive(timeout=5)
        assert (data, prio) == (b"hello", 5)


def processes() -> None:
    seen: list[tuple[str, bytes]] = []
    p = proc.spawn(["grep", "-c", "x"], stdin=True, stdout=True,   # a list: no shell
                   callback=lambda stream, data: seen.append((stream, data)))
    p.write(b"x\ny\nx\n")
    p.close_stdin()
    status = p.wait()
    assert_type(status, int)
    assert status == 0 and seen == [("stdout", b"2\n")], (status, seen)
    print(proc.run([["printf", "b\\na\\n"], ["sort"]]))          # a pipeline without a shell
    r = proc.run([["printf", "x\\n"], ["sh", "-c", "cat; exit 3"], ["cat"]])
    assert_type(r.returncodes, tuple[int, ...])
    assert (r.returncode, r.returncodes) == (3, (0, 3, 0)), r
    failed: tuple[int, ...] = ()
    try:
        proc.run(["false"], check=True)
    except proc.CalledProcessError as e:
        failed = e.returncodes
    assert failed == (1,), failed


def lua() -> None:
    # Your own runtime: the two options keep bytes bytes and return triples.
    rt = lupa.lua54.LuaRuntime(**ipc.lua.RUNTIME_OPTIONS)
    ipc.lua.install(rt)                          # require "ipc.shm" etc. now work
    pagesize = rt.execute('return require("ipc.mmap").pagesize')
    assert isinstance(pagesize, int) and pagesize > 0
    ready = ipc.lua.new_runtime()                # a ready runtime of the default engine
    assert_type(ready, lupa.LuaRuntime)
    kind = ready.execute('return type(require("ipc").shm.create)')
    assert kind == b"function"


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="luaipc-typed-") as d:
        tmp = Path(d)
        shared_memory()
        semaphores(tmp)
        file_locks(tmp)
        message_queues()
        processes()
        lua()
    print("typed usage: all steps ran")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
