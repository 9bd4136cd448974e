"""ipcctl as a real command, against real named objects held (or left
behind) by real child processes, some of them killed with SIGKILL.

Objects are made with posix_ipc directly (what ipc.shm/sem/mq do
underneath), so these tests do not depend on those modules.  Every test
names its objects "luaipct-<random>-<kind>" and cleans with that exact
pattern: other people's tests running at the same time on this machine
have objects that are briefly unused, and a bare `ipcctl clean` would
take them.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import posix_ipc
import pytest
from helpers.children import IPCCTL
from helpers.names import PREFIX, SHM_DIR, new_name, remove_named
from helpers.nobody import AS_NOBODY, IS_ROOT, NOBODY, nobody_env, nobody_python

pytestmark = pytest.mark.timeout(120)

needs_root = pytest.mark.skipif(
    not IS_ROOT or not shutil.which("setpriv") or not shutil.which("unshare"),
    reason="needs root (to run processes as nobody and mount in a private namespace)")


def _global_mqueue_mounted() -> bool:
    from ipc._scan import mqueue_dir
    return mqueue_dir() is not None


_private_mount_ok: bool | None = None


def _can_mount_private_mqueue(tmp: Path) -> bool:
    """Can we mount an mqueue fs in a private mount namespace (root)?"""
    global _private_mount_ok
    if _private_mount_ok is None:
        unshare = shutil.which("unshare")
        _private_mount_ok = bool(unshare) and subprocess.run(
            [unshare, "-m", "--propagation", "private", "sh", "-c",
             'mount -t mqueue none "$0"', str(tmp)],
            capture_output=True, timeout=30, check=False).returncode == 0
    return _private_mount_ok


def ipcctl(*args: str | bytes, mq_dir: Path | None = None, hidepid: bool = False,
           prefix: list[str] | None = None, as_nobody: bool = False, text: bool = True,
           check: bool = False) -> subprocess.CompletedProcess:
    """Run ipcctl.

    mq_dir: in a private mount namespace where an mqueue filesystem is
    mounted on mq_dir (so the machine's mounts stay as they are); hidepid:
    there, /proc is a new one mounted hidepid=invisible; prefix: the
    command runs under it (setpriv...); as_nobody: as the user nobody,
    with a Python nobody can run.
    """
    cmd: list = IPCCTL + list(args)
    env = None
    if as_nobody:
        exe, extra = nobody_python()
        cmd, env = [*AS_NOBODY, exe, "-m", "ipc.cli.ipcctl", *args], nobody_env(extra)
    if prefix:
        cmd = prefix + cmd
    mounts = []
    if mq_dir is not None:
        mounts.append(f"mount -t mqueue none {shlex.quote(str(mq_dir))}")
    if hidepid:
        mounts.append("mount -t proc -o hidepid=invisible proc /proc")
    if mounts:
        cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               " && ".join(mounts) + ' && exec "$@"', "sh", *cmd]
    r = subprocess.run(cmd, capture_output=True, text=text, timeout=60, env=env,
                       cwd="/" if as_nobody else None, stdin=subprocess.DEVNULL, check=False)
    if check:
        assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    return r


def ls_json(*args: str, **kw) -> list[dict]:
    r = ipcctl("ls", "--json", *args, check=True, **kw)
    return json.loads(r.stdout)


def by_kind(objs: list[dict]) -> dict[str, dict]:
    return {o["kind"]: o for o in objs}


@pytest.fixture
def objnames():
    """A fresh base name; call it for {"shm": base-shm, "sem": ..., "mq": ...}.

    Everything of every kind under those names is unlinked afterwards, even
    when the test fails (conftest's cleanup cannot remove queues when no
    mqueue filesystem is mounted).
    """
    made: list[dict[str, str]] = []

    def make() -> tuple[str, dict[str, str]]:
        base = new_name()
        names = {k: f"{base}-{k}" for k in ("shm", "sem", "mq")}
        made.append(names)
        return base, names

    yield make
    for names in made:
        for n in names.values():
            remove_named(n)


@pytest.fixture
def children():
    """Popen objects started by the test; killed and reaped afterwards."""
    procs: list[subprocess.Popen] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait(timeout=30)


# A child that creates (or opens) a segment, a semaphore and a queue.  The
# segment is mapped (Python's mmap keeps a dup of the descriptor, so it is
# "mapped+open"); the semaphore is taken (so a crash leaves it at 0); a message is
# left in the queue.  "hold" keeps them until stdin closes or SIGKILL.
CHILD = r"""
import mmap, sys, posix_ipc
how, then, shm, sem, mq = sys.argv[1:6]
flags = posix_ipc.O_CREX if how == "create" else 0
m = posix_ipc.SharedMemory("/" + shm, flags, mode=0o600, size=4096 if flags else 0)
buf = mmap.mmap(m.fd, m.size)
m.close_fd()
buf[:5] = b"hello"
s = posix_ipc.Semaphore("/" + sem, flags, mode=0o600, initial_value=1)
if how == "create":
    s.acquire(0)
q = posix_ipc.MessageQueue("/" + mq, flags, mode=0o600, max_messages=4, max_message_size=64)
if how == "create":
    q.send(b"left behind")
print("ready", flush=True)
if then == "hold":
    sys.stdin.read()
"""


def spawn(children, how: str, then: str, names: dict[str, str]) -> subprocess.Popen:
    p = subprocess.Popen([sys.executable, "-c", CHILD, how, then,
                          names["shm"], names["sem"], names["mq"]],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    children.append(p)
    line = p.stdout.readline()
    assert line == "ready\n", f"child failed: {line!r}"
    return p


def create_again(names: dict[str, str]) -> None:
    """A fresh exclusive create with the same names succeeds (then unlink)."""
    m = posix_ipc.SharedMemory("/" + names["shm"], posix_ipc.O_CREX, mode=0o600, size=16)
    m.close_fd()
    m.unlink()
    s = posix_ipc.Semaphore("/" + names["sem"], posix_ipc.O_CREX, mode=0o600)
    s.unlink()
    s.close()
    q = posix_ipc.MessageQueue("/" + names["mq"], posix_ipc.O_CREX, mode=0o600)
    q.unlink()
    q.close()


def mq_mount(tmp_path: Path) -> Path | None:
    """Where ipcctl should see an mqueue fs: None = the machine's own mount,
    a directory = mount privately there; skip if neither is possible."""
    if _global_mqueue_mounted():
        return None
    d = tmp_path / "mqueue"
    d.mkdir()
    if not _can_mount_private_mqueue(d):
        pytest.skip("no mqueue filesystem mounted and cannot mount one privately "
                    "(needs root): orphaned queues are invisible")
    return d


@pytest.fixture
def public_tmp():
    """A directory the nobody user can reach (pytest's tmp_path is 0700)."""
    d = Path(tempfile.mkdtemp(prefix="luaipct-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------
# The crash-recovery story


def test_crash_recovery_shm_sem_mq(objnames, children, tmp_path):
    """SIGKILL the creator -> ls says orphaned -> clean removes -> create works."""
    base, names = objnames()
    mqd = mq_mount(tmp_path)
    child = spawn(children, "create", "hold", names)

    # While it lives: in use, by that very process (the semaphore through
    # glibc's temporary file, which only the inode ties to the name).
    objs = by_kind(ls_json(base + "-*", mq_dir=mqd))
    assert set(objs) == {"shm", "sem", "mq"}
    for kind, o in objs.items():
        assert o["name"] == names[kind]
        assert o["state"] == "in-use", o
        assert [p["pid"] for p in o["processes"]] == [child.pid], o
        assert o["owner"] and o["mode"] == "0600"
    assert objs["shm"]["size"] == 4096
    assert "mapped" in objs["shm"]["processes"][0]["how"]  # (mmap keeps a dup of the fd)
    assert objs["sem"]["value"] == 0
    assert objs["mq"]["size"] == len(b"left behind")
    # clean leaves an object in use alone
    r = ipcctl("clean", base + "-*", mq_dir=mqd, check=True)
    assert "nothing to clean" in r.stdout
    assert len(ls_json(base + "-*", mq_dir=mqd)) == 3

    child.send_signal(signal.SIGKILL)
    assert child.wait(timeout=30) == -signal.SIGKILL

    # The crash left all three behind: a fresh exclusive create fails...
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.SharedMemory("/" + names["shm"], posix_ipc.O_CREX, mode=0o600, size=16)
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.Semaphore("/" + names["sem"], posix_ipc.O_CREX, mode=0o600)
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/" + names["mq"], posix_ipc.O_CREX, mode=0o600)

    # ...ls shows them as orphaned, in the table and in JSON
    objs = by_kind(ls_json(base + "-*", mq_dir=mqd))
    assert {k: o["state"] for k, o in objs.items()} == dict.fromkeys(names, "orphaned")
    assert all(o["processes"] == [] for o in objs.values())
    assert objs["sem"]["value"] == 0  # the dead process still "holds" it
    table = ipcctl("ls", base + "-*", mq_dir=mqd, check=True).stdout
    for kind in names:
        line = next(row for row in table.splitlines() if names[kind] in row)
        assert line.split()[0] == kind and "orphaned" in line

    # dry run says what it would do and does nothing
    r = ipcctl("clean", "--dry-run", base + "-*", mq_dir=mqd, check=True)
    for kind, n in names.items():
        assert f"would remove {kind} {n}" in r.stdout
    assert len(ls_json(base + "-*", mq_dir=mqd)) == 3

    # clean removes them and says so
    r = ipcctl("clean", base + "-*", mq_dir=mqd, check=True)
    for kind, n in names.items():
        assert f"removed {kind} {n}" in r.stdout
    assert "3 objects removed" in r.stdout
    assert ls_json(base + "-*", mq_dir=mqd) == []
    assert not (SHM_DIR / names["shm"]).exists()
    assert not (SHM_DIR / f"sem.{names['sem']}").exists()

    create_again(names)


def test_clean_leaves_objects_a_live_process_holds(objnames, children, tmp_path):
    """Creator exits; a second process opens the objects: clean must not touch
    them while it lives, and removes them once it is killed."""
    base, names = objnames()
    base2, orphans = objnames()
    mqd = mq_mount(tmp_path)
    creator = spawn(children, "create", "exit", names)
    assert creator.wait(timeout=30) == 0
    spawn(children, "create", "exit", orphans)
    holder = spawn(children, "open", "hold", names)  # maps/opens by name

    both = PREFIX + "*"  # the glob covers both sets; clean must sort them out
    pattern_objs = [o for o in ls_json(both, mq_dir=mqd) if o["name"].startswith((base, base2))]
    states = {o["name"]: o["state"] for o in pattern_objs}
    assert states == {**dict.fromkeys(names.values(), "in-use"),
                      **dict.fromkeys(orphans.values(), "orphaned")}

    r = ipcctl("clean", "--json", base + "*", mq_dir=mqd, check=True)
    assert json.loads(r.stdout) == []
    r = ipcctl("clean", "--json", base2 + "*", mq_dir=mqd, check=True)
    removed = json.loads(r.stdout)
    assert sorted((o["kind"], o["name"], o["removed"], o["error"]) for o in removed) == \
        sorted((k, n, True, None) for k, n in orphans.items())

    objs = by_kind(ls_json(base + "-*", mq_dir=mqd))
    assert {k: o["state"] for k, o in objs.items()} == dict.fromkeys(names, "in-use")
    assert all([p["pid"] for p in o["processes"]] == [holder.pid] for o in objs.values())

    holder.kill()
    holder.wait(timeout=30)
    r = ipcctl("clean", base + "-*", mq_dir=mqd, check=True)
    assert "3 objects removed" in r.stdout
    create_again(names)


def test_queues_without_mqueue_mount(objnames, children):
    """With no mqueue fs mounted, a queue is seen while a process holds it,
    and ls says why orphaned ones are not; rm removes it all the same."""
    if _global_mqueue_mounted():
        pytest.skip("an mqueue filesystem is mounted on this machine")
    base, names = objnames()
    child = spawn(children, "create", "hold", names)
    r = ipcctl("ls", "--json", base + "-*", check=True)
    objs = by_kind(json.loads(r.stdout))
    assert objs["mq"]["state"] == "in-use" and objs["mq"]["path"] is None
    assert objs["mq"]["processes"][0]["pid"] == child.pid
    child.kill()
    child.wait(timeout=30)
    r = ipcctl("ls", "--json", base + "-*", check=True)
    assert sorted(o["kind"] for o in json.loads(r.stdout)) == ["sem", "shm"]
    assert "mount -t mqueue" in r.stderr
    r = ipcctl("rm", "mq", names["mq"])
    assert r.returncode == 0, r.stderr
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.unlink_message_queue("/" + names["mq"])


# --------------------------------------------------------------------------
# rm


def test_rm_each_kind_and_missing_names(objnames, children):
    base, names = objnames()
    spawn(children, "create", "exit", names).wait(timeout=30)
    missing = base + "-nothing"
    r = ipcctl("rm", "shm", names["shm"], missing)
    assert r.returncode == 1
    assert f"shm '{missing}': No such file or directory" in r.stderr
    assert not (SHM_DIR / names["shm"]).exists()  # the good one went anyway
    r = ipcctl("rm", "-v", "sem", names["sem"])
    assert r.returncode == 0 and f"removed sem {names['sem']}" in r.stdout
    assert not (SHM_DIR / f"sem.{names['sem']}").exists()
    r = ipcctl("rm", "mq", names["mq"])
    assert r.returncode == 0, r.stderr
    with pytest.raises(posix_ipc.ExistentialError):
        posix_ipc.MessageQueue("/" + names["mq"])
    r = ipcctl("rm", "mq", names["mq"])
    assert r.returncode == 1 and "No such file or directory" in r.stderr


@pytest.mark.parametrize("bad", ["../x", "a/b", "/x", "", ".", "..", "x" * 300])
def test_rm_refuses_escaping_names_before_touching_anything(bad, objnames, children, tmp_path):
    base, names = objnames()
    spawn(children, "create", "exit", names).wait(timeout=30)
    # a file a name like ../../<tmp>/victim would reach from /dev/shm
    victim = tmp_path / "victim"
    victim.write_text("keep me")
    escape = os.path.relpath(victim, SHM_DIR)
    for kind in ("shm", "sem", "mq"):
        r = ipcctl("rm", kind, names[kind], bad, escape)
        assert r.returncode == 2, (kind, r.stderr)
        assert "nothing removed" in r.stderr
        assert repr(escape) in r.stderr
    assert victim.read_text() == "keep me"
    assert len(ls_json(base + "-*")) >= 2  # shm and sem still there (mq: if mounted)
    assert (SHM_DIR / names["shm"]).exists()
    assert (SHM_DIR / f"sem.{names['sem']}").exists()
    posix_ipc.MessageQueue("/" + names["mq"]).close()  # still there


def test_usage_errors_exit_2():
    assert ipcctl().returncode == 2
    assert ipcctl("rm", "pipe", "x").returncode == 2
    assert ipcctl("rm", "shm").returncode == 2
    assert ipcctl("frobnicate").returncode == 2


# --------------------------------------------------------------------------
# ls output


def test_ls_table_is_aligned_and_json_keys_are_stable(objnames, children):
    base, names = objnames()
    spawn(children, "create", "hold", names)
    objs = ls_json(base + "-*")
    keys = {"kind", "name", "name_hex", "path", "path_hex", "size", "uid", "owner", "mode",
            "state", "processes", "unknown_processes", "value"}
    assert objs and all(set(o) == keys for o in objs)
    assert all(set(p) == {"pid", "name", "how"} for o in objs for p in o["processes"])
    assert [o["kind"] for o in objs][:2] == ["shm", "sem"]

    lines = ipcctl("ls", base + "-*", check=True).stdout.splitlines()
    header = lines[0]
    assert header.split() == ["KIND", "NAME", "SIZE", "OWNER", "MODE", "VALUE", "STATE",
                              "PROCESSES"]
    rows = [row for row in lines[1:] if base in row]
    assert len(rows) >= 2
    for col in ("NAME", "OWNER", "MODE", "VALUE", "STATE", "PROCESSES"):
        at = header.index(col)
        for row in rows:  # every cell starts under its heading
            assert row[at] != " " and row[at - 2:at] == "  ", (col, row)
    assert all("rw-------" in row and "in use" in row for row in rows)
    sem_row = next(r for r in rows if names["sem"] in r)
    assert sem_row[header.index("VALUE"):].split()[0] == "0"  # the child took it
    # nothing of ours: a friendly line, exit 0
    r = ipcctl("ls", base + "-nothing-*", check=True)
    assert "no named objects" in r.stdout


def test_module_entry_point():
    r = subprocess.run([sys.executable, "-m", "ipc.cli.ipcctl", "ls", "--json",
                        PREFIX + "no-such-*"], capture_output=True, text=True, timeout=60,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout) == []
    r = subprocess.run([sys.executable, "-m", "ipc.cli.ipcctl", "--version"],
                       capture_output=True, text=True, timeout=60, check=False)
    assert r.returncode == 0 and "ipcctl" in r.stdout


# --------------------------------------------------------------------------
# Other users


def _as_nobody_holding(path: Path) -> list[str]:
    """argv of a process that runs as nobody and holds path open (root only)."""
    return [*AS_NOBODY, "sh", "-c", 'exec 3<"$0"; echo ready; exec sleep 300', str(path)]


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"),
                    reason="needs root (to chown an object to nobody and drop privileges)")
def test_other_users_objects_are_listed_with_all_and_never_cleaned(objnames, children):
    base, names = objnames()
    spawn(children, "create", "exit", names).wait(timeout=30)
    os.chown(SHM_DIR / names["shm"], NOBODY, NOBODY)
    mine = [o["name"] for o in ls_json(base + "-*")]
    assert names["shm"] not in mine and names["sem"] in mine
    theirs = by_kind(ls_json("--all", base + "-*"))
    assert theirs["shm"]["uid"] == NOBODY and theirs["shm"]["state"] == "orphaned"
    r = ipcctl("clean", base + "-*", check=True)
    assert f"removed sem {names['sem']}" in r.stdout
    assert names["shm"] not in r.stdout
    assert (SHM_DIR / names["shm"]).exists()


@pytest.mark.skipif(not IS_ROOT or not shutil.which("setpriv"),
                    reason="needs root (to start a process as nobody and drop capabilities)")
def test_unreadable_holder_is_still_seen_by_the_kernel_and_clean_keeps_it(objnames, children):
    """ipcctl without privileges cannot read another user's /proc entries,
    but the kernel still says whether anyone has a file open: the segment
    nobody holds is in use (by a process ipcctl cannot name), and clean
    leaves it; a 0600 object of ours nobody holds is found orphaned."""
    base, names = objnames()
    spawn(children, "create", "exit", names).wait(timeout=30)
    shared = SHM_DIR / names["shm"]
    shared.chmod(0o666)  # nobody could have it open
    p = subprocess.Popen(_as_nobody_holding(shared), stdout=subprocess.PIPE, text=True)
    children.append(p)
    assert p.stdout.readline() == "ready\n"
    # root, but with no capabilities: like an ordinary user looking at nobody's processes
    weak = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"]
    objs = by_kind(ls_json(base + "-*", prefix=weak))
    assert objs["shm"]["state"] == "in-use" and objs["shm"]["processes"] == []
    assert objs["shm"]["unknown_processes"] >= 1
    assert objs["sem"]["state"] == "orphaned"
    assert "unreadable" in ipcctl("ls", base + "-*", prefix=weak, check=True).stdout
    r = ipcctl("clean", base + "-*", prefix=weak, check=True)
    assert f"removed sem {names['sem']}" in r.stdout and names["shm"] not in r.stdout
    assert shared.exists()
    # with full privileges the holder is seen for what it is
    o = by_kind(ls_json(base + "-*"))["shm"]
    assert o["state"] == "in-use" and o["processes"][0]["pid"] == p.pid
    assert o["processes"][0]["how"] == "open"


def test_clean_removes_an_orphan_whose_name_the_api_refuses(make_name):
    # A C program (or an older luaipc) may have made a segment and a
    # semaphore whose names are not UTF-8; the API refuses such names and
    # posix_ipc cannot unlink them, but clean must still get rid of them.
    base = make_name()
    names = [b"/dev/shm/" + base.encode() + b"-\xff", b"/dev/shm/sem." + base.encode() + b"-s\x1f\xfe"]
    for path in names:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.ftruncate(fd, 32)
        os.close(fd)
    try:
        listed = ipcctl("ls", base + "*", check=True).stdout
        assert f"{base}-\\xff" in listed and f"{base}-s\\x1f\\xfe" in listed  # escaped for people
        r = ipcctl("clean", base + "*", check=True)
        assert r.stdout.count("removed ") == 2, r.stdout
        assert not any(os.path.exists(p) for p in names)
    finally:
        for path in names:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


# --------------------------------------------------------------------------
# In use by a process ipcctl may not inspect


# Made by nobody, left behind (posix_ipc does not unlink on close).
PY_MAKE = r"""
import posix_ipc, sys
shm, sem, mq = sys.argv[1:4]
m = posix_ipc.SharedMemory("/" + shm, posix_ipc.O_CREX, mode=0o600, size=4096)
m.close_fd()
posix_ipc.Semaphore("/" + sem, posix_ipc.O_CREX, mode=0o600, initial_value=1).close()
posix_ipc.MessageQueue("/" + mq, posix_ipc.O_CREX, mode=0o600).close()
"""


def _make_as_nobody(names: dict[str, str]) -> None:
    exe, extra = nobody_python()
    r = subprocess.run([*AS_NOBODY, exe, "-c", PY_MAKE, names["shm"], names["sem"], names["mq"]],
                       env=nobody_env(extra), cwd="/", capture_output=True, text=True,
                       timeout=60, check=False)
    assert r.returncode == 0, r.stderr


def _exists(kind: str, name: str) -> bool:
    cls = {"shm": posix_ipc.SharedMemory, "sem": posix_ipc.Semaphore,
           "mq": posix_ipc.MessageQueue}[kind]
    try:
        h = cls("/" + name)
    except posix_ipc.ExistentialError:
        return False
    if kind == "shm":
        h.close_fd()
    else:
        h.close()
    return True


@needs_root
def test_nobodys_objects_a_root_process_uses_are_not_nobodys_to_clean(objnames, children,
                                                                       public_tmp):
    """Objects of nobody that a root process has mapped or open: nobody's
    ipcctl cannot read root's /proc entries, yet must not call them
    orphaned, and its clean must leave them; once root lets go, they go."""
    base, names = objnames()
    mqd = mq_mount(public_tmp)
    _make_as_nobody(names)
    holder = spawn(children, "open", "hold", names)  # root maps shm and sem, opens mq

    objs = by_kind(ls_json(base + "-*", mq_dir=mqd, as_nobody=True))
    assert set(objs) == {"shm", "sem", "mq"}
    for o in objs.values():
        assert o["uid"] == NOBODY
        assert o["state"] == "in-use", o
        assert o["processes"] == [] and o["unknown_processes"] >= 1, o  # root's: unreadable
    table = ipcctl("ls", base + "-*", mq_dir=mqd, as_nobody=True, check=True).stdout
    assert all("in use" in line for line in table.splitlines() if base in line)
    r = ipcctl("clean", base + "-*", mq_dir=mqd, as_nobody=True, check=True)
    assert "nothing to clean" in r.stdout, r.stdout
    assert all(_exists(k, n) for k, n in names.items())
    # root sees the holder by name
    objs = by_kind(ls_json(base + "-*", mq_dir=mqd))
    assert all([p["pid"] for p in o["processes"]] == [holder.pid] for o in objs.values())

    holder.kill()
    holder.wait(timeout=30)
    r = ipcctl("clean", base + "-*", mq_dir=mqd, as_nobody=True, check=True)
    assert "3 objects removed" in r.stdout, r.stdout
    assert not any(_exists(k, n) for k, n in names.items())


@needs_root
@pytest.mark.parametrize("hidepid", [False, True], ids=["proc", "hidepid"])
def test_what_nobody_cannot_inspect_is_unknown(hidepid, objnames, children, public_tmp):
    """Where the kernel cannot be asked (another user's file; a file its
    owner may not open for reading and writing), an object no visible
    process holds is orphaned only if every process could be inspected.
    Root's processes cannot be by nobody, and under hidepid=invisible
    nobody does not even see them: unknown either way, and clean keeps
    them (and says so)."""
    base, names = objnames()
    spawn(children, "create", "exit", names).wait(timeout=30)  # root's orphans
    base2, mine = objnames()
    _make_as_nobody(mine)
    ro = SHM_DIR / mine["shm"]
    ro.chmod(0o400)  # nobody's own, but nobody may not open it read-write
    objs = {o["name"]: o for o in ls_json("--all", "-k", "shm", "-k", "sem", PREFIX + "*",
                                          hidepid=hidepid, as_nobody=True)}
    for name in (names["shm"], names["sem"], mine["shm"]):
        assert objs[name]["state"] == "unknown", objs[name]
    assert objs[mine["sem"]]["state"] == "orphaned"  # nobody's: the kernel says so
    r = ipcctl("clean", "--json", base2 + "-*", hidepid=hidepid, as_nobody=True, check=True)
    got = {o["name"]: (o["state"], o["removed"], o["error"]) for o in json.loads(r.stdout)}
    assert got[mine["shm"]] == ("unknown", False, None)
    assert got[mine["sem"]] == ("orphaned", True, None)
    assert ro.exists() and (SHM_DIR / f"sem.{names['sem']}").exists()
    r = ipcctl("clean", base2 + "-*", hidepid=hidepid, as_nobody=True, check=True)
    assert f"kept shm {mine['shm']}: unknown" in r.stdout
    # root inspects every process: its own orphans are orphaned
    objs = by_kind(ls_json(base + "-*", "-k", "shm", "-k", "sem"))
    assert {o["state"] for o in objs.values()} == {"orphaned"}


# --------------------------------------------------------------------------
# Two cleans at once


def _some_mq_dir(tmp_path: Path) -> tuple[bool, Path | None]:
    """(queues can be seen, where to mount privately or None)."""
    if _global_mqueue_mounted():
        return True, None
    d = tmp_path / "mqueue"
    d.mkdir()
    return (True, d) if _can_mount_private_mqueue(d) else (False, None)


def test_concurrent_cleans_share_the_orphans_and_both_succeed(make_name, tmp_path):
    """Several clean runs at once over many orphans: every one exits 0,
    each orphan is removed by exactly one of them, none is left, and an
    object another run removed first is no error."""
    with_mq, mqd = _some_mq_dir(tmp_path)
    n, runs, rounds = 200, 3, 5
    for _ in range(rounds):
        base = make_name()
        made = {("shm", f"{base}-{i}") for i in range(n)} | {("sem", f"{base}-s{i}")
                                                            for i in range(n)}
        if with_mq:
            made |= {("mq", f"{base}-q{i}") for i in range(n // 4)}
        try:
            for kind, name in made:
                if kind == "shm":
                    posix_ipc.SharedMemory("/" + name, posix_ipc.O_CREX, mode=0o600,
                                           size=64).close_fd()
                elif kind == "sem":
                    posix_ipc.Semaphore("/" + name, posix_ipc.O_CREX, mode=0o600).close()
                else:  # small: RLIMIT_MSGQUEUE counts the bytes queues may hold
                    posix_ipc.MessageQueue("/" + name, posix_ipc.O_CREX, mode=0o600,
                                           max_messages=1, max_message_size=8).close()
            # each run waits for its line on stdin, so they start together
            cmd = ["sh", "-c", 'read go && exec "$@"', "sh", *IPCCTL, "clean", base + "-*"]
            if mqd is not None:
                cmd = ["unshare", "-m", "--propagation", "private", "sh", "-c",
                       'mount -t mqueue none "$0" && exec "$@"', str(mqd), *cmd]
            procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True) for _ in range(runs)]
            for p in procs:
                p.stdin.write("go\n")
                p.stdin.flush()
            outs = [p.communicate(timeout=90) for p in procs]
            removed = []
            for p, (out, err) in zip(procs, outs, strict=False):
                assert p.returncode == 0, (out, err)
                assert "clean:" not in err, err  # no error about any object
                removed += [tuple(line.split()[1:3]) for line in out.splitlines()
                            if line.startswith("removed ")]
            assert sorted(removed) == sorted(made)  # all of them, each exactly once
            assert not any(_exists(kind, name) for kind, name in made)
        finally:
            for kind, name in made:
                try:
                    {"shm": posix_ipc.unlink_shared_memory, "sem": posix_ipc.unlink_semaphore,
                     "mq": posix_ipc.unlink_message_queue}[kind]("/" + name)
                except posix_ipc.ExistentialError:
                    pass


# --------------------------------------------------------------------------
# Names that are not text


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return []


def _strict_json(raw: bytes):
    """Parse ipcctl's JSON as a strict program would: UTF-8, and no lone
    surrogate (which json.loads lets through as \\udcXX escapes)."""
    data = json.loads(raw.decode("utf-8"))
    for s in _strings(data):
        s.encode("utf-8")  # raises on a lone surrogate
    return data


# A holder whose process name (comm) is not text either.
HOLD_AS = r"""
import ctypes, mmap, os, sys
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(b"h\xff\n\x1b"), 0, 0, 0)  # PR_SET_NAME
fd = os.open(os.fsencode(sys.argv[1]), os.O_RDWR)
m = mmap.mmap(fd, 32)
os.close(fd)
print("ready", flush=True)
sys.stdin.read()
"""


def test_names_that_are_not_text_in_json_and_on_the_terminal(make_name, children):
    """Files made in /dev/shm directly, with names a C program may give:
    --json stays strict UTF-8 and a program finds each very file again
    from path_hex; the table shows escapes, never raw control bytes."""
    base = make_name().encode()
    files = {
        b"/dev/shm/" + base + b"-\xff\xfe": ("shm", "-\\xff\\xfe"),
        b"/dev/shm/" + base + b"-nl\nx\x1b[31m": ("shm", "-nl\\nx\\x1b[31m"),
        b"/dev/shm/sem." + base + b"-s\xff": ("sem", "-s\\xff"),
        b"/dev/shm/" + base + "-é".encode(): ("shm", "-é"),
    }
    held = b"/dev/shm/" + base + "-é".encode()
    for path in files:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        os.ftruncate(fd, 32)
        os.close(fd)
    try:
        holder = subprocess.Popen([sys.executable, "-c", HOLD_AS, os.fsdecode(held)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        children.append(holder)
        assert holder.stdout.readline() == b"ready\n"
        pattern = base.decode() + "*"
        r = ipcctl("ls", "--json", pattern, text=False, check=True)
        objs = _strict_json(r.stdout)
        assert len(objs) == len(files)
        for o in objs:
            path = bytes.fromhex(o["path_hex"])
            kind, shown = files[path]
            st = os.stat(path)  # the very file: what ls says of it is its own
            assert (o["kind"], o["uid"], o["mode"]) == (kind, st.st_uid,
                                                       f"{stat.S_IMODE(st.st_mode):04o}")
            exact = path.rsplit(b"/", 1)[1].removeprefix(b"sem." if kind == "sem" else b"")
            assert bytes.fromhex(o["name_hex"]) == exact
            if path == held:  # UTF-8: exact text; JSON escapes nothing it need not
                assert o["name"] == os.fsdecode(exact) and o["path"] == os.fsdecode(path)
                assert o["state"] == "in-use"
                assert o["processes"][0]["name"] == "h\\xff\\n\\x1b"
            elif b"\n" in path:  # UTF-8 with control bytes: exact too
                assert o["name"] == os.fsdecode(exact)
            else:  # not UTF-8: as shown in the table
                assert o["name"] == base.decode() + shown
                assert o["path"].endswith(shown)

        table = ipcctl("ls", pattern, text=False, check=True).stdout
        lines = table.splitlines()
        assert len(lines) == 1 + len(files)  # one line per object: no raw newline
        assert b"\x1b" not in table and b"\xff" not in table
        for _, shown in files.values():
            assert (base.decode() + shown).encode() in table
        assert b"(h\\xff\\n\\x1b)" in table  # the holder's name, escaped too

        r = ipcctl("clean", "--json", pattern, text=False, check=True)
        cleaned = _strict_json(r.stdout)
        assert sorted(bytes.fromhex(o["path_hex"]) for o in cleaned) == \
            sorted(p for p in files if p != held)
        assert all(o["removed"] for o in cleaned)
        assert [p for p in files if os.path.exists(p)] == [held]
    finally:
        for path in files:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def test_rm_shows_names_escaped(make_name):
    """rm -v escapes what it prints as ls does; a name that is not UTF-8
    is refused with a message that says so, and nothing is removed."""
    base = make_name()
    odd = base + "-v\nx\x1b[31m"
    posix_ipc.SharedMemory("/" + odd, posix_ipc.O_CREX, mode=0o600, size=16).close_fd()
    try:
        r = ipcctl("rm", "-v", "shm", odd)
        assert r.returncode == 0, r.stderr
        assert r.stdout == f"removed shm {base}-v\\nx\\x1b[31m\n"
        assert not (SHM_DIR / odd).exists()
    finally:
        (SHM_DIR / odd).unlink(missing_ok=True)

    raw = b"/dev/shm/" + base.encode() + b"-\xff"
    fd = os.open(raw, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    os.close(fd)
    try:
        r = ipcctl("rm", "shm", base.encode() + b"-\xff", text=False)
        assert r.returncode == 2
        err = r.stderr.decode("utf-8")  # strict: no surrogate escape reached it
        assert f"shm '{base}-\\xff': Invalid argument" in err
        assert "not UTF-8" in err and "leading '/'" not in err and "no '/' or NUL" not in err
        assert "\\udc" not in err
        assert os.path.exists(raw)
    finally:
        os.unlink(raw)
