"""Child-process helpers shared by test_sem*, test_filelock* and test_counter_load*
(no tests here; named test_sem_* to stay within those files)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import LUAIPC

LUA_DIR = Path(__file__).parent / "lua"
ROOT = Path(__file__).resolve().parent.parent


def _env(engine: str | None) -> dict:
    env = dict(os.environ)
    env.pop("LUAIPC_ENGINE", None)
    if engine:
        env["LUAIPC_ENGINE"] = engine
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def spawn_lua(script: str, *args, engine: str | None = None, cwd=None) -> subprocess.Popen:
    """Start ``luaipc tests/lua/<script> args`` (text pipes)."""
    path = LUA_DIR / script
    return subprocess.Popen(LUAIPC + [str(path), *map(str, args)], env=_env(engine),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=cwd)


def spawn_py(code: str, *args, cwd=None) -> subprocess.Popen:
    """Start ``python -c code args`` (text pipes)."""
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], env=_env(None),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            stdin=subprocess.DEVNULL, cwd=cwd)


def wait_line(p: subprocess.Popen, expected: str = "ready", timeout: float = 30) -> str:
    """Read the child's next stdout line (it must be ``expected``)."""
    line = p.stdout.readline().strip()
    if line != expected:
        p.kill()
        out, err = p.communicate(timeout=timeout)
        raise AssertionError(f"child said {line!r}, not {expected!r}; stderr: {err}")
    return line


def still_blocked(p: subprocess.Popen, seconds: float = 0.3) -> bool:
    """True if the child has not finished after ``seconds``."""
    time.sleep(seconds)
    return p.poll() is None


def finish(p: subprocess.Popen, timeout: float = 20) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        raise AssertionError(f"child did not finish in {timeout}s; stderr: {err}")
    return p.returncode, out, err


def interrupt(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGINT)
