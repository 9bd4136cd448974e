"""Every code block of README.md runs as written, so the README can only
show what works.

- ```python blocks run with Python in a child process, ```lua blocks with
  ``luaipc`` on every engine.
- A block with a line ``-- in another process:`` (``# in another
  process:`` in Python) runs in two processes at once: the first runs up to
  that line and waits; the second runs the lines after it (up to ``-- back
  in the first process:``, if there is one) to its end; then the first
  goes on with the rest.
- The README's names ("demo", "jobs", ...) become random names of this test
  session, files land in a temporary directory, and every name is checked
  to be gone afterwards: a block that leaves an object behind fails.
- ```sh blocks are not run: they install the package, which CI's own run of
  exactly those commands covers (.ci/run).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from helpers.children import LUAIPC, child_env
from helpers.names import leftovers, new_name, remove_named

README = Path(__file__).resolve().parent.parent / "README.md"
NAMES = ("demo", "jobs", "left", "right")       # the object names the README uses
FENCE = re.compile(r"^( *)```(\w*)\n(.*?)^\1```", re.S | re.M)
OTHER = {"lua": "-- in another process:", "python": "# in another process:"}
BACK = {"lua": "-- back in the first process:", "python": "# back in the first process:"}
WAIT = {"lua": 'io.write("ready\\n") io.flush() io.read()\n',
        "python": 'import sys; print("ready", flush=True); sys.stdin.readline()\n'}


def blocks() -> list[tuple[int, str, str]]:
    text = README.read_text()
    out = []
    for m in FENCE.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        out.append((line, m.group(2), textwrap.dedent(m.group(3))))
    return out


def _ids(kind: str) -> list:
    return [pytest.param(code, id=f"line{line}") for line, k, code in blocks() if k == kind]


def test_every_block_is_covered():
    kinds = {k for _, k, _ in blocks()}
    assert kinds <= {"lua", "python", "sh"}, kinds
    assert _ids("lua") and _ids("python")


def _prepare(code: str, tmp_path: Path) -> tuple[str, list[str]]:
    names = []
    for n in NAMES:
        if f'"{n}"' in code:
            fresh = new_name()
            names.append(fresh)
            code = code.replace(f'"{n}"', f'"{fresh}"')
    code = code.replace('"/tmp/', f'"{tmp_path}/')
    return code, names


def _command(kind: str, path: Path, engine: str | None) -> list[str]:
    return [*LUAIPC, str(path)] if kind == "lua" else [sys.executable, str(path)]


def _run(kind: str, code: str, tmp_path: Path, engine: str | None) -> None:
    code, names = _prepare(code, tmp_path)
    ext = ".lua" if kind == "lua" else ".py"
    env = child_env(engine)
    try:
        if OTHER[kind] not in code:
            script = tmp_path / f"block{ext}"
            script.write_text(code)
            r = subprocess.run(_command(kind, script, engine), cwd=tmp_path, env=env,
                               capture_output=True, text=True, timeout=60,
                               stdin=subprocess.DEVNULL, check=False)
            assert r.returncode == 0, r.stdout + r.stderr
        else:
            first, rest = code.split(OTHER[kind], 1)
            other, _, back = rest.partition(BACK[kind])
            a, b = tmp_path / f"first{ext}", tmp_path / f"other{ext}"
            a.write_text(first + WAIT[kind] + back)
            b.write_text(other)
            pa = subprocess.Popen(_command(kind, a, engine), cwd=tmp_path, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
            try:
                assert pa.stdout is not None and pa.stdin is not None
                line = pa.stdout.readline()
                if line != "ready\n":
                    out, err = pa.communicate(timeout=30)
                    pytest.fail(f"first process: {line}{out}{err}")
                r = subprocess.run(_command(kind, b, engine), cwd=tmp_path, env=env,
                                   capture_output=True, text=True, timeout=60,
                                   stdin=subprocess.DEVNULL, check=False)
                assert r.returncode == 0, r.stdout + r.stderr
                out, err = pa.communicate("\n", timeout=60)
                assert pa.returncode == 0, out + err
            finally:
                if pa.poll() is None:
                    pa.kill()
                    pa.wait()
        for n in names:
            assert leftovers(n) == [], (n, leftovers(n))
    finally:
        for n in names:
            remove_named(n)


@pytest.mark.parametrize("code", _ids("python"))
def test_python_block(code, tmp_path):
    _run("python", code, tmp_path, None)


@pytest.mark.parametrize("code", _ids("lua"))
def test_lua_block(code, tmp_path, engine):
    if "child.lua" in code:
        (tmp_path / "child.lua").write_text('print("child ran")\n')
    _run("lua", code, tmp_path, engine)


def test_python_blocks_pass_mypy_strict(tmp_path):
    """What the README shows a Python user type-checks as their code would:
    ``mypy --strict`` on the installed package (its py.typed), from a
    directory with none of this repository's configuration or sources, as
    .ci/run checks examples/typed_usage.py."""
    pytest.importorskip("mypy.api", reason="mypy comes with the lint extra")
    files = []
    for i, (_, kind, code) in enumerate(blocks()):
        if kind == "python":
            f = tmp_path / f"readme_block_{i}.py"
            f.write_text(code.replace(OTHER["python"], "").replace(BACK["python"], ""))
            files.append(f.name)
    import ipc
    env = child_env()
    env.pop("PYTHONPATH", None)   # the installed package, not this checkout's sources
    root = Path(__file__).resolve().parent.parent
    if Path(ipc.__file__).resolve().is_relative_to(root):
        # An editable install (a development checkout): mypy cannot follow
        # its import hook, so it gets the sources and their stubs by path.
        env["MYPYPATH"] = os.pathsep.join([str(root), str(root / "stubs")])
    r = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--config-file=",
                        "--cache-dir=/dev/null", "--no-error-summary", *files],
                       cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr
