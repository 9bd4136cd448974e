"""Run the message-queue example: a Lua producer, a Lua consumer and a
Python consumer sharing the work.

    python examples/mq_demo.py [--count N] [--engine lua5.4] [--name NAME]

Starts ``luaipc mq_producer.lua``, waits until its queues exist, starts
``luaipc mq_consumer.lua`` and ``python mq_consumer.py``, and prints what
each said.  Exit status 0 when every job was done exactly once.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def luaipc_command() -> list[str]:
    """The luaipc script beside this Python, else on PATH, else python -m ipc."""
    script = Path(sys.executable).with_name("luaipc")
    if script.exists():
        return [str(script)]
    found = shutil.which("luaipc")
    return [found] if found else [sys.executable, "-m", "ipc"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=200, help="jobs to share (default 200)")
    ap.add_argument("--engine", help="Lua engine for the Lua processes (default lua5.4)")
    ap.add_argument("--name", default=f"luaipc-mqdemo-{os.getpid()}", help="queue name")
    args = ap.parse_args(argv)

    env = dict(os.environ)
    if args.engine:
        env["LUAIPC_ENGINE"] = args.engine
    luaipc = luaipc_command()
    pipes = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True, "env": env}
    producer = subprocess.Popen([*luaipc, str(HERE / "mq_producer.lua"), args.name,
                                 str(args.count), "2"], **pipes)
    first = producer.stdout.readline()
    if "ready" not in first:
        print(first, producer.communicate()[1], file=sys.stderr, end="")
        return 1
    print(first, end="")
    consumers = [
        subprocess.Popen([*luaipc, str(HERE / "mq_consumer.lua"), args.name, "lua"], **pipes),
        subprocess.Popen([sys.executable, str(HERE / "mq_consumer.py"), args.name, "python"],
                         **pipes),
    ]
    status = 0
    for p in [producer, *consumers]:
        try:
            out, err = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        print(out, end="")
        print(err, end="", file=sys.stderr)
        status = status or p.returncode
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main())
