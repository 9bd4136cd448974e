"""Smoke test of the benchmarks: ``python -m bench --smoke --json FILE``
runs every case once on tiny settings and writes rows of the documented
shape.  It checks the schema and that every case is present, never a
timing (DESIGN.md: speed goals live in bench/, not in tests)."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

LUA = ("lua5.4", "luajit2.1")
ALL = (*LUA, "python")
SIDE = ("lua5.3", "lua5.4", "luajit2.1")      # our engines beside the C LuaIPC
C_REF = "C LuaIPC (lua5.3)"
NOT_GIVEN = "C LuaIPC: not given (--c-luaipc DIR)"
VS_C = [f"vs C: {c}" for c in (
    "sem inc+dec", "shm seek+write 8+seek+read 8", "shm 1 MiB write+read",
    "filelock lock+unlock", "strfile 1 MiB lines()", "proc 4 MiB through a callback",
    "start-up -e ''", "start-up -e 'require \"ipc.shm\"'")]

#: case -> engines it runs on -> the references each row is measured against
EXPECTED = {
    **{f"start-up luaipc -e '{code}'": {
        e: ["python -c 'import lupa.lua54, posix_ipc'" if e == "lua5.4" else
            "python -c 'import lupa.luajit21, posix_ipc'", "python -c pass"] for e in LUA}
       for code in ("", 'require "ipc.shm"')},
    "sem inc+dec": {**{e: ["raw posix_ipc (Python)"] for e in LUA},
                    "python": ["raw posix_ipc (Python)", "multiprocessing.Semaphore"]},
    "sem ping-pong": {**{e: ["raw posix_ipc (Python)"] for e in LUA},
                      "python": ["raw posix_ipc (Python)", "multiprocessing.Semaphore (fork)"]},
    "shm seek+write 8+seek+read 8": {
        **{e: ["raw mmap slices (Python)"] for e in LUA},
        "python": ["raw mmap slices (Python)", "multiprocessing.shared_memory"]},
    "shm 1 MiB write+read": {
        **{e: ["raw mmap slices (Python)"] for e in LUA},
        "python": ["raw mmap slices (Python)", "multiprocessing.shared_memory"]},
    "filelock lock+unlock": {e: ["raw fcntl.lockf (Python)", "portalocker.lock/unlock",
                                 "filelock.FileLock"] for e in ALL},
    "mq 100 B, two processes": {e: ["raw posix_ipc (Python)"] for e in ALL},
    "mq 100 B send+receive, one process": {e: ["raw posix_ipc (Python)"] for e in ALL},
    "proc stdout callback": {e: ["subprocess, 64 KiB reads"] for e in ALL},
    "proc stdout callback, varied data": {e: ["subprocess, 64 KiB reads"] for e in ALL},
    "proc 4 children x 0.2 s, fed and drained": {
        **{e: ["proc, h:wait() on each in turn"] for e in LUA},
        "python": ["subprocess.communicate, a thread each", "proc, wait() on each in turn"]},
    "loop sem ping-pong": {e: ["the same, blocking (no loop)"] for e in LUA},
    "loop wake 50 tasks": {e: ["blocking inc+dec (no loop)"] for e in LUA},
    "loop asyncio 100 receives on 10 queues": {"python": ["blocking receive, queue by queue"]},
    **{case: {e: [C_REF] for e in SIDE} for case in VS_C},
    **{case: {e: ["raw posix_ipc mq + msgpack (Python)"] for e in ALL} for case in (
        "linda send+receive {1,'two',x=3.5}, one process",
        "linda {1,'two',x=3.5}, two processes")},
    "linda 1 MiB string send+receive": {e: ["raw 1 MiB shm write+read (Python)"] for e in ALL},
    "lane spawn+join, empty function": {e: ["luaipc -e '' start-up"] for e in LUA},
    "200 empty lanes on lanes.pool(2)": {
        e: ["multiprocessing.Pool(2).map, chunksize 1"] for e in LUA},
    "4 CPU-bound lanes vs the same work in one lane": {
        e: ["one lane doing all four shares"] for e in LUA},
}

UNITS = {"us": "lower", "ms": "lower", "s": "lower", "MB/s": "higher", "M lines/s": "higher",
         "lanes/s": "higher"}


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "out.json"
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ratio" in proc.stdout  # the printed table's header
    return json.loads(out.read_text())


def _positive(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x > 0


def test_schema(rows):
    assert isinstance(rows, list) and rows
    for r in rows:
        assert isinstance(r, dict)
        for key in ("case", "engine", "ours", "reference", "reference_name", "unit", "ratio"):
            assert key in r, (key, r)
        assert isinstance(r["case"], str) and isinstance(r["reference_name"], str)
        assert r["engine"] in (*ALL, *SIDE)
        assert r["unit"] in UNITS and r["better"] == UNITS[r["unit"]]
        assert _positive(r["ours"]), r
        if r["skipped"]:
            # only an optional reference may be skipped, and it says why
            if r["reference_name"] == C_REF:
                assert r["skipped"] == NOT_GIVEN
            else:
                assert r["reference_name"] == "filelock.FileLock"
                assert "not installed" in r["skipped"]
            assert r["reference"] is None and r["ratio"] is None
            continue
        assert _positive(r["reference"]) and _positive(r["ratio"]), r
        assert r["ratio"] == pytest.approx(r["ours"] / r["reference"])
        if r["goal"] is not None:
            assert isinstance(r["met"], bool)


def test_every_case_present(rows):
    got: dict = {}
    for r in rows:
        got.setdefault(r["case"], {}).setdefault(r["engine"], []).append(r["reference_name"])
    assert got == EXPECTED


def test_goals_marked(rows):
    with_goal = {(r["case"], r["engine"]) for r in rows if r["goal"]}
    assert ("sem ping-pong", "lua5.4") in with_goal
    assert ("sem inc+dec", "luajit2.1") in with_goal
    assert ("shm 1 MiB write+read", "lua5.4") in with_goal
    assert ("proc stdout callback", "python") in with_goal
    assert ("proc 4 children x 0.2 s, fed and drained", "python") in with_goal
    assert ("start-up luaipc -e ''", "lua5.4") in with_goal


def test_filelock_row_matches_installation(rows):
    try:
        import filelock  # noqa: F401
        installed = True
    except ImportError:
        installed = False
    fl = [r for r in rows if r["reference_name"] == "filelock.FileLock"]
    assert fl and all(bool(r["skipped"]) != installed for r in fl)


def test_proc_row_says_how_much(rows):
    for r in rows:
        if r["case"].startswith("proc stdout callback"):
            assert "MiB per run" in r["note"] and "smoke mode" in r["note"]


def test_nothing_left_in_dev_shm(rows):
    left = [n for n in os.listdir("/dev/shm") if "luaipcb-" in n]
    assert not left


def test_unknown_case_is_a_usage_error():
    proc = subprocess.run([sys.executable, "-m", "bench", "--only", "nope"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 2 and "unknown case" in proc.stderr


def _bench(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_c_luaipc_dir_is_checked(tmp_path):
    proc = _bench("--c-luaipc", str(tmp_path / "nope"))
    assert proc.returncode == 2 and "not a directory" in proc.stderr
    proc = _bench("--c-luaipc", str(tmp_path))
    assert proc.returncode == 2 and "neither ipc.so nor ipc/*.so" in proc.stderr
    (tmp_path / "ipc.so").write_bytes(b"")
    proc = _bench("--c-luaipc", str(tmp_path), "--lua", str(tmp_path / "no-lua"))
    assert proc.returncode == 2 and "no such interpreter" in proc.stderr


# A stand-in for lua5.3 + the C LuaIPC: it logs how it was started and
# speaks the scripts' protocol (go, then done and a check value), so the
# test sees the commands the option builds without any C code.
FAKE_LUA = """#!/bin/sh
printf '%s\\n' "$LUA_CPATH|$LUA_CPATH_5_3|$*" >> "$FAKE_LOG"
[ "$1" = -e ] && exit 0
head -n 1 "$1" | grep -q '^local n = tonumber' || exit 3
echo go; echo "done $2"
"""


def test_c_luaipc_commands(tmp_path):
    cdir = tmp_path / "c"
    cdir.mkdir()
    (cdir / "ipc.so").write_bytes(b"")  # never loaded: the fake lua is no Lua
    lua = tmp_path / "fake-lua5.3"
    lua.write_text(FAKE_LUA)
    lua.chmod(0o755)
    log, out = tmp_path / "log", tmp_path / "out.json"
    env = dict(os.environ, FAKE_LOG=str(log), LUA_CPATH_5_3="/elsewhere/?.so",
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-m", "bench", "--smoke", "--only", "vs_c",
                           "--engines", "lua5.4", "--c-luaipc", str(cdir), "--lua", str(lua),
                           "--json", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads(out.read_text())
    assert sorted(r["case"] for r in rows) == sorted(VS_C)
    for r in rows:
        assert r["engine"] == "lua5.4" and r["reference_name"] == "C LuaIPC (fake-lua5.3)"
        assert not r["skipped"] and _positive(r["reference"]) and _positive(r["ratio"]), r
    calls = [ln.split("|") for ln in log.read_text().splitlines()]
    # DIR/?.so first in LUA_CPATH, and the versioned variable that would win is gone
    assert {(c[0].split(";")[0], c[1]) for c in calls} == {(f"{cdir}/?.so", "")}
    argvs = [c[2] for c in calls]
    assert "-e " in argvs and "-e require \"ipc.shm\"" in argvs
    scripts = {a.split()[0] for a in argvs if not a.startswith("-e")}
    assert len(scripts) == 6 and all(s.endswith(".lua") for s in scripts)
