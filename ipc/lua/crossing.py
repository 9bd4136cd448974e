"""How Python objects may cross into a LuaRuntime: each one at most once.

lupa (2.8 and earlier, every engine) can hand Lua the wrapper of another
Python object when an object that Lua was given before is pushed again.
lupa keeps, per runtime, a dict from an object's address to an index into
a weak-valued Lua table of wrappers (``LUPA_PYTHON_REFERENCES_TABLE``,
filled with ``luaL_ref``).  When a wrapper dies, the collector clears its
slot in that table first and runs its finalizer (which ``luaL_unref``\\ s
the slot) later.  In between, ``luaL_ref`` may give the cleared slot to a
new wrapper (it takes ``#t + 1``, and a cleared slot can be that border);
the late finalizer then frees the slot of the *live* new wrapper, the next
``luaL_ref`` hands that slot to a third object, and the next push of the
second object reads the third one's wrapper from it.  A push of an object
lupa has never seen never reads that table, so it is always right.
(``tests/test_lupa_refs.py`` shows this with lupa alone.)

Hence the rule for everything that hands Python objects to Lua:

* the bridge sends every runtime its own fresh copies of the core
  functions (``fresh``), and sends each copy once;
* a core function returns plain values (None, bool, int, float, bytes,
  and tuples of them, which lupa unpacks) or objects it has just made;
  never an object Lua was given before, nor a cached one;
* an exception raised into Lua is a new object (lupa pushes it as the
  error value): never re-raise an exception that came from Lua.

``LUAIPC_CHECK_CROSSINGS=1`` (the test suite sets it) makes ``fresh``
wrap every core function, and every function such a function returns, in
a checker that raises ``CrossingError`` when one of them hands Lua an
object that is already there, or one that cannot be checked.
"""
from __future__ import annotations

import functools
import os

# The C halves of weakref: the module itself costs ~1 ms of luaipc's
# start-up, for a checker that is off outside the tests.
from _weakref import ref as weakref_ref
from _weakrefset import WeakSet
from types import FunctionType

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Callable

__all__ = ["fresh", "CrossingError", "CHECKING"]

_PLAIN = (type(None), bool, int, float, bytes)

#: Whether the checker is on (read once, when the bridge is first imported).
CHECKING = os.environ.get("LUAIPC_CHECK_CROSSINGS", "") not in ("", "0")


class CrossingError(AssertionError):
    """A core function broke the crossing rule (see the module docstring)."""


def fresh(value: object) -> object:
    """What the bridge sends Lua for a core module's export: a new copy of
    a Python function (same code, globals, defaults and closure: no extra
    frame per call), or a plain value as it is.  Anything else is refused:
    the bridge could only send it again to the next runtime."""
    if isinstance(value, FunctionType):
        copy = FunctionType(value.__code__, value.__globals__, value.__name__,
                            value.__defaults__, value.__closure__)
        copy.__kwdefaults__ = value.__kwdefaults__
        copy.__qualname__ = value.__qualname__
        copy.__doc__ = value.__doc__
        copy.__module__ = value.__module__
        return _checked(copy) if CHECKING else copy
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(f"a core export must be a Python function or a plain value, "
                    f"not {type(value).__name__} ({value!r})")


# -- the checker (tests) ------------------------------------------------------

#: id -> weak reference of every object handed to Lua and still alive.
_crossed: dict[int, weakref_ref[object]] = {}
#: The latest exceptions raised into Lua (they cannot be weakly referenced,
#: so a bounded few are kept alive).
_raised: list[BaseException] = []
#: The latest slices handed to Lua (the memory handles' item access,
#: ipc/_memfile.py: span), by id: they cannot be weakly referenced either,
#: so they are kept alive (their ids cannot be reused meanwhile), a
#: bounded many.
_slices: dict[int, slice] = {}
_MAX_SLICES = 1 << 16


def _note(obj: object, where: str) -> None:
    if isinstance(obj, _PLAIN) or type(obj).__module__.startswith("lupa."):
        return  # converted by value, or a Lua object lupa pushes by its ref
    if isinstance(obj, BaseException):  # cannot be weakly referenced
        if any(e is obj for e in _raised):
            raise CrossingError(f"{where} raised {obj!r} into Lua again: raise a new "
                                "exception (ipc.lua.support.anew; see ipc/lua/crossing.py)")
        _raised.append(obj)
        del _raised[:-256]
        return
    key = id(obj)
    if type(obj) is slice:
        if _slices.get(key) is obj:
            raise CrossingError(f"{where} handed Lua {obj!r} again "
                                "(see ipc/lua/crossing.py)")
        _slices[key] = obj
        if len(_slices) > _MAX_SLICES:
            del _slices[next(iter(_slices))]
        return
    ref = _crossed.get(key)
    if ref is not None and ref() is obj:
        raise CrossingError(f"{where} handed Lua {obj!r} again "
                            "(see ipc/lua/crossing.py)")
    try:
        _crossed[key] = weakref_ref(obj, functools.partial(_forget, key))
    except TypeError:
        raise CrossingError(f"{where} handed Lua a {type(obj).__name__}, which lupa "
                            "wraps but the checker cannot follow; return plain "
                            "values or a new object") from None


def _forget(key: int, ref: weakref_ref[object]) -> None:
    if _crossed.get(key) is ref:
        del _crossed[key]


def _checked(f: Callable[..., object]) -> Callable[..., object]:
    where = getattr(f, "__qualname__", repr(f))

    def checked(*args: object, **kwargs: object) -> object:
        try:
            result = f(*args, **kwargs)
        except BaseException as exc:
            _note(exc, f"{where} (raising)")
            raise
        if type(result) is tuple:
            result = tuple(_returned(x, where) for x in result)
        else:
            result = _returned(result, where)
        return result

    checked.__name__ = getattr(f, "__name__", "checked")
    checked.__qualname__ = where
    checked.__doc__ = getattr(f, "__doc__", None)
    checked.__wrapped__ = f  # type: ignore[attr-defined]  # a function takes any attribute
    _wrappers.add(checked)
    return checked


_wrappers: WeakSet[Callable[..., object]] = WeakSet()


def _returned(x: object, where: str) -> object:
    if (callable(x) and not isinstance(x, type) and not hasattr(x, "__self__")
            and x not in _wrappers):
        x = _checked(x)  # a closure the face will call: check it as well
    _note(x, where)
    return x
