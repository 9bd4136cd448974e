"""Big copies between a mapping and a Lua string through Lua's own C API:
one copy each way, where lupa makes two (issue 14, item 4).

Through lupa, a Lua string that is written into an mmap first becomes a
Python bytes object, and bytes sliced out of an mmap are copied again
into a new Lua string.  Here Python reaches the Lua string itself, with
the functions that lupa's engine module exports (``ctypes.PyDLL`` on that
module's file: each engine's symbols, and the GIL stays held):

* ``push`` (Lua string -> mapping): Lua puts the string into a slot of its
  registry (``BOX``); Python pushes it onto the running thread's stack
  (``lua_getfield``), takes its bytes (``lua_tolstring``), copies them into
  the mapping, pops it.
* ``pull`` (mapping -> Lua string): Python pushes a new string made from the
  mapping's bytes (``lua_pushlstring``: the one copy) and stores it into the
  slot (``lua_setfield``, which pops it); Lua takes it from there.

Why this is safe.  A Lua error raised inside one of these calls would
``longjmp`` across the Python frames of the call in progress, which
nothing survives.  So every call here is one that cannot raise:

* The stack is the running thread's own (Lua passes its address, which it
  caches per coroutine: a coroutine's ``lua_State`` is not the main one),
  at the top of lupa's call frame, which lupa empties before it calls
  Python.  Every push is popped before returning, so the stack is as
  lupa left it whatever happens next.
* ``push`` allocates nothing: ``lua_getfield`` of a key that exists (Lua
  keeps the slot ``false`` between copies, and the key string is alive, so
  no string is made), ``lua_type``, ``lua_tolstring`` of a string (never of
  a number, which it would convert in place), ``lua_settop``.
* ``pull`` allocates one string, so it may fail for memory, and its
  allocation may run a step of the collector, so finalizers.  Finalizer
  errors are warnings on Lua 5.4 and 5.5, never raised; 5.2 and 5.3 raise
  them from the allocation, so ``pull`` is 5.4+.  Stopping the collector
  around the push would avoid them, but restarting it sets its debt to
  zero: a collection step at every copy, ten times slower than lupa's path.
  Memory: lupa's restricted allocator (``max_memory``, or a hash seed) can
  refuse, so a state that has one (``lua_getallocf`` gives its userdata)
  takes lupa's path, where a refusal is an ordinary Lua error.  The C
  library's ``realloc`` failing is left: Lua would raise it there, as it
  would at any allocation anywhere.
* The registry's pseudo-index is checked before first use with
  ``lua_absindex``, which only computes: ``absindex(i) == i`` holds for a
  pseudo-index and for nothing above it.
* The region is checked again here, as ``lua_file``'s closures do: a bug in
  Lua cannot reach memory outside the mapping.

Lua 5.1 (no ``lua_absindex``, and no way to name its main thread from Lua)
and LuaJIT (which copies through its FFI already) take lupa's path.
"""
from __future__ import annotations

import ctypes
import importlib

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable
    from typing import Any, Protocol

    class _Closable(Protocol):
        closed: bool

__all__ = ["BOX", "copiers"]

#: The registry key of the slot through which strings pass (the Lua side,
#: ipc/_memfile.lua, keeps it ``false`` between copies).
BOX = b"ipc.memfile.box"

_LUA_TSTRING = 4
#: LUA_REGISTRYINDEX: 5.2-5.4 say -LUAI_MAXSTACK - 1000 (lupa builds them
#: with the default LUAI_MAXSTACK of 1,000,000); 5.5 says -(INT_MAX / 2 +
#: 1000).  Checked before use (copiers: usable).
_REGISTRY = {502: -1_001_000, 503: -1_001_000, 504: -1_001_000, 505: -1_073_742_823}
#: From which engine on strings are pulled too (see the module docstring).
_PULL_FROM = 504


class _Api:
    """The C API functions of one engine's lupa module."""

    __slots__ = ("absindex", "checkstack", "getallocf", "getfield",
                 "pushlstring", "registry", "setfield", "settop", "tolstring", "type")

    def __init__(self, path: str, registry: int) -> None:
        self.registry = registry
        lib = ctypes.PyDLL(path)
        vp, ci = ctypes.c_void_p, ctypes.c_int

        def fn(name: str, restype: object, *argtypes: object) -> Callable[..., Any]:
            f = getattr(lib, name)
            f.argtypes, f.restype = list(argtypes), restype
            c: Callable[..., Any] = f
            return c

        self.absindex = fn("lua_absindex", ci, vp, ci)
        self.checkstack = fn("lua_checkstack", ci, vp, ci)
        self.getallocf = fn("lua_getallocf", vp, vp, ctypes.POINTER(vp))
        self.getfield = fn("lua_getfield", None, vp, ci, ctypes.c_char_p)
        self.setfield = fn("lua_setfield", None, vp, ci, ctypes.c_char_p)
        self.pushlstring = fn("lua_pushlstring", vp, vp, vp, ctypes.c_size_t)
        self.tolstring = fn("lua_tolstring", vp, vp, ci, ctypes.POINTER(ctypes.c_size_t))
        self.settop = fn("lua_settop", None, vp, ci)
        self.type = fn("lua_type", ci, vp, ci)


_APIS: dict[int, _Api | None] = {}


def _api(version: int) -> _Api | None:
    """The C API of the PUC engine of ``version`` (504 for 5.4), or None."""
    try:
        return _APIS[version]
    except KeyError:
        pass
    api = None
    registry = _REGISTRY.get(version)
    if registry is not None:
        major, minor = divmod(version, 100)
        try:
            mod = importlib.import_module(f"lupa.lua{major}{minor}")
            api = _Api(mod.__file__ or "", registry)
        except (ImportError, OSError, AttributeError):
            api = None
    _APIS[version] = api
    return api


def copiers(version: int, base: int, size: int, state: _Closable,
            readable: bool, writable: bool
            ) -> tuple[Callable[[bytes, int, int], bool] | None,
                       Callable[[bytes, int], bool] | None]:
    """``pull(thread, p, c)`` and ``push(thread, p)`` for the region of
    ``size`` bytes at ``base``, which is gone once ``state.closed`` (None
    where the engine or the access rules them out).  ``thread`` is the
    running Lua thread's address as Lua prints it (``0x...``).  Each returns
    False when it cannot copy (the caller then takes lupa's path) and True
    when the string has gone through ``BOX``.  One handle's, so one Lua
    state's: what is checked once here holds for all its threads."""
    api = _api(version)
    if api is None:
        return None, None
    absindex, checkstack, getallocf = api.absindex, api.checkstack, api.getallocf
    pushlstring, setfield, getfield = api.pushlstring, api.setfield, api.getfield
    type_, tolstring, settop, memmove = api.type, api.tolstring, api.settop, ctypes.memmove
    registry = api.registry
    ok: list[bool] = []                   # [usable]: asked at the first copy
    n = ctypes.c_size_t()                 # (one state runs one thread at a time)
    n_ref = ctypes.byref(n)

    def usable(L: int) -> bool:
        # The registry index is this engine's: absindex(i) == i holds for a
        # pseudo-index and for nothing above it (it only computes).  The
        # allocator is the C library's: lupa's restricted one (max_memory,
        # or a hash seed) has a userdata, and may refuse.
        ud = ctypes.c_void_p()
        getallocf(L, ctypes.byref(ud))
        ok.append(absindex(L, registry) == registry
                  and absindex(L, registry + 1) != registry + 1 and not ud.value)
        return ok[0]

    def pull(thread: bytes, p: int, c: int) -> bool:
        L = int(thread, 16)
        if not (ok[0] if ok else usable(L)):
            return False
        p, c = int(p), int(c)
        if state.closed or p < 0 or c < 0 or p + c > size:
            raise ValueError("copy outside the mapping")
        if not checkstack(L, 1):
            return False
        pushlstring(L, base + p, c)
        setfield(L, registry, BOX)        # pops it
        return True

    def push(thread: bytes, p: int) -> bool:
        L = int(thread, 16)
        if not (ok[0] if ok else usable(L)) or not checkstack(L, 1):
            return False
        p = int(p)
        getfield(L, registry, BOX)
        try:
            if type_(L, -1) != _LUA_TSTRING:
                return False
            ptr = tolstring(L, -1, n_ref)
            if state.closed or p < 0 or p + n.value > size:
                raise ValueError("copy outside the mapping")
            memmove(base + p, ptr, n.value)
        finally:
            settop(L, -2)
        return True

    return (pull if readable and version >= _PULL_FROM else None,
            push if writable else None)
