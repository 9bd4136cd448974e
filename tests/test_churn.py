"""Churn: a million mixed luaipc calls per engine, every answer checked,
with Python objects made, dropped and collected all the time (the wrong-
object hazard of lupa, ipc/lua/crossing.py).  Short in CI;
``LUAIPC_CHURN_CALLS=1000000`` for the long run."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers.children import run_luaipc
from helpers.names import PREFIX, SHM_DIR

CHURN = Path(__file__).parent / "lua" / "churn" / "churn.lua"
CALLS = int(os.environ.get("LUAIPC_CHURN_CALLS", "40000"))

pytestmark = pytest.mark.stress


def ours_left(prefix: str) -> list[str]:
    return [p.name for p in SHM_DIR.iterdir() if prefix in p.name]


def test_churn_every_answer_right(engine, tmp_path):
    prefix = f"{PREFIX}churn-{engine}-"
    r = run_luaipc([str(CHURN), str(CALLS), prefix, str(tmp_path)], engine=engine,
                   timeout=60 + CALLS / 2000)
    assert r.returncode == 0, r.stderr
    words = r.stdout.split()
    assert words[0] == "calls" and int(words[1]) >= CALLS, r.stdout
    assert words[2:] == ["wrong", "0"], r.stdout + r.stderr
    assert ours_left(prefix) == []


# Issue 11's repro, on the engine it was seen on.
@pytest.mark.parametrize("engine", ["luajit2.1"], indirect=True)
def test_three_requires_never_get_a_wrong_function(engine, tmp_path):
    """Issue 11's repro: 38% of runs failed on luajit2.1 before the fix."""
    failures = []
    for i in range(200):
        r = run_luaipc([str(CHURN), "0", f"{PREFIX}three{i}-", str(tmp_path)],
                       engine=engine, timeout=30)
        if r.returncode != 0 or r.stdout.strip() != "calls 0 wrong 0":
            failures.append(r.stderr.strip() or r.stdout.strip())
    assert failures == [], f"{len(failures)}/200 runs failed: {failures[:3]}"
