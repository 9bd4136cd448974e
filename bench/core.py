"""The measuring machinery shared by every case (see bench/__init__.py).

A *group* is one case on one engine: a runner for ours and one runner per
reference, each a callable that does a fixed amount of work and returns
its figure (microseconds per operation, MB/s, milliseconds...).  ``measure``
runs the runners of a group in turn, round after round, reversing the order
every other round, and turns the medians into rows.
"""
from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

#: Names of every named object the bench makes (ipcctl and the test
#: session's leak check know the prefix "luaipcb-" is ours).
PREFIX = "luaipcb-"

ENGINES = ("lua5.4", "luajit2.1")


@dataclass
class Settings:
    """How much work each runner call does, per mode."""
    mode: str          # "smoke", "quick" or "full"
    reps: int          # rounds per group (medians over these)
    startup_reps: int  # rounds for the start-up case (one process per call)
    loop: int          # uncontended loop iterations (sem, shm small, filelock)
    mib_loops: int     # 1 MiB write+read pairs per call
    trips: int         # ping-pong round trips per call
    messages: int      # mq messages per call
    proc_mib: int      # MiB streamed per proc call
    # The side by side with the C LuaIPC (bench/cases/vs_c.py): the directory
    # of its built modules (None: not given), the Lua that loads them, and
    # our engines beside it.
    c_luaipc: str | None = None
    c_lua: str = "lua5.3"
    side_engines: tuple[str, ...] = ("lua5.3", "lua5.4", "luajit2.1")

    @classmethod
    def for_mode(cls, mode: str) -> Settings:
        if mode == "smoke":
            return cls(mode, reps=1, startup_reps=2, loop=2000, mib_loops=4, trips=300,
                       messages=2000, proc_mib=4)
        if mode == "quick":
            return cls(mode, reps=3, startup_reps=5, loop=50_000, mib_loops=30, trips=3000,
                       messages=20_000, proc_mib=32)
        return cls(mode, reps=7, startup_reps=21, loop=300_000, mib_loops=200, trips=20_000,
                   messages=100_000, proc_mib=256)


@dataclass
class Ref:
    name: str
    run: Callable[[], float] | None
    skipped: str = ""         # the reason, when run is None


@dataclass
class Group:
    case: str                 # e.g. "sem inc+dec"
    engine: str               # "lua5.4", "luajit2.1" or "python"
    unit: str                 # "us", "ms" or "MB/s"
    ours: Callable[[], float]
    refs: list[Ref]
    goal: tuple[str, float] | None = None   # (">=" | "<=", ratio) vs refs[0]
    note: str = ""
    reps: int | None = None
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    @property
    def higher_is_better(self) -> bool:
        return self.unit.endswith("/s")

    def close(self) -> None:
        for f in reversed(self.cleanup):
            try:
                f()
            except Exception as exc:  # noqa: BLE001  (cleanup must not hide the figures)
                print(f"bench: cleanup of {self.case} ({self.engine}) failed: {exc}",
                      file=sys.stderr)
        self.cleanup.clear()


def measure(group: Group, reps: int) -> list[dict]:
    """Run the group's runners interleaved ``reps`` times; one row per reference."""
    live = [r for r in group.refs if r.run is not None]
    runners = [("ours", group.ours)] + [(r.name, r.run) for r in live]
    samples: dict[str, list[float]] = {k: [] for k, _ in runners}
    try:
        for i in range(group.reps or reps):
            order = runners if i % 2 == 0 else runners[::-1]
            for key, run in order:
                samples[key].append(float(run()))
    finally:
        group.close()
    ours = statistics.median(samples["ours"])
    rows = []
    for ref in group.refs:
        row = {
            "case": group.case, "engine": group.engine, "unit": group.unit,
            "better": "higher" if group.higher_is_better else "lower",
            "ours": ours, "reference_name": ref.name,
            "reference": None, "ratio": None,
            "ours_samples": samples["ours"], "reference_samples": [],
            "goal": None, "met": None, "note": group.note, "skipped": ref.skipped or None,
        }
        if ref.run is not None:
            value = statistics.median(samples[ref.name])
            row["reference"] = value
            row["reference_samples"] = samples[ref.name]
            row["ratio"] = ours / value if value else None
            if group.goal is not None and ref is group.refs[0] and row["ratio"] is not None:
                op, target = group.goal
                row["goal"] = f"{op} {target:g}x"
                row["met"] = row["ratio"] >= target if op == ">=" else row["ratio"] <= target
        rows.append(row)
    return rows


def fresh() -> str:
    """A random name for a semaphore, shared memory or queue."""
    return PREFIX + uuid.uuid4().hex[:12]


def per_op_us(fn: Callable[[int], object], n: int) -> Callable[[], float]:
    """A runner: time ``fn(n)``, give microseconds per iteration."""
    def run() -> float:
        t = time.perf_counter()
        fn(n)
        return (time.perf_counter() - t) / n * 1e6
    return run


def luaipc_command() -> list[str]:
    """How to start the interpreter: the script beside this Python, else
    the one on PATH, else ``python -m ipc``."""
    script = Path(sys.executable).with_name("luaipc")
    if script.exists():
        return [str(script)]
    found = shutil.which("luaipc")
    return [found] if found else [sys.executable, "-m", "ipc"]


def lua_env(engine: str) -> dict:
    return dict(os.environ, LUAIPC_ENGINE=engine)


class Scratch:
    """A temporary directory for scripts and files of one bench run."""

    def __init__(self) -> None:
        self.path = Path(tempfile.mkdtemp(prefix="luaipc-bench-"))

    def write(self, name: str, text: str) -> str:
        p = self.path / name
        p.write_text(text)
        return str(p)

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def first_to_last_us(cmds: dict, args: list[str], count: int) -> float:
    """Microseconds per message between a receiver's ``first`` and ``last``
    lines: ``cmds`` maps ``"receive"`` and ``"send"`` to (argv, env), both
    started with ``args``; start-up is left out of the figure.  The
    children are reaped (killed if still running) whatever happens."""
    import subprocess
    procs = []
    try:
        (rcmd, renv), (scmd, senv) = cmds["receive"], cmds["send"]
        receiver = subprocess.Popen(rcmd + args, env=renv, stdout=subprocess.PIPE, text=True)
        procs.append(receiver)
        procs.append(subprocess.Popen(scmd + args, env=senv))
        if receiver.stdout.readline().strip() != "first":
            raise RuntimeError("the receiver failed")
        t0 = time.perf_counter()
        if receiver.stdout.readline().strip() != "last":
            raise RuntimeError("the receiver failed")
        elapsed = time.perf_counter() - t0
        for p in procs:
            if p.wait(120):
                raise RuntimeError("a child failed")
        return elapsed / (count - 1) * 1e6
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()
