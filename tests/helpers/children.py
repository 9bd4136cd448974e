"""Child processes: ``luaipc`` scripts, Python programs and ``ipcctl``, as
real processes with text pipes; reading their lines with a real timeout;
waiting for their end.

Every child runs this checkout's ``ipc`` (``PYTHONPATH``) and none inherits
``LUAIPC_ENGINE`` unless a test gives it an engine.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import psutil

__all__ = [
    "IPCCTL",
    "LUAIPC",
    "LUA_DIR",
    "ROOT",
    "child_env",
    "console_command",
    "ctrl_c",
    "finish",
    "interrupt",
    "pid_gone",
    "read_line",
    "run_luaipc",
    "run_py",
    "spawn_lua",
    "spawn_luaipc",
    "spawn_py",
    "still_blocked",
    "wait_line",
]

#: The checkout: its ipc is the one every child imports.
ROOT = Path(__file__).resolve().parent.parent.parent
#: The Lua scripts the tests run as children (tests/lua/<module>/...).
LUA_DIR = ROOT / "tests" / "lua"


def console_command(script: str, module: str) -> list[str]:
    """An installed console script: the one beside this Python, else on
    PATH, else ``python -m module``."""
    beside = Path(sys.executable).with_name(script)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


LUAIPC = console_command("luaipc", "ipc")
IPCCTL = console_command("ipcctl", "ipc.cli.ipcctl")


def child_env(engine: str | None = None, extra: dict | None = None) -> dict:
    """Our environment for a child: this checkout first on PYTHONPATH, the
    engine only if one is given, then ``extra``."""
    env = dict(os.environ)
    env.pop("LUAIPC_ENGINE", None)
    if engine:
        env["LUAIPC_ENGINE"] = engine
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(extra or {})
    return env


def spawn_luaipc(args, *, engine: str | None = None, cwd=None) -> subprocess.Popen:
    """Start ``luaipc args`` (text pipes)."""
    return subprocess.Popen(LUAIPC + [str(a) for a in args], env=child_env(engine),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=cwd)


def spawn_lua(script: str, *args, engine: str | None = None, cwd=None) -> subprocess.Popen:
    """Start ``luaipc tests/lua/<script> args`` (text pipes)."""
    return spawn_luaipc([LUA_DIR / script, *args], engine=engine, cwd=cwd)


def spawn_py(code: str, *args, cwd=None) -> subprocess.Popen:
    """Start ``python -c code args`` (text pipes)."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=cwd)


def run_luaipc(args, *, engine: str | None = None, input: bytes | str | None = None,
               timeout: float = 60, env: dict | None = None, cwd=None,
               check: bool = False) -> subprocess.CompletedProcess:
    """Run the luaipc interpreter to its end; output as text."""
    if isinstance(input, bytes):
        input = input.decode()
    return subprocess.run(LUAIPC + list(args), input=input, capture_output=True, text=True,
                          timeout=timeout, env=child_env(engine, env), cwd=cwd, check=check,
                          stdin=None if input is not None else subprocess.DEVNULL)


def run_py(code: str, *args, timeout: float = 60) -> subprocess.CompletedProcess:
    """Run ``python -c code args`` (code dedented) to its end; output as text."""
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=child_env(),
                          stdin=subprocess.DEVNULL, check=False)


def read_line(p: subprocess.Popen, timeout: float = 30):
    """The child's next stdout line, stripped (str or bytes, as its pipe);
    empty at EOF.  A child that says nothing for ``timeout`` seconds is
    killed, and the test fails with its stderr."""
    got: list = []
    # A thread, because readline() cannot time out, and select() on the pipe
    # would not see what the buffered reader already holds.
    reader = threading.Thread(target=lambda: got.append(p.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    if reader.is_alive():
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"the child said nothing in {timeout} s; stderr: {err}")
    return got[0].strip()


def wait_line(p: subprocess.Popen, expected: str = "ready", timeout: float = 30) -> str:
    """Read the child's next stdout line, which must be ``expected``."""
    line = read_line(p, timeout)
    if line != expected:
        p.kill()
        _, err = p.communicate()
        raise AssertionError(f"child said {line!r}, not {expected!r}; stderr: {err}")
    return line


def still_blocked(p: subprocess.Popen, seconds: float = 0.3) -> bool:
    """True if the child has not ended within ``seconds`` (it blocks, as it
    should)."""
    try:
        p.wait(seconds)
    except subprocess.TimeoutExpired:
        return True
    return False


def finish(p: subprocess.Popen, timeout: float = 20) -> tuple[int, str, str]:
    """Wait for the child's end: (returncode, stdout, stderr).  One that does
    not end within ``timeout`` is killed, and the test fails."""
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"child did not finish in {timeout} s; stderr: {err}") from None
    return p.returncode, out, err


def interrupt(p: subprocess.Popen) -> None:
    """Ctrl-C, as a terminal sends it."""
    p.send_signal(signal.SIGINT)


def ctrl_c(p: subprocess.Popen, blocked: float = 0.2, timeout: float = 30) -> tuple[str, str]:
    """Ctrl-C a child that is blocked in a call, and check that it ended as
    lua.c ends on Ctrl-C: a non-zero status and "interrupted!" on stderr.

    The child must still block for ``blocked`` seconds first (0: no check),
    so the signal lands inside the call, not before it.  Returns its
    ``(stdout, stderr)``.  A child that outlives the check is killed.
    """
    try:
        if blocked:
            assert still_blocked(p, blocked), "the child did not block"
        interrupt(p)
        code, out, err = finish(p, timeout)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert code != 0, f"Ctrl-C: status 0; stderr: {err}"
    assert "interrupted!" in err, err
    return out, err


def pid_gone(pid: int, within: float = 10.0) -> bool:
    """True once ``pid`` no longer runs within ``within`` seconds: reaped, or
    a zombie someone else reaps (reparented: not ours to wait for)."""
    deadline = time.monotonic() + within
    while True:
        try:
            p = psutil.Process(pid)
            if p.status() == psutil.STATUS_ZOMBIE and p.ppid() != os.getpid():
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


def inside_wait(thread: threading.Thread) -> bool:
    """Whether the thread's stack is in ipc's blocking ``_wait`` now (so a
    test acts only once a thread really waits)."""
    frame = sys._current_frames().get(thread.ident)
    while frame is not None:
        if frame.f_code.co_name == "_wait" and "/ipc/" in frame.f_code.co_filename:
            return True
        frame = frame.f_back
    return False
