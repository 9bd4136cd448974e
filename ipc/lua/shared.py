"""One Lua runtime shared by many Python threads, without deadlock.

A ``LuaRuntime`` runs one thread at a time, and a Lua call blocked in ipc
(``s:dec()``) holds it: if the thread that would ``s:inc()`` must call into
the same runtime, the two wait for each other for ever.  ``SharedRuntime``
gives the runtime a thread of its own that runs an ``ipc.loop``: every
``call`` from any thread becomes a task of that loop, so a call that waits
suspends only its task, and the others go on (the loop's rule: one thread
runs all Lua)::

    shared = ipc.lua.SharedRuntime()
    # thread A:                                  # thread B, meanwhile:
    shared.call('return require("ipc.sem")       shared.call('... s:inc() ...')
                 .open(...):dec()', b"jobs")

Calls reach the loop through a private POSIX message queue (its descriptor
is in the loop's epoll, so a waiting loop wakes at once and an idle one
costs no CPU) and a deque of the jobs; each job's results come back
through a ``concurrent.futures.Future``.  Arguments and results are plain
values (None, booleans, numbers, bytes, str; Lua strings come back as
bytes), as for ``LuaRuntime.execute`` with the options luaipc sets.  A
call made from inside the runtime's own thread (Lua calling Python calling
``call``) is refused: it would wait for the loop it is running in.
"""
from __future__ import annotations

import collections
import contextlib
import os
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from .._errors import Timeout

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["SharedRuntime"]

_SERVER = b"""
local loop, mq = require "ipc.loop", require "ipc.mq"
local load, unpack = loadstring or load, table.unpack or unpack
return function(name, ready, take, finish)
  local q = assert(mq.open(name))
  ready()                             -- the creator may unlink the name now
  local compiled = setmetatable({}, { __mode = "v" })
  local tasks = {}
  -- A job is a task of its own, joined by another: not a pcall around it,
  -- since 5.1 cannot yield across a pcall, and its waits must yield.
  local function job(id, code, ...)
    local f = compiled[code]
    if not f then
      local err
      f, err = load(code, "=[SharedRuntime.call]")
      if not f then return finish(id, nil, err) end
      compiled[code] = f
    end
    local t = loop.spawn(f, ...)
    tasks[id] = t
    finish(id, t:join())              -- true, results / nil, err, tb / nil, "cancelled"
    tasks[id] = nil
  end
  loop.run(function()
    while true do
      local m = q:receive()
      if m == "x" then break end
      loop.spawn(job, take())
    end
    for _, t in pairs(tasks) do t:cancel() end
  end)
  q:close()
end
"""


class SharedRuntime:
    """A LuaRuntime (``engine``, with the ipc modules) run by a thread of
    its own in an ``ipc.loop``; ``call`` from any thread.  See the module
    docstring.  ``close()`` ends the loop: calls still waiting end with
    ``RuntimeError`` ("cancelled")."""

    def __init__(self, engine: str | None = None) -> None:
        from ..mq import MessageQueue
        name = f"luaipc-shared.{os.getpid()}.{os.urandom(6).hex()}"
        self._q = MessageQueue(name, maxmsg=1, msgsize=1)
        self._jobs: collections.deque[tuple[int, bytes, tuple[Any, ...], Future[Any]]] = \
            collections.deque()
        self._pending: dict[int, Future[Any]] = {}
        self._ids = 0
        self._lock = threading.Lock()
        self._closed = False
        ready: Future[None] = Future()
        self._thread = threading.Thread(target=self._serve, args=(engine, name, ready),
                                        daemon=True, name="ipc.lua.SharedRuntime")
        self._thread.start()
        try:
            ready.result()
        finally:
            self._q.unlink()     # the loop has it open: the name is no longer needed

    def _serve(self, engine: str | None, name: str, ready: Future[None]) -> None:
        from . import new_runtime
        try:
            serve: Any = new_runtime(engine).execute(_SERVER.decode())
            serve(name.encode(), lambda: ready.set_result(None), self._take, self._finish)
        except BaseException as exc:  # noqa: BLE001 (handed to the callers, who raise it)
            if not ready.done():
                ready.set_exception(exc)
            failure: BaseException = exc
        else:
            failure = RuntimeError("cancelled: the SharedRuntime was closed")
        # The loop has ended: no call still queued or running will finish.
        with self._lock:
            self._closed = True
            left = [job[3] for job in self._jobs] + list(self._pending.values())
            self._jobs.clear()
            self._pending.clear()
        for fut in left:
            if not fut.done():
                fut.set_exception(RuntimeError(f"SharedRuntime ended: {failure}"))

    def _take(self) -> tuple[Any, ...]:
        """From the loop: the next job, as id, code, arguments... (plain
        values, each new to the runtime)."""
        with self._lock:
            job_id, code, args, fut = self._jobs.popleft()
            self._pending[job_id] = fut
        return (job_id, code, *args)

    def _finish(self, job: int, ok: bool | None, *results: Any) -> None:
        """From the loop: ``true, results...``, or ``nil, error [,
        traceback]`` (a cancelled job: ``nil, "cancelled"``)."""
        with self._lock:
            fut = self._pending.pop(int(job), None)
        if fut is None:
            return
        if ok:
            fut.set_result(results[0] if len(results) == 1 else results)
        else:
            text = "\n".join(_text(r) for r in results[:2] if r is not None) or "error"
            fut.set_exception(RuntimeError(text))

    def call(self, code: str | bytes, *args: Any) -> Any:
        """Run the Lua chunk ``code`` with ``...`` = ``args`` as a task of
        the runtime's loop; its results (one value, or a tuple of them).
        A Lua error raises RuntimeError with its traceback."""
        if isinstance(code, str):
            code = code.encode()
        if not isinstance(code, bytes):
            raise TypeError(f"code must be str or bytes, not {type(code).__name__}")
        for a in args:
            if a is not None and not isinstance(a, (bool, int, float, str, bytes)):
                raise TypeError(f"arguments must be plain values (None, bool, int, float, "
                                f"str, bytes), not {type(a).__name__}")
        if threading.current_thread() is self._thread:
            raise RuntimeError("SharedRuntime.call from inside its own runtime: "
                               "call the Lua code directly there")
        fut: Future[Any] = Future()
        with self._lock:
            if self._closed:
                raise ValueError("SharedRuntime is closed")
            self._ids += 1
            self._jobs.append((self._ids, code, args, fut))
        # Wakes the loop; waits while the last wake is unread, looking now
        # and then whether the loop has ended (then no one ever reads it).
        while True:
            try:
                self._q.send(b"j", 1.0)
                break
            except Timeout:
                if self._closed and not fut.done():
                    fut.set_exception(ValueError("SharedRuntime is closed"))
                if fut.done():
                    break
        return fut.result()

    def close(self) -> None:
        """End the loop and its thread (again: nothing)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        with contextlib.suppress(Timeout):   # an ended loop reads nothing
            self._q.send(b"x", 5.0)
        self._thread.join(30)
        self._q.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _text(v: Any) -> str:
    return v.decode(errors="replace") if isinstance(v, bytes) else str(v)
