"""The crossing rule (ipc/lua/crossing.py): every Python object reaches a
runtime at most once; the checker the suite runs with catches a breach."""
from __future__ import annotations

import importlib

import pytest

from ipc import MODULES
from ipc.lua import RUNTIME_OPTIONS, crossing, install, lupa_module, new_runtime
from ipc.lua.crossing import CrossingError, fresh


def test_the_suite_runs_with_the_checker():
    assert crossing.CHECKING


def test_fresh_copies_functions_and_keeps_plain_values():
    def f(a, b=2, *, c=3):
        """doc"""
        return a + b + c

    g = fresh(f)
    assert g is not f and g is not fresh(f)
    assert g(1) == 6 and g(1, c=0) == 3
    assert g.__name__ == "f" and g.__doc__ == "doc"
    for v in (None, True, 3, 2.5, b"x"):
        assert fresh(v) is v


@pytest.mark.parametrize("value", [object(), [1], {"a": 1}, len, "text"])
def test_fresh_refuses_what_it_cannot_copy(value):
    with pytest.raises(TypeError, match="core export"):
        fresh(value)


@pytest.mark.parametrize("module", ["lua.support", "lua.posix"] + [f"{m}.lua" for m in MODULES])
def test_every_core_exports_only_functions_and_plain_values(module):
    core = importlib.import_module(f"ipc.{module}")
    assert core.__all__, module
    for name in core.__all__:
        fresh(getattr(core, name))  # raises for anything else


def _cached_core_runtime(engine):
    rt = lupa_module(engine).LuaRuntime(**RUNTIME_OPTIONS)
    cached = type("Handle", (), {})()
    err = ValueError("boom")

    def give():
        return cached

    def give_new():
        return type("Handle", (), {})()

    def fail():
        raise err

    return rt, fresh(give), fresh(give_new), fresh(fail)


def test_checker_catches_an_object_handed_over_twice(engine):
    rt, give, give_new, _ = _cached_core_runtime(engine)
    twice = rt.eval("function(f) local a = f(); local b = f(); return a, b end")
    with pytest.raises(CrossingError, match="again"):
        twice(give)
    twice(give_new)  # new objects each time: fine


def test_checker_follows_slices(engine):
    """Slices (the memory handles' item access) cannot be weakly referenced:
    the checker keeps them to catch one handed over twice."""
    rt = lupa_module(engine).LuaRuntime(**RUNTIME_OPTIONS)
    kept = slice(1, 3)
    twice = rt.eval("function(f) local a = f(); local b = f(); return a, b end")
    with pytest.raises(CrossingError, match="again"):
        twice(fresh(lambda: kept))
    twice(fresh(lambda: slice(1, 3)))  # a new slice each time: fine


def test_checker_catches_an_exception_raised_twice(engine):
    rt, _, _, fail = _cached_core_runtime(engine)
    twice = rt.eval("function(f) pcall(f); return pcall(f) end")
    ok, err = twice(fail)
    assert ok is False and isinstance(err, CrossingError)


def test_install_twice_and_reloading_send_fresh_functions(engine):
    rt = new_runtime(engine)
    install(rt)  # a second install sends a new loader function
    got = rt.execute('''
      local a = require "ipc.sem"
      package.loaded["ipc.sem"] = nil
      local b = require "ipc.sem"
      return a ~= b, type(b.open)''')
    assert got == (True, b"function")
