"""Ctrl-C for a script that is busy in pure Lua, the way lua.c does it.

Python turns SIGINT into KeyboardInterrupt only when it next runs Python
code, and a Lua loop such as ``while true do end`` never calls Python.  lua.c
solves this by setting a hook from its signal handler (``lua_sethook`` is
documented as safe to call asynchronously); the hook raises "interrupted!".

We do the same from a watcher thread (lupa releases the GIL while Lua runs):
the signal's wakeup byte wakes the thread; if Python has not handled the
signal within a moment (so the script is inside Lua, not inside a Python
call, where KeyboardInterrupt already becomes "interrupted!"), the thread
sets the C hook of ldblib (``hookf``) on the main lua_State, which calls
our Lua function: it clears the hook and raises "interrupted!".

Finding the lua_State: lupa does not expose it, so it is read from the
LuaRuntime object and checked against what Lua itself shows (the main
thread's address on 5.2+, ldblib's hook-table key on 5.1, the hook lupa
reports back on LuaJIT).  If any check fails, this stays off and Ctrl-C
works as before (at the next call into Python).
"""
from __future__ import annotations

import ctypes
import os
# _signal, not signal: the wrapper imports enum (~5 ms of luaipc's start-up).
import _signal as signal
import sys
import threading

LUA_MASKCALL, LUA_MASKRET, LUA_MASKLINE, LUA_MASKCOUNT = 1, 2, 4, 8
_PROBE_COUNT = 987654321  # a hook count nobody else would set
_STATE_SLOT = 3  # LuaRuntime: ob_refcnt, ob_type, __pyx_vtab, _state

_HOOK_LUA = b"""
local clear, probe = ...
local pcall, error, sethook = pcall, error, debug.sethook
local function interrupted()
  -- The first call may deliver Python's pending KeyboardInterrupt instead.
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


def _address(text: bytes) -> int | None:
    _, _, hexpart = text.partition(b": ")
    try:
        return int(hexpart, 16)
    except ValueError:
        return None


class Interrupter:
    """Arms Ctrl-C for pure-Lua code in ``runtime`` (main thread only)."""

    def __init__(self, runtime, lupa_mod, run_chunk):
        lib = ctypes.CDLL(lupa_mod.__file__)
        lib.lua_sethook.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
        lib.lua_gethook.argtypes = [ctypes.c_void_p]
        lib.lua_gethook.restype = ctypes.c_void_p
        lib.lua_gethookmask.argtypes = [ctypes.c_void_p]
        lib.lua_gethookcount.argtypes = [ctypes.c_void_p]
        self._lib = lib
        self._L = ctypes.c_void_p.from_address(id(runtime) + _STATE_SLOT * ctypes.sizeof(ctypes.c_void_p)).value
        self._hookf = None
        self._received = self._handled = 0
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
        signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._watch, args=(rfd,), name="luaipc-interrupt",
                         daemon=True).start()

    def _state_confirmed(self, main: bytes, key: bytes) -> bool:
        L = self._L
        if not L:
            return False
        if main:                                   # 5.2+: the main thread itself
            return _address(main) == L
        if key:                                    # 5.1: ldblib's hook-table key
            return _address(key) == L
        # LuaJIT: the hook that sethook just set must read back from L.
        return (self._lib.lua_gethookcount(L) == _PROBE_COUNT
                and self._lib.lua_gethookmask(L) == LUA_MASKCOUNT)

    def _clear(self):
        self._lib.lua_sethook(self._L, None, 0, 0)

    def _on_sigint(self, signum, frame):
        self._handled += 1
        raise KeyboardInterrupt

    def _watch(self, rfd: int) -> None:
        wait = threading.Event()
        while True:
            data = os.read(rfd, 64)
            if not data:
                return
            self._received += data.count(signal.SIGINT)
            # Give Python a moment: if the main thread is in Python code (or
            # blocked in a call), its KeyboardInterrupt does the job.
            wait.wait(0.15)
            if self._handled < self._received:
                # The hook's call into Python runs the pending handler,
                # which brings _handled up to _received.
                self._lib.lua_sethook(self._L, self._hookf,
                                      LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT, 1)


def arm(runtime, lupa_mod, run_chunk) -> Interrupter | None:
    """Arm pure-Lua Ctrl-C if this is the main thread and SIGINT is ours."""
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None  # SIGINT ignored (e.g. background job) or someone else's
    try:
        return Interrupter(runtime, lupa_mod, run_chunk)
    except (OSError, AttributeError, ValueError) as exc:  # pragma: no cover
        print(f"luaipc: Ctrl-C inside Lua loops is off ({exc})", file=sys.stderr)
        return None
