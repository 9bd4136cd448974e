"""The examples the README sends new users to, run as they would run them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from helpers.children import run_luaipc
from helpers.names import our_anonymous_lindas

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_counter_lua_counts_exactly_across_processes(engine):
    before = set(os.listdir("/dev/shm"))
    r = run_luaipc([str(EXAMPLES / "counter.lua")], engine=engine)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert sorted(lines[:4]) == [f"worker {i} done" for i in range(1, 5)]
    assert lines[4].startswith("4 processes counted to 4000 (expected 4000)")
    assert {n for n in set(os.listdir("/dev/shm")) - before if "luaipc-demo" in n} == set()


def test_python_and_lua_take_turns(engine):
    before = set(os.listdir("/dev/shm"))
    r = subprocess.run([sys.executable, str(EXAMPLES / "python_and_lua.py")],
                       capture_output=True, text=True, timeout=120, check=False,
                       env={**os.environ, "LUAIPC_ENGINE": engine})
    assert r.returncode == 0, r.stderr
    assert "Python and Lua counted to 200 in 100 round trips" in r.stdout
    assert "saw the number reach 199" in r.stdout
    assert {n for n in set(os.listdir("/dev/shm")) - before if "luaipc-example" in n} == set()


def test_loop_supervisor_serves_and_supervises(engine, make_name):
    r = run_luaipc([str(EXAMPLES / "loop_supervisor.lua"), make_name()], engine=engine)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "12 jobs done, 0 workers restarted, sum of squares 650"


def test_lanes_primes_counts_in_parallel(engine):
    before = our_anonymous_lindas()
    r = run_luaipc([str(EXAMPLES / "lanes_primes.lua"), "100000", "4"], engine=engine,
                   timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 5
    assert sum(int(line.split()[1]) for line in lines[:4]) == 9592
    assert lines[4].startswith("9592 primes below 100000, counted by 4 lanes")
    assert our_anonymous_lindas() <= before      # its lindas went with it
