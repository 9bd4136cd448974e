"""Fixtures: every engine (and every face: Python and each engine), random
names that are always removed, and a runner for the luaipc interpreter.
The helpers themselves live in tests/helpers/ (whose import turns on the
crossing checker, LUAIPC_CHECK_CROSSINGS, for the suite and its children)."""
from __future__ import annotations

from pathlib import Path

import pytest
from helpers.children import run_luaipc
from helpers.lua import ENGINES, lua_version, skip_if_missing
from helpers.names import (
    MQ_DIR,
    PREFIX,
    SHM_DIR,
    new_name,
    our_anonymous_lindas,
    queue_exists,
    remove_named,
)

from ipc.lua import new_runtime


@pytest.fixture(params=list(ENGINES))
def engine(request) -> str:
    """Parametrizes a test over every engine; skips one this lupa lacks.  A
    test that runs on a subset parametrizes ``engine`` indirectly
    (``@pytest.mark.parametrize("engine", TWO_ENGINES, indirect=True)``)."""
    skip_if_missing(request.param)
    return request.param


@pytest.fixture(params=["python", *ENGINES])
def face(request) -> str:
    """"python" (the Python API), then each engine (its Lua face); skips an
    engine this lupa lacks."""
    if request.param != "python":
        skip_if_missing(request.param)
    return request.param


@pytest.fixture
def lua(engine):
    """A fresh LuaRuntime of the engine with the ipc modules installed."""
    return new_runtime(engine)


@pytest.fixture
def unnamed(engine):
    """What luaL_argerror calls a module function whose call site gives it no
    name (``pcall(shm.create)``): ``unnamed("ipc.shm.create")`` is that name
    on 5.3+, which look the function up in package.loaded; 5.1 and LuaJIT
    say '?', and so does 5.2 for a module that is not a global (it looks in
    the globals)."""
    def name(qualified: str) -> str:
        return qualified if lua_version(engine) >= (5, 3) else "?"
    return name


#: Every name made in this session, for the final leftover check.
_MADE: list[str] = []


@pytest.fixture
def make_name():
    """Call it to get a fresh random name; all are removed after the test."""
    made: list[str] = []

    def make() -> str:
        n = new_name()
        made.append(n)
        _MADE.append(n)
        return n

    yield make
    for n in made:
        remove_named(n)


@pytest.fixture
def name(make_name) -> str:
    """One fresh random name for shm/sem/mq, removed after the test."""
    return make_name()


@pytest.fixture(autouse=True, scope="session")
def nothing_left_behind():
    """After the suite, nothing of this session is left in /dev/shm, nor as
    a message queue (checked by name: /dev/mqueue need not be mounted),
    nor an anonymous linda (ipc.linda names those itself) made meanwhile."""
    anonymous_before = set(SHM_DIR.glob("linda.anon.*"))
    yield
    left = [p for d in (SHM_DIR, MQ_DIR) if d.exists()
            for p in d.iterdir()
            if p.name.startswith((PREFIX, "sem." + PREFIX, "linda." + PREFIX))]
    left += sorted(our_anonymous_lindas() - anonymous_before)
    left += [f"mq /{n}" for n in _MADE if queue_exists(n)]
    for p in left:
        if isinstance(p, Path):
            p.unlink(missing_ok=True)
    for n in _MADE:
        remove_named(n)
    assert not left, f"named objects left behind by the suite: {left}"


@pytest.fixture
def luaipc():
    """The run_luaipc helper as a fixture."""
    return run_luaipc
