"""The message-queue example runs: a Lua producer, a Lua consumer and a
Python consumer share the jobs, each done exactly once (every engine)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import posix_ipc

DEMO = Path(__file__).resolve().parent.parent / "examples" / "mq_demo.py"
COUNT = 60


def test_the_example_shares_the_work(engine, make_name):
    name = make_name()
    try:
        res = subprocess.run([sys.executable, str(DEMO), "--count", str(COUNT),
                              "--engine", engine, "--name", name],
                             capture_output=True, text=True, timeout=100, check=False)
    finally:
        for n in (name, name + "-results"):
            try:
                posix_ipc.unlink_message_queue("/" + n)
            except posix_ipc.ExistentialError:
                pass
            else:
                raise AssertionError(f"the example left /{n} behind")
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    assert f"producer: {COUNT} jobs, each done exactly once" in res.stdout
    assert {"producer: hello lua", "producer: hello python"} <= set(lines)
    did = {}
    for line in lines:
        if " did:" in line:
            who, jobs = line.split(" did:")
            did[who] = [int(j) for j in jobs.split()]
    assert set(did) == {"lua", "python"}
    everything = did["lua"] + did["python"]
    assert sorted(everything) == list(range(1, COUNT + 1))   # each exactly once
