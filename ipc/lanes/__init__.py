"""Lanes: Lua functions run in parallel processes (``require "ipc.lanes"``).

This is the Python half: the lane processes and their lifetimes.  The Lua
face (face.lua) does the rest: it encodes a job, sends it through the
pool's linda, and decodes the result.

A ``Pool`` is ``n`` lane processes (luaipc on engine E, each
running ``require "ipc.lanes"._serve(name)``) that take jobs from one
anonymous linda.  ``lanes.gen(fn)(...)`` in Lua is a pool of one process
that runs one job and ends; ``lanes.pool(n)`` keeps its processes for many.

What makes it safe:

* Each process has a watcher thread here, blocked in ``waitpid`` (no CPU).
  When a process ends without having finished its job (killed, crashed),
  the watcher reports the job as ``killed`` with the signal, so no joiner
  waits forever; a pool then starts a new process in its place.
* Closing a pool, or collecting it, or the program's exit, kills every
  process it has still running and removes its linda: nothing is left
  behind (``weakref.finalize``).

The keys of a pool's linda: ``"job"`` (jobs, FIFO: number, payload),
``"r"`` (results: number, result, ...; drained into the parent as they
come), ``"w:<pid>"`` (the job a process is
running: a slot), ``"c:<id>"`` (cancel requested).  ipc.lanes is the one
client of ipc.linda's byte-level methods (``transact``, ``transact_wait``).
"""
from __future__ import annotations

import _signal as signal  # not signal: its wrapper imports enum (start-up)
import collections
import contextlib
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping
from functools import partial

from msgpack import unpackb

from .. import linda as _linda
from ..linda import State, _wire, key_bit
from ..lua import ENGINES

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing_extensions import Self

__all__ = ["Pool", "nproc", "take", "done"]


def nproc() -> int:
    """The processors this process may run on (its affinity), as Lanes'
    ``nproc``: the number of lanes that can truly run at once."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover (not Linux)
        return os.cpu_count() or 1


#: A lane process's command: luaipc, as ``python -m ipc`` runs it but
#: without runpy (``-m`` imports it, with importlib.util and contextlib:
#: about 3 ms of every lane's start).
_LANE_MAIN = ("import sys; from ipc.cli.luaipc import main; "
              "sys.exit(main(['luaipc', *sys.argv[1:]]))")


class _Process:
    """One lane process and the thread that watches it end."""

    def __init__(self, pool: _Shared) -> None:
        import subprocess  # here: a lane process itself never starts one
        code = f"require 'ipc.lanes'._serve({pool.name!r}, {'true' if pool.once else 'false'})"
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _LANE_MAIN, "--engine", pool.engine, "-e", code],
            env=pool.env, stdin=subprocess.DEVNULL, close_fds=True)
        self.pid = self.popen.pid
        threading.Thread(target=self._watch, args=(pool,), daemon=True,
                         name=f"ipc.lanes watcher {self.pid}").start()

    def _watch(self, pool: _Shared) -> None:
        rc = self.popen.wait()
        pool.ended(self, rc)


def _k(text: str) -> bytes:
    return _linda.key_bytes(text)


#: The key the results go to: number, result, number, result...
RESULTS = _k("r")


class _Shared:
    """What a Pool's processes and watchers share: everything but the Pool
    itself, so that collecting the Pool runs its finalizer."""

    def __init__(self, engine: str, n: int, once: bool, env: dict[str, str] | None) -> None:
        self.engine, self.n, self.once, self.env = engine, n, once, env
        self.lock = threading.Lock()
        self.closed = False
        self.linda = _linda.create()
        self.name = self.linda.name
        self.procs: dict[int, _Process] = {}
        # The lane processes are this process's children: a child made by
        # fork() inherits this object, and its exit must not kill them.
        self.pid = os.getpid()
        # Jobs wait here, in submission order, until the linda's job queue
        # has room: every change rewrites a linda's whole state, so a
        # thousand queued jobs would make every take cost a thousand.  The
        # queue holds at most `window`; a feeder thread tops it up as the
        # processes take jobs (so lanes go on while this process does
        # other things), and a submit tops it up itself when it can.
        self.backlog: collections.deque[tuple[bytes, bytes]] = collections.deque()
        self.window = max(4, 2 * n)
        #: job number -> its result, drained from the linda (see _drain);
        #: used only in changes of the linda, which its thread lock
        #: serialises.
        self.results: dict[int, bytes] = {}
        threading.Thread(target=self._feed, daemon=True, name="ipc.lanes feeder").start()

    def start(self) -> None:
        with self.lock:
            if self.closed:
                return
            p = _Process(self)
            self.procs[p.pid] = p

    def ended(self, p: _Process, rc: int) -> None:
        """A watcher saw ``p`` end with ``rc``: report the job it left
        unfinished (the slot ``w:<pid>`` names it), and in a pool that goes
        on, start another process in its place."""
        with self.lock:
            self.procs.pop(p.pid, None)
            closed = self.closed
        with contextlib.suppress(Exception):  # the linda may be closed meanwhile
            self.linda.transact(partial(_report_killed, _k(f"w:{p.pid}"), rc, self.once))
        if not closed and not self.once:
            with contextlib.suppress(Exception):
                self.start()

    def _drain(self, state: State) -> int:
        """Move the results posted so far (key ``"r"``: number, result,
        number, result...) to ``results``, here: else they would pile up
        in the linda until joined, and every change would carry them.
        The bit to wake (0: there were none)."""
        entry = state.pop(RESULTS, None)
        if not entry or not entry[1]:
            return 0
        fifo = entry[1]
        for i in range(0, len(fifo) - 1, 2):
            self.results[unpackb(fifo[i])] = fifo[i + 1]
        return key_bit(RESULTS)

    def _feed_change(self, state: State) -> tuple[bool | None, int]:
        """The feeder's change: results drained, backlog topped up; None
        (sleep on) when there was nothing to do."""
        drained = self._drain(state)
        moved, bits = self._top_up(state) if self.backlog else (0, 0)
        if not drained and not moved:
            return None, 0
        return True, drained | bits

    def _top_up(self, state: State) -> tuple[int | None, int]:
        """Move jobs from the backlog to the linda's queue while it has
        room: how many (None: none moved and some wait), and the bit that
        wakes the takers."""
        queue = _k("job")
        entry = state.get(queue)
        if entry is None:
            entry = state[queue] = [-1, []]
        moved = 0
        fifo = entry[1]
        while self.backlog and len(fifo) < 2 * self.window:   # two values a job
            number, payload = self.backlog.popleft()
            fifo += [number, payload]
            moved += 1
        # None (wait for room) only while jobs are left that found none.
        return (None if self.backlog and not moved else moved), (key_bit(queue) if moved else 0)

    def submit(self, number: bytes, payload: bytes) -> None:
        self.backlog.append((number, payload))
        self.linda.transact(self._top_up)   # what finds no room: the feeder's

    def _feed(self) -> None:
        """The feeder thread: sleeps until a result is posted or a take
        makes room, then drains the results and tops up the queue.  Ends
        when the pool closes (its linda's close ends the wait with
        ValueError)."""
        bits = key_bit(_k("job")) | key_bit(RESULTS)
        try:
            while not self.closed:
                self.linda.transact_wait(self._feed_change, bits, None)
        except (ValueError, OSError):
            return                     # the pool closed meanwhile

    def signal(self, pid: int, sig: int) -> bool:
        with self.lock:
            p = self.procs.get(pid)
        if p is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            p.popen.send_signal(sig)
        return True

    def close(self) -> None:
        """Kill what still runs, reap it, remove the linda.  Never raises.
        In a forked child, only the child's handle of the linda closes."""
        if os.getpid() != self.pid:
            with contextlib.suppress(Exception):
                self.linda.close()
            return
        with self.lock:
            self.closed = True
            procs = list(self.procs.values())
        for p in procs:
            with contextlib.suppress(Exception):
                p.popen.kill()
        for p in procs:
            with contextlib.suppress(Exception):
                p.popen.wait(5)
        with contextlib.suppress(Exception):
            self.linda.close()


# -- the protocol: changes of a pool's linda -----------------------------------
#
# Each step is one change of the linda (Linda.transact), so that a process
# killed at any instant leaves a job either queued, or marked as its
# (``w:<pid>``: then its watcher reports it killed), or finished.

def _report_killed(slot: bytes, rc: int, once: bool, state: State) -> tuple[None, int]:
    """The process of ``slot`` ended with ``rc`` while it had a job: post
    "killed" as the job's result and drop the mark.  In a pool of ``once``
    (one lane, one process), a process that ended before it took the job
    (it could not start: a bad env, say) leaves it queued for no one:
    that job is the one reported, else its joiner would wait forever."""
    entry = state.pop(slot, None)
    bits = key_bit(slot)
    if entry and entry[1]:
        job = unpackb(entry[1][0])
    else:
        queue = state.get(_k("job")) if once else None
        if not queue or len(queue[1]) < 2:
            return None, 0
        job = unpackb(queue[1][0])
        del queue[1][:2]
        bits = key_bit(_k("job"))
    how = {"killed": True, "signal": -rc if rc < 0 else 0, "code": rc}
    _append(state, RESULTS, _wire.dumps(job), _wire.dumps(how))
    return None, key_bit(RESULTS) | bits


def _append(state: State, key: bytes, *blobs: bytes) -> None:
    entry = state.get(key)
    if entry is None:
        state[key] = [-1, list(blobs)]
    else:
        entry[1] += blobs


def _check_lane(lane: object, pid: object) -> None:
    """take() and done() are public: their arguments are checked before
    they reach the linda (a wrong one would raise AttributeError there, or
    mark a slot no watcher looks at)."""
    if not isinstance(lane, _linda.Linda):
        raise TypeError(f"lane must be an ipc.linda.Linda, not {type(lane).__name__}")
    if isinstance(pid, bool) or not isinstance(pid, int):
        raise TypeError(f"pid must be an int, not {type(pid).__name__}")


def take(lane: _linda.Linda, pid: int) -> tuple[int, bytes, bool]:
    """In a lane process: wait for a job: ``(number, payload, cancelled)``.
    Taking it and marking it ours (the slot ``w:<pid>``) are one change."""
    _check_lane(lane, pid)
    queue, slot = _k("job"), _k(f"w:{pid}")

    def change(state: State) -> tuple[tuple[int, bytes, bool] | None, int]:
        entry = state.get(queue)
        if entry is None or len(entry[1]) < 2:
            return None, 0
        number, payload = entry[1][:2]
        del entry[1][:2]
        state[slot] = [-1, [number]]
        job: int = unpackb(number)
        return (job, payload, _k(f"c:{job}") in state), key_bit(queue) | key_bit(slot)

    got: tuple[int, bytes, bool] = lane.transact_wait(change, key_bit(queue), None)
    return got


def done(lane: _linda.Linda, pid: int, job: int, result: bytes) -> None:
    """Post ``job``'s result and drop the mark, in one change."""
    _check_lane(lane, pid)
    if isinstance(job, bool) or not isinstance(job, int):
        raise TypeError(f"job must be an int, not {type(job).__name__}")
    if not isinstance(result, bytes):
        # (it goes into the linda's state as it is: anything else would be
        # a value no reader can decode)
        raise TypeError(f"result must be bytes, not {type(result).__name__}")
    slot = _k(f"w:{pid}")

    def change(state: State) -> tuple[None, int]:
        state.pop(slot, None)
        state.pop(_k(f"c:{job}"), None)
        _append(state, RESULTS, _wire.dumps(job), result)
        return None, key_bit(RESULTS) | key_bit(slot)

    lane.transact(change)


def _running(job: bytes, state: State) -> tuple[int | None, int]:
    """The pid whose mark ``w:<pid>`` holds ``job`` (its msgpack bytes)."""
    for k, (_, fifo) in state.items():
        if fifo and fifo[0] == job and k[1:3] == b"w:":
            return int(k[3:]), 0
    return None, 0


class Pool:
    """``n`` lane processes on ``engine`` serving one linda (``name``).

    ``once``: each process runs one job and ends (a lane of ``lanes.gen``).
    ``env``: the processes' environment (default: this process's).
    """

    def __init__(self, n: int, engine: str, once: bool = False,
                 env: dict[str, str] | None = None) -> None:
        if engine not in ENGINES:
            raise ValueError(f"unknown Lua engine {engine!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"a pool needs at least one process, not {n!r}")
        # Checked here, not left to Popen: `once` is spelled into the lane's
        # Lua command line (a str there would be code), and a bad env would
        # fail in Popen with AttributeError after the linda is made.
        if not isinstance(once, bool):
            raise TypeError(f"once must be a bool, not {type(once).__name__}")
        if env is not None and not isinstance(env, Mapping):
            raise TypeError(f"env must be a mapping of str to str, not {type(env).__name__}")
        self._shared = shared = _Shared(engine, n, once, env)
        self.name = shared.name
        self._finalizer = weakref.finalize(self, shared.close)
        try:
            for _ in range(n):
                shared.start()
        except BaseException:
            self._finalizer()
            raise

    # -- the parent's side of the protocol -------------------------------------------

    def submit(self, job: int, payload: bytes) -> None:
        """Queue job number ``job`` (its encoded function and arguments);
        never waits (see ``_Shared.backlog``)."""
        self._shared.submit(_wire.dumps(job), payload)

    def result(self, job: int, timeout: float | None) -> bytes | None:
        """The encoded result of ``job``, waiting at most ``timeout``; None
        when it passes.  A result is taken once."""
        if isinstance(job, bool) or not isinstance(job, int):
            raise TypeError(f"job must be an int, not {type(job).__name__}")
        shared = self._shared

        def change(state: State) -> tuple[bytes | None, int]:
            bits = shared._drain(state)
            return shared.results.pop(job, None), bits

        got: bytes | None = shared.linda.transact_wait(change, key_bit(RESULTS), timeout)
        return got

    @property
    def linda(self) -> _linda.Linda:
        """The pool's linda (its jobs and results)."""
        return self._shared.linda

    def watcher(self, job: int) -> tuple[Callable[[State], bool], int]:
        """For ipc.loop: a look at the linda's state that says whether
        ``result(job, 0)`` would give the result now, and the futex bits to
        sleep on meanwhile."""
        results = self._shared.results

        def ready(state: State) -> bool:
            entry = state.get(RESULTS)
            return job in results or bool(entry and entry[1])
        return ready, key_bit(RESULTS)

    def running(self, job: int) -> int | None:
        """The pid of the process running ``job``, or None (not yet, or
        finished)."""
        pid: int | None = self._shared.linda.transact(partial(_running, _wire.dumps(job)))
        return pid

    def state(self, job: int) -> str:
        """``"pending"`` (not begun), ``"running"``, or ``"waiting"``: its
        process is asleep in a call (an ipc wait, a read, a child...), as
        the kernel says of its main thread, which runs the Lua code."""
        pid = self.running(job)
        if pid is None:
            return "pending"
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            return "running"        # ending now: its result is on the way
        # The state follows the command name in parentheses, which may
        # itself hold ") ": look after the last one.
        state = stat[stat.rfind(b")") + 2:][:1]
        return "waiting" if state in (b"S", b"D") else "running"

    def cancel(self, job: int, sig: int = signal.SIGINT) -> bool:
        """Ask ``job`` to stop: marked, so that a process that has not begun
        it skips it, and ``sig`` to the process running it (SIGINT: the lane
        sees "interrupted!" at its next hook or ipc call).  True if a
        process was signalled."""
        self._shared.linda.set_bytes(_k(f"c:{job}"), [_wire.dumps(True)])
        pid = self.running(job)
        return pid is not None and self._shared.signal(pid, sig)

    def signal(self, pid: int, sig: int = signal.SIGINT) -> bool:
        """Send ``sig`` to the pool's process ``pid``; False if it is not one."""
        return self._shared.signal(pid, sig)

    @property
    def pids(self) -> list[int]:
        """The pids of the pool's processes now."""
        with self._shared.lock:
            return list(self._shared.procs)

    def close(self) -> None:
        """Kill the processes still running and remove the linda."""
        self._finalizer()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
