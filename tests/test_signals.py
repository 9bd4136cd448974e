"""Signals that end a process: luaipc meets them as lua does (SIGINT:
"interrupted!"; SIGTERM, SIGHUP, SIGQUIT, SIGPIPE: death by the signal),
after the cleanup of a normal exit (names unlinked, proc children stopped
and reaped); ipc.cleanup_on_signals() gives a Python program the same.

Real luaipc and Python children, real signals, real named objects."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time

import pytest
from helpers.children import (
    LUAIPC,
    child_env,
    finish,
    pid_gone,
    read_line,
    still_blocked,
)
from helpers.lua import DEFAULT_ENGINE, ENGINES, TWO_ENGINES
from helpers.names import leftovers

pytestmark = pytest.mark.timeout(120)

# SIGTERM is tried on every engine; the other signals, and the rarer ways of
# meeting one, on TWO_ENGINES (PUC-Lua's hooks and LuaJIT's), for time.  A
# proc wait also on the oldest engine, 5.1, whose pcall cannot yield.
THREE_ENGINES = (next(iter(ENGINES)), *TWO_ENGINES)

# LuaJIT cannot stop a loop it compiled to machine code (no hooks run
# there; as with the luajit command and Ctrl-C): the loops run interpreted.
JIT_OFF = "if jit then jit.off() end\n"

# The script of the matrix: the three kinds of named object, a proc child
# that would run for ever, a ready line, then a blocked call or a pure loop.
SCRIPT = JIT_OFF + """
local shm, sem, mq, proc = require "ipc.shm", require "ipc.sem", require "ipc.mq", require "ipc.proc"
local name, mode = ...
local m = assert(shm.create(name, 4096))
local s = assert(sem.open(name, 1))
assert(s:dec())
local q = assert(mq.open(name, 4, 64))
local p = assert(proc.spawn("exec sleep 1000 >/dev/null 2>&1", {}))
print("ready", tostring(p)) io.stdout:flush()
if mode == "block" then s:dec()
elseif mode == "wait" then p:wait()
elseif mode == "pcall" then while true do pcall(s.dec, s) end
else local x = 0 while true do x = x + 1 end end
"""


def start(cmd: list[str], engine: str | None = None, nohup: bool = False) -> subprocess.Popen:
    """Start cmd through a shell that execs it with no core dumps (SIGQUIT's
    default action dumps core, as it would for lua) and, for ``nohup``,
    with SIGHUP ignored, as nohup does."""
    prelude = "ulimit -c 0; " + ("trap '' HUP; " if nohup else "") + 'exec "$@"'
    return subprocess.Popen(["sh", "-c", prelude, "sh", *cmd], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=child_env(engine))


def ready_pid(p: subprocess.Popen) -> int:
    """The pid the child announces in its ready line."""
    line = read_line(p)
    m = re.search(r"ready\D*(\d+)", line)
    if not m:
        p.kill()
        raise AssertionError(f"no ready line: {line!r}; stderr: {p.communicate()[1]}")
    return int(m.group(1))


def kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def send_and_finish(p: subprocess.Popen, child: int, signum: int, mode: str):
    try:
        if mode in ("block", "wait", "pcall"):
            # A signal just before the call blocks is another test's matter
            # (test_a_signal_at_once_still_cleans_up): here it is blocked.
            assert still_blocked(p, 0.3), p.communicate()
        p.send_signal(signum)
        rc, _, err = finish(p)
        assert pid_gone(child), "the proc child still runs"
    finally:
        kill_quietly(child)
    return rc, err


def run_matrix_case(tmp_path, name: str, engine: str, signum: int, mode: str):
    script = tmp_path / "script.lua"
    script.write_text(SCRIPT)
    p = start([*LUAIPC, str(script), name, mode], engine)
    child = ready_pid(p)
    assert len(leftovers(name)) == 3
    return send_and_finish(p, child, signum, mode)


def check_status(signum: int, rc: int, err: str) -> None:
    if signum == signal.SIGINT:  # lua.c's "interrupted!", status 1
        assert rc == 1, err
        assert "interrupted!" in err
    else:                         # killed by the signal, nothing said
        assert rc == -signum, err
        assert err == ""


# -- luaipc: the matrix --------------------------------------------------------

@pytest.mark.parametrize("mode", ["block", "loop"])
def test_sigterm_cleans_up_on_every_engine(tmp_path, name, engine, mode):
    rc, err = run_matrix_case(tmp_path, name, engine, signal.SIGTERM, mode)
    check_status(signal.SIGTERM, rc, err)
    assert leftovers(name) == []


@pytest.mark.parametrize("mode", ["block", "loop"])
@pytest.mark.parametrize("signum", [signal.SIGHUP, signal.SIGQUIT, signal.SIGINT],
                         ids=["SIGHUP", "SIGQUIT", "SIGINT"])
@pytest.mark.parametrize("engine", TWO_ENGINES, indirect=True)
def test_each_signal_cleans_up(tmp_path, name, engine, signum, mode):
    rc, err = run_matrix_case(tmp_path, name, engine, signum, mode)
    check_status(signum, rc, err)
    assert leftovers(name) == []


@pytest.mark.parametrize("engine", THREE_ENGINES, indirect=True)
def test_sigterm_during_a_proc_wait(tmp_path, name, engine):
    rc, err = run_matrix_case(tmp_path, name, engine, signal.SIGTERM, "wait")
    check_status(signal.SIGTERM, rc, err)
    assert leftovers(name) == []


@pytest.mark.parametrize("engine", TWO_ENGINES, indirect=True)
def test_no_pcall_catches_sigterm(tmp_path, name, engine):
    rc, err = run_matrix_case(tmp_path, name, engine, signal.SIGTERM, "pcall")
    check_status(signal.SIGTERM, rc, err)
    assert leftovers(name) == []


@pytest.mark.parametrize("engine", TWO_ENGINES, indirect=True)
def test_a_signal_at_once_still_cleans_up(tmp_path, make_name, engine):
    # Sent as soon as the ready line comes: it often lands before sem_wait
    # blocks, where it interrupts nothing (the watcher must poke the main
    # thread).  Several rounds, so that window is hit.
    script = tmp_path / "script.lua"
    script.write_text(SCRIPT)
    for _ in range(6):
        name = make_name()
        p = start([*LUAIPC, str(script), name, "block"], engine)
        child = ready_pid(p)
        try:
            p.send_signal(signal.SIGTERM)
            rc, _, err = finish(p)
            assert pid_gone(child)
        finally:
            kill_quietly(child)
        check_status(signal.SIGTERM, rc, err)
        assert leftovers(name) == []


def test_proc_children_get_sigterm_before_sigkill(tmp_path, name):
    mark = tmp_path / "mark"
    code = JIT_OFF + f"""
    local proc = require "ipc.proc"
    local p = assert(proc.spawn("trap 'echo TERM > {mark}; exit 0' TERM; "
                                .. "sleep 1000 >/dev/null 2>&1 & wait", {{}}))
    print("ready", tostring(p)) io.stdout:flush()
    while true do end
    """
    p = start([*LUAIPC, "-e", textwrap.dedent(code)], DEFAULT_ENGINE)
    child = ready_pid(p)
    time.sleep(0.3)  # the shell has set its trap
    rc, err = send_and_finish(p, child, signal.SIGTERM, "loop")
    check_status(signal.SIGTERM, rc, err)
    assert mark.read_text() == "TERM\n"


def test_ignored_signal_stays_ignored(name):
    # nohup luaipc ...: SIGHUP is not luaipc's to handle.
    p = start([*LUAIPC, "-e", JIT_OFF + "print('ready 0') io.stdout:flush() while true do end"],
              DEFAULT_ENGINE, nohup=True)
    try:
        ready_pid(p)
        p.send_signal(signal.SIGHUP)
        assert still_blocked(p, 0.5)
        p.send_signal(signal.SIGTERM)
        rc, _, err = finish(p)
    finally:
        if p.poll() is None:
            p.kill()
    check_status(signal.SIGTERM, rc, err)


# -- luaipc: SIGPIPE -------------------------------------------------------------

def test_printing_into_head_ends_with_141(engine):
    # A real shell pipeline: head exits after one line, lua dies of SIGPIPE.
    cmd = (" ".join(LUAIPC) + " -e 'while true do print(\"y\") end' | head -1; "
           "echo \"${PIPESTATUS[0]}\"")
    r = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=60,
                       env=child_env(engine), stdin=subprocess.DEVNULL, check=False)
    assert r.stdout == "y\n141\n", r.stderr


@pytest.mark.parametrize("write", ["print('y')", "io.write('y\\n')"])
def test_writing_into_a_closed_pipe_dies_of_sigpipe_after_cleanup(name, engine, write):
    code = JIT_OFF + (f"local m = assert(require('ipc.shm').create('{name}', 4096)) "
                      f"print('ready 0') io.stdout:flush() while true do {write} end")
    p = start([*LUAIPC, "-e", code], engine)
    try:
        ready_pid(p)
        p.stdout.close()  # the reader goes away, as head does
        rc = p.wait(30)
        err = p.stderr.read()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        p.stderr.close()
    assert rc == -signal.SIGPIPE, err
    assert leftovers(name) == []


# A child that closes its stdin, stays a moment, and exits 0: everything
# written to it after that fails with EPIPE (and raises SIGPIPE).
CLOSES_STDIN = "exec 0<&-; sleep 0.2"


def test_proc_feeding_a_child_that_closed_stdin_gets_epipe_not_death(engine):
    code = f"""
    local proc = require "ipc.proc"
    local p = assert(proc.spawn("{CLOSES_STDIN}", {{ stdin = true }}))
    p:write(string.rep("x", 1048576))
    p:write(proc.EOF)
    print(p:wait())
    print("alive")
    """
    p = start([*LUAIPC, "-e", textwrap.dedent(code)], engine)
    rc, out, err = finish(p)
    assert (rc, out) == (0, "true\texit\t0\nalive\n"), err


def test_python_proc_feeding_with_sigpipe_at_default_gets_epipe_not_death():
    code = f"""
    import signal, ipc.proc
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # what CLI tools often do
    p = ipc.proc.spawn({CLOSES_STDIN!r}, stdin=True)
    p.write(b"x" * 1048576)
    p.close_stdin()
    print(p.wait(), signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL, flush=True)
    """
    p = start([sys.executable, "-c", textwrap.dedent(code)])
    rc, out, err = finish(p)
    assert (rc, out) == (0, "0 True\n"), err


# -- Python: ipc.cleanup_on_signals() ------------------------------------------------

PY_CHILD = """
import signal, sys, time
import ipc, ipc.mq, ipc.proc, ipc.sem, ipc.shm
name, mode, call = sys.argv[1:4]
if call == "on":
    assert ipc.cleanup_on_signals() == (signal.SIGTERM, signal.SIGHUP)
m = ipc.shm.create(name, 4096)
s = ipc.sem.open(name, 1)
s.acquire()
q = ipc.mq.open(name, 4, 64)
p = ipc.proc.spawn(["sleep", "1000"])
print("ready", p.pid, flush=True)
if mode == "sem":
    s.acquire()
elif mode == "mq":
    q.receive()
elif mode == "proc":
    p.wait()
else:
    time.sleep(1000)
"""


def run_python_case(name: str, mode: str, call: str, signum: int):
    p = start([sys.executable, "-c", PY_CHILD, name, mode, call])
    child = ready_pid(p)
    assert len(leftovers(name)) == 3
    return send_and_finish(p, child, signum, "block")


@pytest.mark.parametrize("mode", ["sem", "mq", "proc", "sleep"])
def test_cleanup_on_signals_sigterm(name, mode):
    rc, err = run_python_case(name, mode, "on", signal.SIGTERM)
    assert rc == 128 + signal.SIGTERM, err
    assert leftovers(name) == []


def test_cleanup_on_signals_sighup(name):
    rc, err = run_python_case(name, "sem", "on", signal.SIGHUP)
    assert rc == 128 + signal.SIGHUP, err
    assert leftovers(name) == []


def test_without_the_call_sigterm_kills_at_once_and_leaves_everything(name):
    # The documented default: Python dies of SIGTERM, no finalizer runs.
    p = start([sys.executable, "-c", PY_CHILD, name, "sem", "off"])
    child = ready_pid(p)
    try:
        assert still_blocked(p, 0.3)
        p.send_signal(signal.SIGTERM)
        assert p.wait(30) == -signal.SIGTERM
        assert len(leftovers(name)) == 3
        assert not pid_gone(child, within=0.5)  # orphaned, still running
    finally:
        kill_quietly(child)  # it holds our pipes open: finish() waits for it
        finish(p)


def test_cleanup_on_signals_gives_children_sigterm_first(tmp_path):
    mark = tmp_path / "mark"
    code = f"""
    import ipc, ipc.proc, time
    ipc.cleanup_on_signals()
    p = ipc.proc.spawn(["sh", "-c", "trap 'echo TERM > {mark}; exit 0' TERM; sleep 1000 & wait"])
    print("ready", p.pid, flush=True)
    time.sleep(1000)
    """
    p = start([sys.executable, "-c", textwrap.dedent(code)])
    child = ready_pid(p)
    time.sleep(0.3)  # the shell has set its trap
    rc, err = send_and_finish(p, child, signal.SIGTERM, "block")
    assert rc == 128 + signal.SIGTERM, err
    assert mark.read_text() == "TERM\n"


def test_cleanup_on_signals_leaves_ignored_and_foreign_handlers_alone():
    code = """
    import signal, ipc
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    first = ipc.cleanup_on_signals()
    print(first == (signal.SIGTERM,), ipc.cleanup_on_signals() == first,
          signal.getsignal(signal.SIGHUP) == signal.SIG_IGN)
    """
    p = start([sys.executable, "-c", textwrap.dedent(code)])
    rc, out, err = finish(p)
    assert (rc, out) == (0, "True True True\n"), err


def test_cleanup_on_signals_is_lazy_and_listed():
    code = "import ipc, sys; print('ipc._signals' in sys.modules, 'cleanup_on_signals' in dir(ipc))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.stdout == "False True\n", r.stderr

