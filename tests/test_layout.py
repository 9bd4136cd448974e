"""The shape of the package, read from its source (no process needed).

* Neither face of a module reaches into the other's privates: the Python
  API (``ipc/<m>/__init__.py``) and the Lua core (``ipc/<m>/lua.py``) meet
  on documented names and on the module's private OS layer
  (``ipc/<m>/_os.py``, ``ipc/proc/_pump.py``, ``ipc/_memfile.py``), whose
  own public names are the package's internal interface.
* FOREVER has one home (``ipc/_timeout.py``); the Lua faces take it from
  their core.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path

import ipc

PACKAGE = Path(ipc.__file__).resolve().parent
#: Every part of the package: the modules, the shared ipc/_*.py, the bridge
#: (ipc/lua) and the tools (ipc/cli, ipc/_scan).
FACES = ([PACKAGE / m for m in ipc.MODULES] + [PACKAGE / "lua", PACKAGE / "cli", PACKAGE / "_scan"]
         + sorted(PACKAGE.glob("_*.py")))


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _defined(tree: ast.AST) -> set[str]:
    """The private names a module defines: globals, functions, classes,
    class attributes, ``self._x`` and ``__slots__`` entries, imports."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for sub in (s for t in targets for s in ast.walk(t)):
                if isinstance(sub, ast.Name):
                    out.add(sub.id)
                elif (isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name)
                      and sub.value.id in ("self", "cls")):
                    out.add(sub.attr)
            if any(isinstance(t, ast.Name) and t.id == "__slots__" for t in targets):
                out.update(c.value for c in ast.walk(node.value)
                           if isinstance(c, ast.Constant) and isinstance(c.value, str))
    return {n for n in out if _private(n)}


def _sources() -> dict[str, tuple[Path, ast.Module]]:
    paths = sorted(PACKAGE.rglob("*.py"))
    return {_module(p): (p, ast.parse(p.read_text(), str(p))) for p in paths}


def _imported_from(module: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if path.name != "__init__.py":
        base.pop()
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def reach_ins() -> list[str]:
    """Every use, in a face, of a private name another ipc module defines:
    ``from m import _x`` (a private module is fine: it is a layer), and
    ``obj._x`` (obj not self/cls) where ``_x`` is not the face's own."""
    sources = _sources()
    defined = {m: _defined(tree) for m, (_, tree) in sources.items()}
    found = []
    for module, (path, tree) in sources.items():
        if not any(path == f or f in path.parents for f in FACES):
            continue
        where = path.relative_to(PACKAGE.parent)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                src = _imported_from(module, path, node)
                if src.split(".")[0] != "ipc":
                    continue
                found += [f"{where}:{node.lineno}: from {src} import {a.name}"
                          for a in node.names
                          if _private(a.name) and f"{src}.{a.name}" not in sources]
            elif isinstance(node, ast.Attribute) and _private(node.attr):
                if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                    continue
                if node.attr in defined[module]:
                    continue
                owners = sorted(m for m, names in defined.items() if node.attr in names)
                if owners:
                    found.append(f"{where}:{node.lineno}: .{node.attr} "
                                 f"(private to {', '.join(owners)})")
    return found


def test_no_face_reaches_into_anothers_privates():
    assert reach_ins() == []


def test_the_check_sees_a_reach_in(tmp_path, monkeypatch):
    # The check itself can fail: a copy of the package with the old
    # reach-in of the sem core (s._sem.release) is caught.
    copy = tmp_path / "ipc"
    for src in PACKAGE.rglob("*.py"):
        dst = copy / src.relative_to(PACKAGE)
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.write_text(src.read_text())
    core = copy / "sem" / "lua.py"
    core.write_text(core.read_text() + "\n\ndef _bad(s):\n    return s._sem.release\n")
    monkeypatch.setitem(globals(), "PACKAGE", copy)
    monkeypatch.setitem(globals(), "FACES",
                        [copy / m for m in ipc.MODULES] + sorted(copy.glob("_*.py")))
    line = len(core.read_text().splitlines())
    assert reach_ins() == [f"ipc/sem/lua.py:{line}: ._sem (private to ipc.sem)"]


def test_forever_has_one_home():
    defs = []
    for path in sorted(PACKAGE.rglob("*")):
        if path.suffix not in (".py", ".lua"):
            continue
        for line in path.read_text().splitlines():
            if re.search(r"\bFOREVER\s*=", line):
                defs.append((str(path.relative_to(PACKAGE)), line.strip()))
    own = [d for d in defs if d[0] == "_timeout.py"]
    assert len(own) == 1, defs
    faces = [d for d in defs if d[0] != "_timeout.py"]
    assert faces and all(d[0].endswith("face.lua") and re.search(r"= core\.FOREVER\b", d[1])
                         for d in faces), faces


def test_dir_of_each_module_is_its_api():
    """dir(ipc.sem) lists what a user may use, not os, posix_ipc or helpers."""
    import importlib

    import ipc
    for name in (*ipc.MODULES, "lua"):
        mod = importlib.import_module(f"ipc.{name}")
        assert dir(mod) == sorted(mod.__all__), name
        assert all(hasattr(mod, n) for n in mod.__all__), name


def test_every_public_callable_has_a_docstring():
    """help() shows the source comment above a function that has no
    docstring (a section banner, say): every public function, method and
    property of the API has its own."""
    import importlib
    import inspect

    import ipc
    from ipc._memfile import MemFile
    missing = []
    for name in (*ipc.MODULES, "lua"):
        mod = importlib.import_module(f"ipc.{name}")
        for n in mod.__all__:
            obj = getattr(mod, n)
            if callable(obj) and not inspect.getdoc(obj):
                missing.append(f"{name}.{n}")
            if inspect.isclass(obj):
                for cls in (obj, MemFile) if issubclass(obj, MemFile) else (obj,):
                    for attr, v in vars(cls).items():
                        f = v.fget if isinstance(v, property) else v
                        if not attr.startswith("_") and callable(f) and not f.__doc__:
                            missing.append(f"{name}.{n}.{attr}")
    assert not missing, missing
