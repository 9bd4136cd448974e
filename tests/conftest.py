"""Shared fixtures: every engine, random names that are always removed,
and a runner for the luaipc interpreter as a real child process."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

# Every core function called from Lua, here and in every child, checks the
# crossing rule (ipc/lua/crossing.py); set before ipc.lua is imported.
os.environ["LUAIPC_CHECK_CROSSINGS"] = "1"

from ipc.lua import ENGINES, new_runtime  # noqa: E402

ALL_ENGINES = list(ENGINES)
#: Every name a test makes starts with this; the random part is this pytest
#: session's, so sessions running side by side never judge each other's names.
PREFIX = f"luaipct-{uuid.uuid4().hex[:6]}-"
SHM_DIR = Path("/dev/shm")
MQ_DIR = Path("/dev/mqueue")


def console_command(script: str, module: str) -> list[str]:
    """An installed console script: the one beside this Python, else on
    PATH, else ``python -m module``."""
    beside = Path(sys.executable).with_name(script)
    if beside.exists():
        return [str(beside)]
    found = shutil.which(script)
    return [found] if found else [sys.executable, "-m", module]


LUAIPC = console_command("luaipc", "ipc")


#: The unprivileged user the permission tests switch to.
NOBODY = 65534
ROOT = Path(__file__).resolve().parent.parent


def nobody_env(extra: dict | None = None) -> dict:
    """The environment for a child running as nobody: ours, less what
    points into root's venv or picks an engine, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("LUAIPC_ENGINE", "PYTHONPATH", "VIRTUAL_ENV")}
    env.update(extra or {})
    return env


def run_as_nobody(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run argv as nobody (uid/gid 65534, no supplementary groups), output as text."""
    # Python's own switch: setgroups([]) then setgid then setuid, in the
    # child before exec.  A uid change from 0 clears the capability sets.
    return subprocess.run(argv, user=NOBODY, group=NOBODY, extra_groups=[], cwd="/",
                          env=nobody_env(env), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL, check=False)


_NOBODY_PY: list | None = None


def nobody_python() -> tuple[str, dict]:
    """An interpreter the nobody user can run, with the env it needs.

    The venv's own python is tried first; where it cannot be reached (here
    it links into /root, which is 0700) the system interpreter of the same
    version is used with the venv's site-packages and this checkout on
    PYTHONPATH.  Skips if there is none.
    """
    global _NOBODY_PY
    if _NOBODY_PY is None:
        import site
        import sysconfig
        ver = f"{sys.version_info[0]}.{sys.version_info[1]}"
        paths = [str(ROOT), sysconfig.get_paths()["purelib"], *site.getsitepackages()]
        candidates = [(sys.executable, {})]
        for d in ("/usr/bin", "/usr/local/bin", "/bin"):
            candidates.append((f"{d}/python{ver}", {"PYTHONPATH": os.pathsep.join(paths)}))
        _NOBODY_PY = []
        for exe, env in candidates:
            try:
                r = run_as_nobody([exe, "-c", "import ipc.shm, ipc.sem, ipc.mq, lupa, psutil"],
                                  env)
            except OSError:
                continue
            if r.returncode == 0:
                _NOBODY_PY = [exe, env]
                break
    if not _NOBODY_PY:
        pytest.skip(f"no Python {sys.version_info[:2]} with the ipc package that the "
                    f"nobody user can run (the venv's interpreter is not reachable)")
    return _NOBODY_PY[0], dict(_NOBODY_PY[1])


@pytest.fixture(params=ALL_ENGINES)
def engine(request) -> str:
    """Parametrizes a test over all seven engines."""
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
        return qualified if engine.startswith("lua5.") and int(engine[5:]) >= 3 else "?"
    return name


def queue_exists(name: str) -> bool:
    """Whether the message queue "/name" exists (works without an mqueue
    mount, which these machines lack)."""
    import posix_ipc
    try:
        posix_ipc.MessageQueue("/" + name).close()
    except posix_ipc.ExistentialError:
        return False
    return True


def leftovers(name: str) -> list[str]:
    """What is left of a named shm, semaphore or queue called name."""
    found = [str(p) for p in (SHM_DIR / name, SHM_DIR / f"sem.{name}") if p.exists()]
    if queue_exists(name):
        found.append(f"mq /{name}")
    return found


def remove_named(name: str) -> None:
    import posix_ipc
    for p in (SHM_DIR / name, SHM_DIR / f"sem.{name}"):
        p.unlink(missing_ok=True)
    try:
        posix_ipc.unlink_message_queue("/" + name)
    except posix_ipc.ExistentialError:
        pass


#: Every name made in this session, for the final leftover check.
_MADE: list[str] = []


@pytest.fixture
def make_name():
    """Call it to get a fresh random name; all are removed after the test."""
    made: list[str] = []

    def make() -> str:
        n = PREFIX + uuid.uuid4().hex[:12]
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
    a message queue (checked by name: /dev/mqueue need not be mounted)."""
    yield
    left = [p for d in (SHM_DIR, MQ_DIR) if d.exists()
            for p in d.iterdir() if p.name.startswith((PREFIX, "sem." + PREFIX))]
    left += [f"mq /{n}" for n in _MADE if queue_exists(n)]
    for p in left:
        if isinstance(p, Path):
            p.unlink(missing_ok=True)
    for n in _MADE:
        remove_named(n)
    assert not left, f"named objects left behind by the suite: {left}"


def run_luaipc(args, *, engine: str | None = None, input: bytes | str | None = None,
               timeout: float = 60, env: dict | None = None, cwd=None,
               check: bool = False) -> subprocess.CompletedProcess:
    """Run the luaipc interpreter as a child process; output as text."""
    full_env = dict(os.environ)
    full_env.pop("LUAIPC_ENGINE", None)
    if env:
        full_env.update(env)
    if engine:
        full_env["LUAIPC_ENGINE"] = engine
    if isinstance(input, bytes):
        input = input.decode()
    return subprocess.run(LUAIPC + list(args), input=input, capture_output=True, text=True,
                          timeout=timeout, env=full_env, cwd=cwd, check=check,
                          stdin=None if input is not None else subprocess.DEVNULL)


@pytest.fixture
def luaipc():
    """The run_luaipc helper as a fixture."""
    return run_luaipc
