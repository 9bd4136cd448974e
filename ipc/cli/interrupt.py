"""Signals for a running script, met the way the ``lua`` command meets them.

* SIGINT (Ctrl-C) raises "interrupted!" in the script, at the blocked call
  or at the line of a pure-Lua loop that was running, as lua.c does: pcall
  can catch it, and uncaught it ends luaipc with status 1.
* SIGTERM, SIGHUP, SIGQUIT (``kill``, ``docker stop``, ``systemctl stop``, a
  terminal hanging up) and SIGPIPE (a write to a pipe nobody reads any more:
  ``luaipc script.lua | head -1``) kill ``lua`` where it stands.  They end
  luaipc too, and by the same signal, but first the script's blocked call or
  loop is stopped and luaipc does what a normal exit does: ``ipc.proc``
  children get SIGTERM (SIGKILL after ``GRACE`` seconds) and are reaped, the
  exit handlers run (so creator handles unlink their shm, sem and mq names),
  C stdio is flushed.  No pcall can catch it.  Only the first such signal
  counts: later ones, and Ctrl-C, are ignored while luaipc ends (the cleanup
  is bounded), so systemd's SIGTERM-then-SIGHUP cannot cut it short.
  Signals ignored when luaipc starts (``nohup``) stay ignored.

Why die by the signal instead of ``exit(128 + N)``: a shell shows the same
number either way, but a parent's waitpid() tells "killed by SIGTERM" from
"exited with 143" (WIFSIGNALED), and the parent of ``lua`` sees the first.
Resetting the signal to SIG_DFL and raising it after the cleanup is what
well-behaved programs do (bash; CPython itself for an uncaught
KeyboardInterrupt).

How.  Python calls a signal's handler only when it next runs Python code,
and a Lua loop such as ``while true do end`` never calls Python.  lua.c
sets a hook from its signal handler (``lua_sethook`` is documented as safe
to call asynchronously); the hook raises "interrupted!".  We do the same
from a watcher thread (lupa releases the GIL while Lua runs): the signal's
wakeup byte wakes the thread, which sets the C hook of ldblib (``hookf``)
on the main lua_State; the hook calls our Lua function, whose first call
into Python runs the pending handler.  For Ctrl-C the thread first gives
Python a moment: if the handler has run (the script was in a Python call,
where KeyboardInterrupt already becomes "interrupted!"), no hook is needed.
For an ending signal, the handler records it, sets the hook and raises
KeyboardInterrupt: a blocked call ends as on Ctrl-C (and whatever releases
a call's resources on Ctrl-C runs: ``proc`` shuts its child down), and as
soon as Lua runs again the hook ends the process from where it is
(``Interrupter._end``), without unwinding the script.  A signal that comes
after the main thread's last Python bytecode and before it blocks in C
(sem_wait, poll) interrupts nothing, and its handler would wait for Python
code that does not run: for an ending signal the watcher sends it again to
the main thread until luaipc is leaving (repeats are ignored, so that is
harmless).  Ctrl-C has the same window and no such poke: a repeated SIGINT
would be a second "interrupted!".

LuaJIT runs no hooks inside a loop it compiled to machine code (as with
the luajit command, Ctrl-C cannot stop one; ``jit.off()`` avoids it), and a
script can be blocked in C that retries on EINTR (``os.execute``): if the
handler has not run ``UNANSWERED`` seconds after an ending signal (no
Python runs in the main thread), or luaipc has not begun to end
``FALLBACK`` seconds after it, the watcher ends luaipc by the signal at
once, without the cleanup, as before.

Finding the lua_State: lupa does not expose it, so it is read from the
LuaRuntime object and checked against what Lua itself shows (the main
thread's address on 5.2+, ldblib's hook-table key on 5.1, the hook lupa
reports back on LuaJIT).  If any check fails, none of this is armed: Ctrl-C
works at the next call into Python, the ending signals kill at once, and
SIGPIPE is back to its default (so ``| head`` still ends the script).
"""
from __future__ import annotations

# _signal, not signal: the wrapper imports enum (~5 ms of luaipc's start-up).
# _thread, not threading: ~1.3 ms of it, for one thread and one flag.
import _signal as signal
import _thread
import atexit
import ctypes
import os
import sys
import time

TYPE_CHECKING = False  # not typing's: importing typing costs start-up
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from types import ModuleType
    from typing import Any, NoReturn

LUA_MASKCALL, LUA_MASKRET, LUA_MASKLINE, LUA_MASKCOUNT = 1, 2, 4, 8
_EVERY_INSTRUCTION = (LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1)
_PROBE_COUNT = 987654321  # a hook count nobody else would set
_STATE_SLOT = 3  # LuaRuntime: ob_refcnt, ob_type, __pyx_vtab, _state

#: The signals whose default action terminates ``lua`` and that end luaipc,
#: by the same signal, after the cleanup.
ENDING = (signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT, signal.SIGPIPE)
#: Seconds proc children get between SIGTERM and SIGKILL when luaipc ends
#: by a signal (what proc's wait gives its child on Ctrl-C).
GRACE = 0.5
#: Seconds after an ending signal before the watcher gives up on the main
#: thread: when its handler has not run (no Python code runs there), and
#: when luaipc has not begun to end though it has (the slowest honest path
#: is a proc wait shutting its child down: GRACE, SIGKILL, the reaping).
UNANSWERED, FALLBACK = 1.0, 3.0
_POKE = 0.1  # seconds between two pokes of a main thread that did not react

_libc = ctypes.CDLL(None)
# For the watcher: Python's signal.signal() works in the main thread only.
_libc.signal.argtypes = [ctypes.c_int, ctypes.c_void_p]
_libc.signal.restype = ctypes.c_void_p


def flush_c_stdio() -> None:
    """Lua writes through C stdio: flush it as exit() would."""
    _libc.fflush(None)


_HOOK_LUA = b"""
local clear, probe = ...
local pcall, error, sethook = pcall, error, debug.sethook
local function interrupted()
  -- The first call may run Python's pending handler (KeyboardInterrupt)
  -- instead; after an ending signal, clear() does not return.
  if not pcall(clear) then pcall(clear) end
  error("interrupted!", 2)          -- at the line that was running, as lua.c
end
sethook(interrupted, "", probe)      -- registers interrupted() for ldblib's hookf
local key = ""
if _VERSION == "Lua 5.1" and not jit then
  for _, t in pairs(debug.getregistry()) do
    if type(t) == "table" then
      for k, v in pairs(t) do if v == interrupted then key = tostring(k) end end
    end
  end
end
local main = coroutine.running()
return main and tostring(main) or "", key
"""


class _Flag:
    """threading.Event's set, is_set and wait, for one waiter (the watcher)."""

    __slots__ = ("_done", "_lock")

    def __init__(self) -> None:
        self._done = False
        self._lock = _thread.allocate_lock()
        self._lock.acquire()  # held until set()

    def set(self) -> None:
        if not self._done:
            self._done = True
            try:
                self._lock.release()
            except RuntimeError:  # a second set() in between: released already
                pass

    def is_set(self) -> bool:
        return self._done

    def wait(self, timeout: float) -> bool:
        # The one waiter keeps the lock it gets: _done answers from then on.
        return self._done or self._lock.acquire(timeout=timeout) or self._done


def _address(text: bytes) -> int | None:
    _, _, hexpart = text.partition(b": ")
    try:
        return int(hexpart, 16)
    except ValueError:
        return None


class Interrupter:
    """Arms the signals for pure-Lua code in ``runtime`` (main thread only);
    ``armed`` is false when the lua_State could not be confirmed."""

    def __init__(self, runtime: object, lupa_mod: ModuleType,
                 run_chunk: Callable[..., Any]) -> None:
        lib = ctypes.CDLL(lupa_mod.__file__)
        lib.lua_sethook.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.lua_gethook.argtypes = [ctypes.c_void_p]
        lib.lua_gethook.restype = ctypes.c_void_p
        lib.lua_gethookmask.argtypes = [ctypes.c_void_p]
        lib.lua_gethookcount.argtypes = [ctypes.c_void_p]
        self._lib = lib
        slot = id(runtime) + _STATE_SLOT * ctypes.sizeof(ctypes.c_void_p)
        self._L = ctypes.c_void_p.from_address(slot).value
        self._hookf = None
        self._received = self._handled = 0  # SIGINTs seen by the watcher / by Python
        self._signum = 0                    # the first ending signal
        self._leaving = _Flag()             # the main thread is on its way out
        self._ending: tuple[int, ...] = ()  # the ending signals we handle
        self._main = _thread.get_ident()
        self.armed = False
        main, key = run_chunk(runtime, _HOOK_LUA, b"=[ipc.interrupt]", self._clear, _PROBE_COUNT)
        try:
            if not self._state_confirmed(main, key):
                return
            self._hookf = lib.lua_gethook(self._L)
        finally:
            if self._L:
                lib.lua_sethook(self._L, None, 0, 0)  # the registration stays
        if not self._hookf:
            return
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.set_wakeup_fd(wfd, warn_on_full_buffer=False)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            signal.signal(signal.SIGINT, self._on_sigint)  # else ignored (a background job)
        # SIGPIPE: Python ignores it at start-up, so its inherited state is lost.
        self._ending = tuple(s for s in ENDING
                             if s == signal.SIGPIPE or signal.getsignal(s) == signal.SIG_DFL)
        for s in self._ending:
            signal.signal(s, self._on_ending)
        # A bare thread is a daemon: the interpreter's exit does not wait for it.
        _thread.start_new_thread(self._watch, (rfd,))
        self.armed = True

    def _state_confirmed(self, main: bytes, key: bytes) -> bool:
        L = self._L
        if not L:
            return False
        if main:                                   # 5.2+: the main thread itself
            return _address(main) == L
        if key:                                    # 5.1: ldblib's hook-table key
            return _address(key) == L
        # LuaJIT: the hook that sethook just set must read back from L.
        return bool(self._lib.lua_gethookcount(L) == _PROBE_COUNT
                    and self._lib.lua_gethookmask(L) == LUA_MASKCOUNT)

    def _set_hook(self) -> None:
        self._lib.lua_sethook(self._L, self._hookf, *_EVERY_INSTRUCTION)

    def _clear(self) -> None:
        self._lib.lua_sethook(self._L, None, 0, 0)
        if self._signum:
            self._end()

    # -- the handlers (main thread, between two Python bytecodes) ------------

    def _on_sigint(self, _signum: int, _frame: object) -> None:
        self._handled += 1
        if self._leaving.is_set():
            return  # luaipc is ending: nothing left to interrupt
        raise KeyboardInterrupt

    def _on_ending(self, signum: int, _frame: object) -> None:
        if self._signum:
            return  # the first one is being handled
        self._signum = signum
        if self._leaving.is_set():
            return  # the exit under way ends by it (leaving(), left())
        self._set_hook()  # the first Lua instruction after this call ends luaipc
        raise KeyboardInterrupt  # ends the call the script is blocked in

    def _watch(self, rfd: int) -> None:
        while True:
            data = os.read(rfd, 64)
            if not data:
                return
            ending = [s for s in data if s in self._ending]
            if ending:
                self._end_soon(ending[0])
                return
            self._received += data.count(signal.SIGINT)
            # Give Python a moment: if the main thread is in Python code (or
            # blocked in a call), its KeyboardInterrupt does the job.
            time.sleep(0.15)
            if self._handled < self._received:
                # The hook's call into Python runs the pending handler,
                # which brings _handled up to _received.
                self._set_hook()

    def _end_soon(self, signum: int) -> None:
        """Watcher: see that the main thread begins to end luaipc."""
        self._set_hook()  # pure Lua: the hook runs the handler, then _end
        # The signal may have come between the main thread's last Python
        # bytecode and a blocking call (see the module docstring): send it
        # again to the main thread (EINTR there) until luaipc is leaving.
        for i in range(1, int(FALLBACK / _POKE) + 1):
            if self._leaving.wait(_POKE):
                return
            if not self._signum and i * _POKE >= UNANSWERED:
                break
            signal.pthread_kill(self._main, signum)
        # No hook came (a compiled LuaJIT loop, a C call that retries on
        # EINTR): die by the signal at once, as lua does.
        signum = self._signum or signum
        _libc.signal(signum, None)  # SIG_DFL
        os.kill(os.getpid(), signum)

    # -- the way out (main thread) ---------------------------------------------

    def _end(self) -> NoReturn:
        """End luaipc by the ending signal that came, after what a normal
        exit does.  Never returns."""
        self._leaving.set()
        signum = self._signum
        # Flushing into a closed pipe must not end us by another signal.
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        try:
            proc = sys.modules.get("ipc.proc")
            if proc is not None:  # SIGTERM first: the finalizers only SIGKILL
                proc.shutdown_all(GRACE)
            # Finalizers: creators unlink their names.  atexit has no public
            # "run the handlers now"; this is what the interpreter's exit calls.
            atexit._run_exitfuncs()
        finally:
            flush_c_stdio()
            for f in (sys.stdout, sys.stderr):
                try:
                    f.flush()
                except (OSError, ValueError):
                    pass
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)
            # Reached only as PID 1 of a PID namespace (a container), which
            # the kernel spares signals at SIG_DFL: the status a shell shows.
            os._exit(128 + signum)

    def leaving(self) -> None:  # see the module's leaving() and left()
        self._leaving.set()
        if self._signum:
            self._end()

    def left(self) -> None:
        for s in self._ending:  # first: one that comes after the check kills
            signal.signal(s, signal.SIG_DFL)
        if self._signum:
            self._end()


_armed: Interrupter | None = None  # signal dispositions belong to the process


def leaving() -> None:
    """luaipc is on its way out (the script is over, or os.exit runs): from
    now on an ending signal is only recorded, and Ctrl-C is ignored; one
    that came already ends luaipc now."""
    if _armed is not None:
        _armed.leaving()


def left() -> None:
    """luaipc's last word before its own exit: end by an ending signal that
    came meanwhile; else give the ending signals back to their default, so
    one that comes while the interpreter tears down kills at once."""
    if _armed is not None:
        _armed.left()


def arm(runtime: object, lupa_mod: ModuleType,
        run_chunk: Callable[..., Any]) -> Interrupter | None:
    """Arm the signals for pure-Lua code if this is the main thread."""
    global _armed
    # threading takes the thread that first imports it for the main one: if
    # nothing has imported it, no thread of threading's exists, and this
    # is the main thread by the same rule.
    threading = sys.modules.get("threading")
    if threading is not None and threading.current_thread() is not threading.main_thread():
        return None
    try:
        it = Interrupter(runtime, lupa_mod, run_chunk)
    except (OSError, AttributeError, ValueError) as exc:  # pragma: no cover
        print(f"luaipc: signals inside Lua loops are off ({exc})", file=sys.stderr)
        it = None
    if it is None or not it.armed:
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # as lua: | head ends us
        return None
    _armed = it
    return it
