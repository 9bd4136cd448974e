"""The luaipc interpreter as a user meets it: a real child process per case,
compared with what the `lua` command does."""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import textwrap

import pytest
from helpers.children import LUAIPC, child_env, run_luaipc, spawn_luaipc, wait_line
from helpers.lua import EXPECTED_VERSION, installed, is_luajit, lua_version


def write(path, text: str):
    path.write_text(textwrap.dedent(text))
    return path


def test_version_of_each_engine_from_the_environment(engine):
    r = run_luaipc(["-e", "print(_VERSION)"], engine=engine)
    assert r.returncode == 0, r.stderr
    assert r.stdout == EXPECTED_VERSION[engine].decode() + "\n"


def test_engine_option_wins_over_the_environment_and_reaches_children(engine, tmp_path):
    # The child is spawned the common way: the lowest index of arg.
    script = write(tmp_path / "spawn.lua", """
        local i = -1
        while arg[i - 1] do i = i - 1 end
        local me = (jit and jit.version or _VERSION)
        if arg[1] == "child" then print("child", me) return end
        print("parent", me, arg[-1] == arg[i])
        io.stdout:flush()
        assert(os.execute(arg[i] .. " " .. arg[0] .. " child"))
    """)
    other = next(e for e in installed() if e != engine)
    r = run_luaipc(["--engine", engine, str(script)], engine=other, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    parent, child = r.stdout.splitlines()
    assert parent.startswith("parent") and parent.endswith("true")
    assert parent.split("\t")[1] == child.split("\t")[1]
    want = run_luaipc(["-e", "print(jit and jit.version or _VERSION)"], engine=engine)
    assert child.split("\t")[1] == want.stdout.strip()


def test_arg_table_as_lua_builds_it(tmp_path, engine):
    write(tmp_path / "script.lua", """
        print(arg[0], arg[1], arg[2], #arg, select("#", ...), ...)
        print(arg[-1] ~= nil, arg[-2])
    """)
    r = run_luaipc(engine=engine, args=["script.lua", "a", "b"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "script.lua\ta\tb\t2\t2\ta\tb"
    assert lines[1] == "true\tnil"


def test_options_sit_at_negative_indices(tmp_path, engine):
    write(tmp_path / "s.lua", "for i = -3, 1 do print(i, arg[i]) end")
    r = run_luaipc(engine=engine, args=["-e", "x=1", "s.lua", "z"], cwd=tmp_path)
    lines = r.stdout.splitlines()
    assert lines[1:] == ["-2\t-e", "-1\tx=1", "0\ts.lua", "1\tz"]
    assert lines[0] == "-3\t" + shlex.join(LUAIPC)   # the command that starts luaipc


def test_lowest_index_restarts_luaipc_as_a_shell_command(tmp_path, engine):
    r = run_luaipc(engine=engine, args=["-e", "x=1", "-e",
                    ("local i=0 while arg[i-1] do i=i-1 end "
                     "local p = io.popen(arg[i] .. \" -e 'io.write(40+2)'\") "
                     "print(p:read('*a'))")])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"


def test_script_from_stdin_with_dash(engine):
    r = run_luaipc(engine=engine, args=["-"], input="print(1+1)\n")
    assert (r.returncode, r.stdout) == (0, "2\n")
    r = run_luaipc(engine=engine, args=["-", "x", "y"], input="print(...)\n")
    assert r.stdout == "x\ty\n"


def test_no_arguments_and_piped_stdin_runs_stdin(engine):
    r = run_luaipc(engine=engine, args=[], input="io.write('from stdin')\n")
    assert (r.returncode, r.stdout) == (0, "from stdin")


def test_uncaught_error_message_traceback_and_status(engine):
    r = run_luaipc(["-e", 'error("x")'], engine=engine)
    assert r.returncode == 1
    assert r.stdout == ""
    first, *rest = r.stderr.splitlines()
    assert first == "luaipc: (command line):1: x"
    assert rest[0] == "stack traceback:"
    assert "[luaipc]" not in r.stderr  # the driver's own frames are hidden


def test_non_string_error_objects_as_lua_reports_them(engine):
    r = run_luaipc(engine=engine, args=["-e", "error({})"])
    assert r.returncode == 1
    assert r.stderr.startswith("luaipc: (error object is a table value)")
    r = run_luaipc(engine=engine, args=["-e", "error(setmetatable({}, {__tostring=function() return 'custom' end}))"])
    assert r.stderr == "luaipc: custom\n"


@pytest.mark.parametrize(("code", "status"), [
    ("os.exit(7)", 7), ("os.exit(true)", 0), ("os.exit(false)", 1), ("os.exit()", 0),
    ("pcall(os.exit, 3)", 3), ("print('before') os.exit(0) print('after')", 0),
])
def test_os_exit(code, status, engine):
    r = run_luaipc(["-e", code], engine=engine)
    assert r.returncode == status, r.stderr
    assert "after" not in r.stdout


def test_os_exit_flushes_buffered_output(tmp_path, engine):
    r = run_luaipc(engine=engine, args=["-e", ("io.write('unflushed') local f = io.open('o.txt', 'w') "
                                               "f:write('file data') os.exit(0)")], cwd=tmp_path)
    assert r.stdout == "unflushed"
    assert (tmp_path / "o.txt").read_text() == "file data"


def test_syntax_error_names_file_and_line(tmp_path, engine):
    write(tmp_path / "bad.lua", "local x = 1\nlocal = 2\n")
    r = run_luaipc(["bad.lua"], cwd=tmp_path, engine=engine)
    assert r.returncode == 1
    assert r.stderr.startswith("luaipc: bad.lua:2:"), r.stderr


def test_missing_script(engine):
    r = run_luaipc(engine=engine, args=["no-such-script.lua"])
    assert r.returncode == 1
    assert r.stderr.startswith("luaipc: cannot open no-such-script.lua")


def test_shebang_line_is_skipped(tmp_path, engine):
    write(tmp_path / "tool.lua", "#!/usr/bin/env luaipc\nprint('ran')\n")
    assert run_luaipc(engine=engine, args=["tool.lua"], cwd=tmp_path).stdout == "ran\n"


def test_require_library_with_l_and_lua_path(tmp_path, engine):
    write(tmp_path / "mymod.lua", "return { answer = 42 }")
    env = {"LUA_PATH": str(tmp_path / "?.lua") + ";;"}
    r = run_luaipc(engine=engine, args=["-l", "mymod", "-e", "print(mymod.answer)"], env=env)
    assert r.stdout == "42\n", r.stderr
    r = run_luaipc(engine=engine, args=["-lg=mymod", "-e", "print(g.answer)"], env=env)
    assert r.stdout == "42\n", r.stderr
    r = run_luaipc(engine=engine, args=["-e", f"print(package.path:find({str(tmp_path)!r}, 1, true) ~= nil)"],
                   env=env)
    assert r.stdout == "true\n"


def test_l_loads_ipc_modules(engine):
    r = run_luaipc(engine=engine, args=["-l", "ipc", "-e", "print(type(ipc.shm.create))"])
    assert r.stdout == "function\n", r.stderr


def test_lua_init_string_file_and_versioned(tmp_path, engine):
    r = run_luaipc(["-e", "print(X)"], env={"LUA_INIT": "X = 'init'"}, engine=engine)
    assert r.stdout == "init\n"
    write(tmp_path / "init.lua", "X = 'from file'")
    r = run_luaipc(["-e", "print(X)"], env={"LUA_INIT": "@" + str(tmp_path / "init.lua")},
                   engine=engine)
    assert r.stdout == "from file\n"
    if not is_luajit(engine) and lua_version(engine) >= (5, 2):
        versioned = "LUA_INIT_" + engine[3:].replace(".", "_")
        r = run_luaipc(["-e", "print(X)"], engine=engine,
                       env={"LUA_INIT": "X = 'plain'", versioned: "X = 'versioned'"})
        assert r.stdout == "versioned\n"
    r = run_luaipc(["-e", "error('in init')"], env={"LUA_INIT": "error('boom')"})
    assert r.returncode == 1 and "LUA_INIT" in r.stderr and "boom" in r.stderr


def test_E_ignores_lua_init_and_lua_path(tmp_path, engine):
    env = {"LUA_INIT": "X = 'init'", "LUA_PATH": "/nonexistent/?.lua"}
    r = run_luaipc(engine=engine, args=["-E", "-e", "print(X, package.path:find('/nonexistent', 1, true))"],
                   env=env)
    assert r.stdout == "nil\tnil\n", r.stderr


@pytest.mark.parametrize("engine", ["luajit2.1"], indirect=True)  # a LuaJIT names its own
def test_v_prints_version(engine):
    r = run_luaipc(["-v"], engine=engine)
    assert r.returncode == 0
    assert r.stdout.startswith("luaipc ") and "LuaJIT 2.1" in r.stdout


def test_interactive_mode_reads_evaluates_and_prints(engine):
    session = "x = 20\nx + 22\nfor i = 1, 2 do\nprint('loop', i)\nend\nerror('oops')\nreturn 1, nil\n"
    r = run_luaipc(["-i"], input=session, engine=engine)
    assert r.returncode == 0, r.stderr
    assert "42\n" in r.stdout
    assert "loop\t1\n" in r.stdout and "loop\t2\n" in r.stdout
    assert "1\tnil" in r.stdout
    # LuaJIT drops the frame of a tail call, so `return error(...)` has no position.
    assert ("stdin:1: oops" if not engine.startswith("luajit") else "oops") in r.stderr


@pytest.mark.parametrize(("args", "message"), [
    (["-x"], "unrecognized option '-x'"),
    (["-e"], "'-e' needs argument"),
    (["-l"], "'-l' needs argument"),
    (["-vx"], "unrecognized option '-vx'"),
    (["--engine"], "'--engine' needs argument"),
])
def test_bad_options_print_usage_and_fail(args, message):
    r = run_luaipc(args)
    assert r.returncode == 1
    assert r.stderr.startswith(f"luaipc: {message}\nusage: luaipc")


def test_unknown_engine_fails_clearly():
    r = run_luaipc(["--engine", "lua9", "-e", "print(1)"])
    assert r.returncode == 1
    assert "unknown Lua engine 'lua9'; valid engines:" in r.stderr and "luajit2.1" in r.stderr
    r = run_luaipc(["-e", "print(1)"], env={"LUAIPC_ENGINE": "nope"})
    assert r.returncode == 1
    assert "unknown Lua engine 'nope' (from $LUAIPC_ENGINE)" in r.stderr


def test_usage_lists_the_engines():
    from ipc.lua import ENGINES
    r = run_luaipc(["-x"])
    assert f"Engines: {', '.join(ENGINES)} (default lua5.4)" in r.stderr


def test_output_interleaves_with_children(engine):
    r = run_luaipc(["-e", ("print('a') io.write('b\\n') os.execute('echo c') "
                           "io.write('d\\n') io.stdout:flush() os.execute('echo e') print('f')")],
                   engine=engine)
    assert r.stdout == "a\nb\nc\nd\ne\nf\n"


@pytest.mark.parametrize("engine", ["lua5.3"], indirect=True)  # any but the default
def test_python_dash_m_ipc_is_the_same_interpreter(engine):
    r = subprocess.run([sys.executable, "-m", "ipc", "-e", "print(_VERSION, #arg)"],
                       capture_output=True, text=True, timeout=60, check=False,
                       env={**os.environ, "LUAIPC_ENGINE": engine})
    assert r.stdout == "Lua 5.3\t2\n", r.stderr


def test_scripts_do_not_see_python(engine):
    r = run_luaipc(engine=engine, args=["-e", "print(python, rawget(_G, 'python'))"])
    assert r.stdout == "nil\tnil\n"


def test_handles_are_released_when_the_script_ends(name, tmp_path, engine):
    # A segment created and never closed is unlinked when the script ends
    # (lua_close runs the finalizers), and by os.exit too.
    for tail in ["", "os.exit(0)"]:
        r = run_luaipc(engine=engine, args=["-e", f"S = require('ipc.shm').create('{name}', 64) {tail}"])
        assert r.returncode == 0, r.stderr
        assert not os.path.exists(f"/dev/shm/{name}")


def _interrupt_after_ready(code: str, engine: str, times: int = 1) -> subprocess.CompletedProcess:
    """Start luaipc; each time it prints "ready", send SIGINT; collect the end."""
    p = spawn_luaipc(["-e", code], engine=engine)
    try:
        for _ in range(times):
            wait_line(p)
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=20)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


# LuaJIT, like the luajit command, cannot stop a loop it has compiled to
# machine code (traces do not check hooks): the loop runs interpreted here.
JIT_OFF = "if jit then jit.off() end "


def test_ctrl_c_interrupts_a_pure_lua_loop(engine):
    r = _interrupt_after_ready(JIT_OFF + "print('ready') io.stdout:flush() "
                               "local x = 0 while true do x = x + 1 end", engine)
    assert r.returncode == 1
    assert r.stderr.startswith("luaipc: (command line):1: interrupted!\nstack traceback:")


def test_ctrl_c_is_an_error_pcall_can_catch_twice(engine):
    code = (JIT_OFF + "for i = 1, 2 do "
            "local ok, e = pcall(function() print('ready') io.stdout:flush() "
            "while true do end end) "
            "io.stderr:write('caught ', e, '\\n') end")
    r = _interrupt_after_ready(code, engine, times=2)
    assert r.returncode == 0
    assert r.stderr.count("caught (command line):1: interrupted!") == 2, r.stderr


def test_ctrl_c_interrupts_a_blocking_read_of_a_child(engine):
    # The child's stderr goes elsewhere, so ours closes when luaipc ends; on
    # exit, closing the popen file waits for the child (as lua does): keep it short.
    r = _interrupt_after_ready(JIT_OFF + "local p = io.popen('sleep 4 2>/dev/null') "
                               "print('ready') io.stdout:flush() "
                               "local data = p:read('*a') while true do end", engine)
    assert r.returncode == 1
    assert "interrupted!" in r.stderr


# What start-up must not import (issue 14): re and enum (the wrapper pip
# writes for an entry point imports re, hence scripts/luaipc; the signal
# module imports enum), typing (with re, ~6 ms), threading, and
# importlib.resources for the Lua sources; weakref too, before a module is
# required.  Child imports under -X importtime, with -S so that no .pth file
# (an editable install's finder imports re) blurs the picture: lupa then
# comes from site-packages on PYTHONPATH.
_NEVER = {"re", "enum", "typing", "threading", "importlib.resources", "signal"}


@pytest.mark.parametrize(("code", "never"), [
    ("", _NEVER | {"weakref"}),
    ('require "ipc.shm"', _NEVER),
    ('require "ipc.mmap"; require "ipc.strfile"', _NEVER),
    # A linda's lock is a thread lock, and a lane pool watches its processes
    # from threads; every lane process requires both modules at its start.
    ('require "ipc.linda"; require "ipc.lanes"', _NEVER - {"threading"}),
    # Python-only parts load at first use: PathLock's portalocker (45 ms),
    # send_obj's pickle, the asyncio face's asyncio (35 ms), and ipc.proc
    # for a loop that waits on no process.
    ('require "ipc.sem"; require "ipc.mq"; require "ipc.filelock"',
     _NEVER | {"pickle", "portalocker", "asyncio", "subprocess"}),
    ('require "ipc.loop"', _NEVER - {"threading"} | {"portalocker", "asyncio", "subprocess"}),
])
def test_start_up_imports_only_what_the_script_needs(code, never, engine):
    import site

    from helpers.children import ROOT, child_env
    path = os.pathsep.join([str(ROOT), *site.getsitepackages()])
    r = subprocess.run([sys.executable, "-S", "-X", "importtime",
                        str(ROOT / "scripts" / "luaipc"), "-e", code],
                       env=child_env(engine, {"PYTHONPATH": path}), capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    imported = {ln.rpartition("|")[2].strip() for ln in r.stderr.splitlines()
                if ln.startswith("import time:")}
    assert "ipc.cli.luaipc" in imported
    assert not imported & never, sorted(imported & never)


# Faults of 200 rounds of a 1 MiB write and read, counted by the script
# itself (minflt, field 10 of /proc/self/stat): a count, not a time.
FAULTS = """
local shm = require "ipc.shm"
local function minflt()
  local f = assert(io.open("/proc/self/stat", "rb"))
  local stat = f:read("*a")
  f:close()
  local fields = {}
  for w in stat:match("%) (.*)$"):gmatch("%S+") do fields[#fields + 1] = w end
  return tonumber(fields[8])
end
local n = 1048576
local h = assert(shm.create(arg[1], n))
local s = string.rep("x", n)
local function round() h:seek("set"); h:write(s); h:seek("set"); return h:read(n) end
for _ = 1, 20 do round() end
local before = minflt()
for _ = 1, 200 do round() end
print(minflt() - before)
h:close()
"""
PAGES = 200 * (1 << 20) // 4096    # the rounds' MiBs, in pages


def _faults(engine, name, tmp_path, **malloc_env) -> int:
    script = tmp_path / "faults.lua"
    script.write_text(FAULTS)
    env = child_env(engine)
    for k in [k for k in env if k.startswith("MALLOC_") or k == "GLIBC_TUNABLES"]:
        del env[k]
    env.update(malloc_env)
    r = subprocess.run([*LUAIPC, str(script), name], capture_output=True, text=True,
                       timeout=60, env=env, stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout)


def test_big_strings_reuse_the_heap_instead_of_faulting(engine, name, tmp_path):
    # glibc's defaults gave back the strings' memory at once: 66,208 faults
    # on lua5.2, 16,064 on lua5.5, 5,888 on lua5.3 (0 on 5.1 and 5.4).
    assert _faults(engine, name, tmp_path) < PAGES // 100


def test_the_users_malloc_settings_win(name, tmp_path):
    # A trim threshold of the user's own turns glibc's dynamic thresholds
    # off, so each 1 MiB string is mapped and unmapped: a fault a page.
    faults = _faults("lua5.4", name, tmp_path, MALLOC_TRIM_THRESHOLD_="131072")
    assert faults > PAGES // 2
