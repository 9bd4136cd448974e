"""The Lua bridge: engines, runtimes, install() into a caller's runtime,
and the conventions every face relies on (bytes, several return values,
Lua-style errors that pcall catches)."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest
from helpers.lua import EXPECTED_VERSION, is_luajit

import ipc
from ipc.lua import (
    DEFAULT_ENGINE,
    ENGINES,
    ENV_VAR,
    RUNTIME_OPTIONS,
    EngineError,
    install,
    lupa_module,
    new_runtime,
    resolve_engine,
)


def test_seven_engines_are_known():
    assert list(ENGINES) == ["lua5.1", "lua5.2", "lua5.3", "lua5.4", "lua5.5",
                             "luajit2.0", "luajit2.1"]


def test_each_engine_runs_its_own_lua(lua, engine):
    assert lua.eval("_VERSION") == EXPECTED_VERSION[engine]
    jit = lua.eval("jit and jit.version")
    if is_luajit(engine):
        assert jit.startswith(b"LuaJIT " + engine[len("luajit"):].encode())
    else:
        assert jit is None


def test_engine_choice_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_engine() == DEFAULT_ENGINE == "lua5.4"
    monkeypatch.setenv(ENV_VAR, "luajit2.1")
    assert resolve_engine() == "luajit2.1"
    assert resolve_engine("lua5.2") == "lua5.2"


@pytest.mark.parametrize("bad", ["lua5.0", "luajit", "LUA5.4", "python"])
def test_unknown_engine_is_a_clear_error_listing_the_valid_ones(bad, monkeypatch):
    with pytest.raises(EngineError) as info:
        resolve_engine(bad)
    assert repr(bad) in str(info.value)
    for name in ENGINES:
        assert name in str(info.value)
    monkeypatch.setenv(ENV_VAR, bad)
    with pytest.raises(EngineError, match=ENV_VAR):
        new_runtime()


def test_require_every_module_and_ipc_itself(lua):
    for name in ipc.MODULES:
        mod = lua.eval(f'(require "ipc.{name}")')  # 5.4+ require returns 2 values
        assert lua.eval("type")(mod) == b"table", name
    same = lua.eval('function(name) return require("ipc")[name] == require("ipc." .. name) end')
    for name in ipc.MODULES:
        assert same(name.encode()) is True, name


def test_install_into_a_runtime_the_caller_made(engine):
    runtime = lupa_module(engine).LuaRuntime(**RUNTIME_OPTIONS)
    assert runtime.eval('package.preload["ipc.shm"]') is None
    install(runtime)
    f = runtime.eval('require("ipc.strfile").open("a\\0b\\255"):read("a")')
    assert f == b"a\0b\xff"


def test_install_refuses_a_runtime_that_would_mangle_bytes(engine):
    runtime = lupa_module(engine).LuaRuntime()  # encoding="UTF-8"
    with pytest.raises(ValueError, match="encoding=None"):
        install(runtime)


def test_a_python_program_embeds_its_own_runtime():
    # The documented embedding recipe, run as a fresh program.
    code = (
        "import lupa.lua53 as L, ipc.lua\n"
        "rt = L.LuaRuntime(encoding=None, unpack_returned_tuples=True)\n"
        "ipc.lua.install(rt)\n"
        "print(rt.execute('local s = require \"ipc.strfile\" "
        "return s.open(\"x\\\\ny\"):read(\"l\", \"l\")'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(b'x', b'y')"


def test_binary_strings_round_trip_unchanged(lua):
    data = bytes(range(256)) * 3
    roundtrip = lua.eval('function(s) return require("ipc.strfile").open(s):read("a") end')
    assert roundtrip(data) == data
    assert lua.eval('function(s) return #s end')(data) == len(data)


def test_misuse_is_a_lua_string_error_pcall_catches(lua, unnamed):
    ok, err, kind = lua.execute(
        'local ok, e = pcall(require("ipc.shm").create, nil, 10) return ok, e, type(e)')
    assert ok is False and kind == b"string"
    assert err == f"bad argument #1 to '{unnamed('ipc.shm.create')}' (string expected, got nil)".encode()


def test_misuse_error_points_at_the_callers_line(lua):
    err = lua.execute('local shm = require "ipc.shm"\n'
                      'local ok, e = pcall(function()\n'
                      '  shm.create(nil, 10)\n'
                      'end)\n'
                      'return e')
    assert err.startswith(b'[string "<python>"]:3: bad argument #1 to \'create\''), err


def test_import_ipc_is_cheap():
    # Importing the package must not import lupa, posix_ipc, psutil or portalocker.
    code = ("import sys, ipc\n"
            "heavy = {'lupa', 'posix_ipc', 'psutil', 'portalocker', 'ipc.shm', 'ipc.proc'}\n"
            "print(sorted(heavy & set(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, check=False)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_modules_load_lazily_from_python():
    for name in ipc.MODULES:
        assert getattr(ipc, name) is importlib.import_module(f"ipc.{name}")
    with pytest.raises(AttributeError):
        ipc.nonexistent  # noqa: B018


def test_no_top_level_package_shadows_the_standard_library():
    import mmap
    assert hasattr(mmap, "PAGESIZE") and "ipc" not in mmap.__name__
