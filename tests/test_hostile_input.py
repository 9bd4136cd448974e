"""Hostile input: every Lua function and method of every module, on every
engine, and every Python API function, class and method, called with random
types and values (hypothesis; see tests/stress/fuzz_child.py for the rules).

Each run is a child process, so a crash of the interpreter shows as a death
by signal, and a hang as a timeout (the child also has a per-example
watchdog that prints where it hung).  After the child has exited, every
name it used (all start with this session's prefix) is checked: no segment,
semaphore, queue or linda may be left behind, nor any anonymous linda the
child made (/dev/shm/linda.anon.<its pid>.*), nor any lane process it
started (their command lines name their pool's linda).

CI runs a few hundred examples per engine; LUAIPC_FUZZ_EXAMPLES=20000 runs
a long fuzz.  The figures (examples, calls, outcomes) are printed.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import posix_ipc
import pytest
from helpers.names import PREFIX, SHM_DIR

pytest.importorskip("hypothesis", reason="the fuzz needs hypothesis (pip install '.[test]')")

EXAMPLES = int(os.environ.get("LUAIPC_FUZZ_EXAMPLES", "300"))
CHILD = Path(__file__).parent / "stress" / "fuzz_child.py"
# generous: examples take milliseconds, but the machine is shared
TIMEOUT = 300 + EXAMPLES * 0.5

pytestmark = pytest.mark.timeout(TIMEOUT + 60)


def _left_behind(prefix: str, names: list[str]) -> list[str]:
    """The named objects of the run that still exist (and removes them)."""
    left = []
    for p in SHM_DIR.iterdir():
        if prefix in p.name:
            left.append(f"/dev/shm/{p.name}")
            p.unlink(missing_ok=True)
    for used in names:
        # a C call would see the name up to its first NUL byte (and
        # posix_ipc 1.3's constructors crash on a NUL: ipc._names refuses
        # such names before they get there)
        n = used.split("\0")[0]
        if not n or "/" in n:
            continue
        for kind, opener, unlink in (
                ("shm", posix_ipc.SharedMemory, posix_ipc.unlink_shared_memory),
                ("sem", posix_ipc.Semaphore, posix_ipc.unlink_semaphore),
                ("mq", posix_ipc.MessageQueue, posix_ipc.unlink_message_queue)):
            try:
                obj = opener("/" + n)
            except (posix_ipc.Error, ValueError, OSError):
                continue
            left.append(f"{kind} {n!r}")
            for close in ("close_fd", "close"):
                if hasattr(obj, close):
                    getattr(obj, close)()
            try:
                unlink("/" + n)
            except (posix_ipc.Error, ValueError, OSError):
                pass
    return left


def _lanes_left_behind(pid: int) -> list[str]:
    """The anonymous lindas and the lane processes of the child ``pid``
    that outlived it (and removes them)."""
    left = []
    for p in SHM_DIR.glob(f"linda.anon.{pid}.*"):
        left.append(f"/dev/shm/{p.name}")
        p.unlink(missing_ok=True)
    mark = f"anon.{pid}.".encode()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if mark in cmd and b"_serve" in cmd:
            shown = cmd.replace(b"\0", b" ")[:200]
            left.append(f"lane process {proc.name}: {shown!r}")
            try:
                os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                pass
    return left


def test_fuzz(face, tmp_path):
    target = face                                  # "python", or an engine's Lua face
    prefix = f"{PREFIX}fz{uuid.uuid4().hex[:4]}-"
    work = tmp_path / "work"
    work.mkdir()
    report_path = tmp_path / "report.json"
    mode, engine = ("py", "-") if target == "python" else ("lua", target)
    # (Popen, not run: the child's pid names its anonymous lindas)
    child = subprocess.Popen([sys.executable, str(CHILD), mode, engine, str(EXAMPLES), prefix,
                              str(work), str(report_path)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL,
                             cwd=work)
    try:
        stdout, stderr = child.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        child.kill()
        stdout, stderr = child.communicate()
        _lanes_left_behind(child.pid)
        pytest.fail(f"the fuzz hung (no result in {TIMEOUT} s): {stderr!r:.3000}")
    r = subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    left = _left_behind(prefix, report.get("names", [])) + _lanes_left_behind(child.pid)
    if r.returncode < 0:
        pytest.fail(f"the interpreter died of signal {signal.Signals(-r.returncode).name} "
                    f"after {report.get('examples', '?')} examples:\n{r.stderr[-5000:]}")
    assert r.returncode == 0 and report.get("ok"), r.stderr[-8000:]
    print(f"\nfuzz {target}: {report['examples']} random examples + {report['sweep']} sweep "
          f"inputs tried ({report['calls']} calls of {len(report['targets'])} "
          f"functions/methods, {report['seconds']} s); "
          f"outcomes {report['outcomes']}"
          + (f"; known issues {report['known']}" if report.get("known") else ""))
    assert report["examples"] >= EXAMPLES
    assert not report["missed"], f"never called: {report['missed']}"
    assert not report.get("children_left"), f"lane processes left: {report['children_left']}"
    assert not left, f"named objects left behind: {left}"
