"""``python -m bench``: run the cases, print the table, write the JSON."""
from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time

from .core import ENGINES, Scratch, Settings, measure

CASES = ("startup", "sem", "shm", "filelock", "mq", "proc", "loop", "linda", "lanes", "vs_c")


def _fmt(value, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "MB/s":
        return f"{value:,.0f} {unit}"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}" if value < 10 else f"{value:.1f} {unit}"


def machine() -> str:
    import lupa
    return (f"{os.cpu_count()}-core {platform.machine()}, {platform.system()} "
            f"{platform.release()}, Python {platform.python_version()}, lupa {lupa.__version__}")


def table(rows: list[dict], markdown: bool = False) -> str:
    head = ["case", "engine", "ours", "reference", "ref", "ratio", "goal"]
    lines = []
    for r in rows:
        if r["skipped"]:
            ratio, goal = "skipped", r["skipped"]
        else:
            ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else "-"
            goal = ""
            if r["goal"]:
                goal = f"{r['goal']} {'met' if r['met'] else 'MISSED'}"
        lines.append([r["case"], r["engine"], _fmt(r["ours"], r["unit"]),
                      r["reference_name"], _fmt(r["reference"], r["unit"]), ratio, goal])
    if markdown:
        out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        out += ["| " + " | ".join(x.replace("|", "\\|") for x in ln) + " |" for ln in lines]
        return "\n".join(out)
    widths = [max(len(h), *(len(ln[i]) for ln in lines)) if lines else len(h)
              for i, h in enumerate(head)]
    fmt = "  ".join(f"{{:{'>' if i in (2, 4) else '<'}{w}}}" for i, w in enumerate(widths))
    out = [fmt.format(*head), fmt.format(*("-" * w for w in widths))]
    out += [fmt.format(*ln) for ln in lines]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="fewer rounds, less data (under a minute)")
    mode.add_argument("--smoke", action="store_const", dest="mode", const="smoke",
                      help="one tiny round of every case (checks the bench runs)")
    ap.add_argument("--json", metavar="FILE", help="write the rows as a JSON list")
    ap.add_argument("--only", metavar="CASES", default=",".join(CASES),
                    help=f"comma-separated subset of {','.join(CASES)}")
    ap.add_argument("--engines",
                    help="comma-separated Lua engines, and 'python' for the Python API "
                    f"(default {','.join((*ENGINES, 'python'))}; vs_c adds lua5.3)")
    ap.add_argument("--reps", type=int, help="rounds per case (default by mode)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--c-luaipc", metavar="DIR",
                    help="the directory of a built C LuaIPC (ipc.so): vs_c runs the same "
                    "Lua scripts under --lua with it, beside luaipc")
    ap.add_argument("--lua", metavar="PATH", default="lua5.3",
                    help="the interpreter for the C LuaIPC (default lua5.3)")
    a = ap.parse_args(argv)
    st = Settings.for_mode(a.mode or "full")
    if a.reps:
        st.reps = a.reps
        st.startup_reps = max(a.reps, st.startup_reps)
    only = [c for c in a.only.split(",") if c]
    unknown = set(only) - set(CASES)
    if unknown:
        ap.error(f"unknown case(s) {', '.join(sorted(unknown))}; known: {', '.join(CASES)}")
    if a.engines is None:
        engines = [*ENGINES, "python"]
    else:
        engines = [e for e in a.engines.split(",") if e]
        st.side_engines = tuple(e for e in engines if e != "python")

    from ipc.lua import ENGINES as ALL_ENGINES, new_runtime
    bad = [e for e in engines if e != "python" and e not in ALL_ENGINES]
    if bad:
        ap.error(f"unknown engine(s) {', '.join(bad)}")
    if a.c_luaipc is not None:
        from .cases.vs_c import check_c_dir
        why = check_c_dir(a.c_luaipc, a.lua)
        if why:
            ap.error(why)
        st.c_luaipc = a.c_luaipc
    st.c_lua = a.lua

    def runtimes(engine: str):
        return None if engine == "python" else new_runtime(engine)

    print(f"luaipc bench ({st.mode}): {machine()}; load {os.getloadavg()[0]:.2f}", flush=True)
    scratch = Scratch()
    rows: list[dict] = []
    started = time.perf_counter()
    try:
        for name in CASES:
            if name not in only:
                continue
            mod = importlib.import_module(f"bench.cases.{name}")
            for make in mod.groups(st, engines, runtimes, scratch):
                group = make()
                new = measure(group, st.reps)
                rows += new
                for r in new:
                    print(table([r]).splitlines()[2], flush=True)
    finally:
        scratch.remove()
    elapsed = time.perf_counter() - started
    print(f"\n{len(rows)} rows in {elapsed:.0f} s; median of {st.reps} rounds "
          f"({st.startup_reps} for start-up); load {os.getloadavg()[0]:.2f}\n")
    print(table(rows, a.markdown))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
            f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
