"""Other users and hostile names.

* Segments, semaphores and queues are created 0600 (whatever the umask), so
  another user can neither attach nor open them: ``nil, "Permission
  denied", 13`` from Lua, ``PermissionError`` from Python.  Tested for real:
  the test process (root) makes the objects, a child that has dropped to
  ``nobody`` (uid/gid 65534, no supplementary groups, and -- checked -- no
  capabilities left, so no CAP_DAC_OVERRIDE) tries, from Python and from a
  ``luaipc`` child on every engine.
* Names that try to escape (``../x``, ``a/b``, NUL bytes, over-long) are
  refused before anything touches the OS: nothing appears in /dev/shm, in
  /dev, in the working directory, nor as a queue.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import posix_ipc
import pytest
from helpers.names import PREFIX, SHM_DIR, remove_named
from helpers.nobody import IS_ROOT, NOBODY, nobody_env, nobody_python, run_as_nobody

import ipc.mq
import ipc.sem
import ipc.shm

pytestmark = pytest.mark.timeout(120)

needs_root = pytest.mark.skipif(
    not IS_ROOT, reason="needs root: the test switches a child to another uid (nobody) "
                        "to see that it is refused; an ordinary user cannot switch uid")


@pytest.fixture
def objects(make_name):
    """A segment, a semaphore and a queue made by this (root) process."""
    names = {k: make_name() for k in ("shm", "sem", "mq")}
    old = os.umask(0)  # the mode must not depend on the umask
    try:
        h = ipc.shm.create(names["shm"], 4096)
        s = ipc.sem.open(names["sem"], 1)
        q = ipc.mq.open(names["mq"], 4, 64)
    finally:
        os.umask(old)
    h.write(b"secret")
    q.send(b"secret")
    yield names
    h.close(), s.close(), q.close()


def _mqueue_mount() -> Path | None:
    """Where an mqueue filesystem is mounted (/proc/self/mounts), or None.
    A /dev/mqueue directory with nothing mounted on it holds no queues."""
    with open("/proc/self/mounts", encoding="utf-8", errors="surrogateescape") as f:
        points = [line.split()[1] for line in f if line.split()[2:3] == ["mqueue"]]
    return Path(points[-1].replace("\\040", " ")) if points else None


def _queue_mode(name: str, tmp_path: Path) -> int | None:
    """The permission bits of the queue /name, read in an mqueue filesystem:
    the one mounted, else one root mounts in a private mount namespace."""
    mount = _mqueue_mount()
    if mount is not None:
        return (mount / name).stat().st_mode & 0o7777
    if not IS_ROOT or not shutil.which("unshare"):
        return None
    r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                        'mount -t mqueue none "$0" && stat -c %a "$0/$1"', str(tmp_path), name],
                       capture_output=True, text=True, timeout=30, check=False)
    assert r.returncode == 0, r.stderr
    return int(r.stdout, 8)


def test_created_0600_whatever_the_umask(objects, tmp_path):
    assert (SHM_DIR / objects["shm"]).stat().st_mode & 0o7777 == 0o600
    assert (SHM_DIR / f"sem.{objects['sem']}").stat().st_mode & 0o7777 == 0o600
    mode = _queue_mode(objects["mq"], tmp_path)
    if mode is not None:  # else no way to see a queue's mode here
        assert mode == 0o600


def _as_nobody(argv: list[str], env: dict | None = None) -> subprocess.CompletedProcess:
    """Run ``python argv...`` as nobody (argv[0] "python" or "luaipc")."""
    exe, py_env = nobody_python()
    py_env.update(env or {})
    head = [exe] if argv[0] == "python" else [exe, "-m", "ipc"]
    return run_as_nobody(head + argv[1:], py_env)


PY_NOBODY = r"""
import json, os, sys
status = open("/proc/self/status").read()
caps = {l.split(":")[0]: int(l.split()[1], 16) for l in status.splitlines() if l.startswith("Cap")}
assert os.getuid() == os.geteuid() == 65534 and os.getgid() == 65534, os.getuid()
assert caps["CapEff"] == 0, caps       # no CAP_DAC_OVERRIDE: a real other user
import ipc.mq, ipc.sem, ipc.shm
shm, sem, mq = sys.argv[1:4]
out = {}
def attempt(key, f, *a):
    try:
        f(*a)
        out[key] = "allowed"
    except Exception as e:
        out[key] = [type(e).__name__, isinstance(e, PermissionError), getattr(e, "errno", None)]
attempt("shm.attach", ipc.shm.attach, shm)
attempt("sem.open", ipc.sem.open, sem)
attempt("mq.open", ipc.mq.open, mq)
attempt("shm.unlink", ipc.shm.unlink, shm)
attempt("sem.unlink", ipc.sem.unlink, sem)
attempt("mq.unlink", ipc.mq.unlink, mq)
attempt("shm.create", ipc.shm.create, shm, 16)
print(json.dumps(out))
"""


@needs_root
def test_other_user_cannot_attach_from_python(objects):
    r = _as_nobody(["python", "-c", PY_NOBODY, objects["shm"], objects["sem"],
                    objects["mq"]])
    assert r.returncode == 0, r.stderr
    got = json.loads(r.stdout)
    denied = ["PermissionDenied", True, errno.EACCES]
    for key in ("shm.attach", "sem.open", "mq.open"):
        assert got[key] == denied, (key, got)
    # /dev/shm is sticky: nobody cannot remove root's names either
    assert got["shm.unlink"][1:] == [True, errno.EPERM] or got["shm.unlink"] == denied
    assert got["sem.unlink"][1:] == [True, errno.EPERM] or got["sem.unlink"] == denied
    assert got["mq.unlink"][1] is True, got
    assert got["shm.create"] == ["ExistsError", False, errno.EEXIST]
    # and everything is still there, untouched
    with ipc.shm.attach(objects["shm"]) as h:
        assert h.read(6) == b"secret"
    with ipc.mq.open(objects["mq"]) as q:
        assert q.current_messages == 1
    s = ipc.sem.open(objects["sem"])
    assert s.value == 1
    s.close()


LUA_NOBODY = r"""
local shm, sem, mq = require "ipc.shm", require "ipc.sem", require "ipc.mq"
local names = { shm = os.getenv("SHM"), sem = os.getenv("SEM"), mq = os.getenv("MQ") }
local function show(key, h, msg, code)
  print(key, h == nil and "nil" or type(h), tostring(msg), tostring(code))
end
show("shm.attach", shm.attach(names.shm))
show("sem.open", sem.open(names.sem))
show("mq.open", mq.open(names.mq))
show("shm.create", shm.create(names.shm, 16))
show("sem.create", sem.open(names.sem, 1))
"""


@needs_root
def test_other_user_cannot_attach_from_lua(objects, engine):
    r = _as_nobody(["luaipc", "-e", LUA_NOBODY],
                   env={"LUAIPC_ENGINE": engine, "SHM": objects["shm"], "SEM": objects["sem"],
                        "MQ": objects["mq"]})
    assert r.returncode == 0, r.stderr
    got = {line.split("\t")[0]: line.split("\t")[1:] for line in r.stdout.splitlines()}
    for key in ("shm.attach", "sem.open", "mq.open"):
        assert got[key] == ["nil", "Permission denied", "13"], (key, got)
    assert got["shm.create"] == ["nil", "File exists", "17"]
    assert got["sem.create"] == ["nil", "File exists", "17"]
    with ipc.shm.attach(objects["shm"]) as h:
        assert h.read(6) == b"secret"


@needs_root
def test_object_of_nobody_is_closed_to_another_user(make_name):
    """The other direction: an unprivileged user's object is 0600 too, and a
    third uid (no capabilities) is refused."""
    name = make_name()
    make = ("import ipc.shm, sys; h = ipc.shm.create(sys.argv[1], 64); h.unlink = None; "
            "import os; os._exit(0)")  # exit without the creator's unlink
    r = _as_nobody(["python", "-c", make, name])
    assert r.returncode == 0, r.stderr
    st = (SHM_DIR / name).stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (NOBODY, 0o600)
    probe = ("import ipc.shm, sys\n"
             "try:\n    ipc.shm.attach(sys.argv[1])\nexcept PermissionError as e:\n"
             "    print('denied', e.errno)\n")
    exe, env = nobody_python()
    r = subprocess.run([exe, "-c", probe, name], user=NOBODY - 1, group=NOBODY - 1,
                       extra_groups=[], cwd="/", capture_output=True, text=True, timeout=60,
                       env=nobody_env(env), check=False)
    assert r.stdout.strip() == f"denied {errno.EACCES}", r.stderr


# --------------------------------------------------------------------------
# Names that try to escape


def _token() -> str:
    return PREFIX + "esc" + uuid.uuid4().hex[:8]


def _bad_names(token: str) -> list[tuple[str, int]]:
    return [
        (f"../{token}", errno.EINVAL),
        (f"../../tmp/{token}", errno.EINVAL),
        (f"{token}/x", errno.EINVAL),
        (f"a/{token}", errno.EINVAL),
        (f"/{token}", errno.EINVAL),
        (f"{token}\0tail", errno.EINVAL),
        (f"\0{token}", errno.EINVAL),
        ("", errno.EINVAL),
        (".", errno.EINVAL),
        ("..", errno.EINVAL),
        (token + "x" * 300, errno.ENAMETOOLONG),
    ]


def _traces(token: str, cwd: Path) -> list[Path]:
    """Every file or directory whose name contains the token, anywhere a
    bad name could have put one."""
    places = [SHM_DIR, Path("/dev"), Path("/tmp"), cwd, Path("/dev/mqueue")]
    found = []
    for d in places:
        if d.is_dir():
            found += [p for p in d.iterdir() if token in p.name or (p.name == "a"
                      and d == SHM_DIR)]
    # a queue is invisible without an mqueue mount: ask the kernel by name
    for name in (token, token + "tail", "x" + token):
        try:
            q = posix_ipc.MessageQueue("/" + name)
            q.close()
            found.append(Path("mqueue:/" + name))
        except posix_ipc.ExistentialError:
            pass
    return found


PY_OPS = {
    "shm.create": lambda n: ipc.shm.create(n, 64),
    "shm.attach": ipc.shm.attach,
    "shm.unlink": ipc.shm.unlink,
    "sem.create": lambda n: ipc.sem.open(n, 1),
    "sem.open": ipc.sem.open,
    "sem.unlink": ipc.sem.unlink,
    "sem.reset": lambda n: ipc.sem.reset(n, 1),
    "mq.create": lambda n: ipc.mq.open(n, 4, 64),
    "mq.open": ipc.mq.open,
    "mq.unlink": ipc.mq.unlink,
}


@pytest.mark.parametrize("as_bytes", [False, True], ids=["str", "bytes"])
def test_python_refuses_escaping_names(as_bytes, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    token = _token()
    for bad, code in _bad_names(token):
        arg = bad.encode() if as_bytes else bad
        for op, f in PY_OPS.items():
            with pytest.raises(OSError) as info:
                f(arg)
            assert info.value.errno == code, (op, bad, info.value)
    assert _traces(token, tmp_path) == []


LUA_OPS = """
local shm, sem, mq = require "ipc.shm", require "ipc.sem", require "ipc.mq"
return {
  function(n) return shm.create(n, 64) end,
  function(n) return shm.attach(n) end,
  function(n) return sem.open(n, 1) end,
  function(n) return sem.open(n) end,
  function(n) return mq.open(n, 4, 64) end,
  function(n) return mq.open(n) end,
}
"""


def test_lua_refuses_escaping_names(lua, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    token = _token()
    ops = lua.execute(LUA_OPS)
    for bad, code in _bad_names(token):
        for i in range(1, len(ops) + 1):
            got = ops[i](bad.encode())
            assert got == (None, os.strerror(code).encode(), code), (i, bad, got)
    assert _traces(token, tmp_path) == []


@pytest.mark.parametrize(("kind", "limit"), [("shm", 255), ("sem", 251), ("mq", 255)])
def test_longest_name_works_one_more_is_refused(kind, limit, make_name):
    name = make_name()
    longest = name + "x" * (limit - len(name))
    create = {"shm": lambda n: ipc.shm.create(n, 64),
              "sem": lambda n: ipc.sem.open(n, 1),
              "mq": lambda n: ipc.mq.open(n, 4, 64)}[kind]
    try:
        h = create(longest)
        h.close()  # the creator's close removes it
        with pytest.raises(OSError) as info:
            create(longest + "x")
        assert info.value.errno == errno.ENAMETOOLONG
    finally:
        remove_named(longest)
    assert not list(SHM_DIR.glob(name + "*")) and not list(SHM_DIR.glob(f"sem.{name}*"))
