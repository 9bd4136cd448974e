"""Find the named IPC objects on this machine and the processes using them.

This is what ``ipcctl`` (and, through it, a person recovering from a
crash) relies on.  Linux only: it reads ``/dev/shm``, the mqueue
filesystem and ``/proc``.

Where the objects live (glibc, Linux):

- shared memory ``"/name"`` is the file ``/dev/shm/name``;
- a semaphore ``"/name"`` is the 32-byte file ``/dev/shm/sem.name``;
- a message queue ``"/name"`` is the file ``name`` in an ``mqueue``
  filesystem, wherever one is mounted (usually ``/dev/mqueue``).  Nothing
  needs to be mounted for queues to work, but without a mount the only
  way to see a queue is through a process that has it open, so orphaned
  queues cannot be found (``mqueue_dir()`` is then None).

Who uses an object is decided by *inode*, not by path: a process that
created a semaphore maps glibc's temporary file (``/dev/shm/sem.XXXXXX
(deleted)`` in ``/proc/PID/maps``), which is the same inode as
``sem.name``; psutil's ``memory_maps()`` gives only the path, so
``/proc/PID/maps`` (device and inode columns) and the ``/proc/PID/fd``
links are read directly.  psutil enumerates the processes and names them.

A process whose ``/proc`` entries we may not read (another user's, when we
are not root) is counted as "could be using it" for every object it could
open by its mode bits (its uid owns the object, or group/other bits are
set); processes running as root are not counted that way (see
``_could_open``).  An object nobody visibly uses is "orphaned" only when no
such unreadable process exists; otherwise its state is "unknown" and
``clean`` leaves it alone.
"""
from __future__ import annotations

import errno
import fnmatch
import os
import pwd
import stat
import struct
import sys
from dataclasses import dataclass, field
from typing import Iterable

from ._errors import IPCError, from_posix_ipc, os_error
from ._names import NAME_MAX, SEM_NAME_MAX, os_name

__all__ = ["KINDS", "Holder", "NamedObject", "list_objects", "remove", "clean",
           "shm_dir", "mqueue_dir", "check_name"]

KINDS = ("shm", "sem", "mq")
SHM_DIR = "/dev/shm"
SEM_PREFIX = "sem."
SEM_FILE_SIZE = 32  # sizeof(sem_t) on Linux, 32- and 64-bit

IN_USE, ORPHANED, UNKNOWN = "in-use", "orphaned", "unknown"


@dataclass
class Holder:
    """A live process that has an object open (a descriptor) or mapped."""
    pid: int
    name: str
    how: str  # "mapped", "open" or "mapped+open"

    def as_dict(self) -> dict:
        return {"pid": self.pid, "name": self.name, "how": self.how}


@dataclass
class NamedObject:
    """One named shm segment, semaphore or message queue."""
    kind: str                 # "shm", "sem" or "mq"
    name: str                 # as the API spells it (no leading "/")
    path: str | None          # its file, or None (a queue seen only via a process)
    size: int | None          # bytes (shm), 32 (sem), bytes queued (mq)
    uid: int
    gid: int
    mode: int                 # permission bits
    dev: int = field(repr=False, default=0)
    ino: int = field(repr=False, default=0)
    value: int | None = None  # a semaphore's current value, when readable
    holders: list[Holder] = field(default_factory=list)
    #: pids of unreadable processes that could have it open (see module doc)
    unknown_pids: list[int] = field(default_factory=list)

    @property
    def owner(self) -> str:
        return _user_name(self.uid)

    @property
    def state(self) -> str:
        if self.holders:
            return IN_USE
        return UNKNOWN if self.unknown_pids else ORPHANED

    @property
    def os_name(self) -> str:
        return "/" + self.name

    def as_dict(self) -> dict:
        """Stable keys, for ``ipcctl ls --json``."""
        return {
            "kind": self.kind, "name": self.name, "path": self.path,
            "size": self.size, "uid": self.uid, "owner": self.owner,
            "mode": f"{self.mode:04o}", "state": self.state,
            "processes": [h.as_dict() for h in self.holders],
            "unknown_processes": len(self.unknown_pids),
            "value": self.value,
        }


# --------------------------------------------------------------------------
# Where things live

def shm_dir() -> str | None:
    """The directory of POSIX shm and semaphores, or None if absent."""
    return SHM_DIR if os.path.isdir(SHM_DIR) else None


def mqueue_dir() -> str | None:
    """Where an mqueue filesystem is mounted in our namespace, or None.

    Read from /proc/self/mountinfo, so a mount anywhere counts (the usual
    place is /dev/mqueue; the tests mount one in a private namespace).
    """
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError:
        return None
    found = None
    for line in lines:
        pre, sep, post = line.partition(" - ")
        if not sep or post.split(" ", 1)[0] != "mqueue":
            continue
        point = _unescape_mount(pre.split(" ")[4])
        if os.path.isdir(point):
            found = point  # the last one mounted there wins, as in the kernel
            if point == "/dev/mqueue":
                return point
    return found


def _unescape_mount(s: str) -> str:
    # mountinfo escapes space, tab, newline and backslash as \ooo
    if "\\" not in s:
        return s
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and s[i + 1:i + 4].isdigit() and len(s[i + 1:i + 4]) == 3:
            out.append(chr(int(s[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


_users: dict[int, str] = {}


def _user_name(uid: int) -> str:
    if uid not in _users:
        try:
            _users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _users[uid] = str(uid)
    return _users[uid]


# --------------------------------------------------------------------------
# The objects

def _sem_value(path: str) -> int | None:
    """The value of a glibc semaphore, read from its file.

    On 64-bit glibc a ``sem_t`` starts with a 64-bit word whose low 32 bits
    are the value; on 32-bit the first int holds ``value << 1``.
    """
    try:
        with open(path, "rb") as f:
            data = f.read(SEM_FILE_SIZE)
    except OSError:
        return None
    if len(data) != SEM_FILE_SIZE:
        return None
    order = "<" if sys.byteorder == "little" else ">"
    if struct.calcsize("P") == 8:
        return struct.unpack(order + "Q", data[:8])[0] & 0xFFFFFFFF
    return struct.unpack(order + "I", data[:4])[0] >> 1


def _mq_qsize(path: str) -> int | None:
    """Bytes queued, from the text the mqueue filesystem shows for a queue."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        text = os.read(fd, 256)
    except OSError:
        return None
    finally:
        os.close(fd)
    if not text.startswith(b"QSIZE:"):
        return None
    try:
        return int(text[6:].split()[0])
    except (ValueError, IndexError):
        return None


def _scan_dir(directory: str, kind_of) -> list[NamedObject]:
    objs = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return objs
    for entry in entries:
        try:
            st = entry.stat(follow_symlinks=False)
        except OSError:
            continue  # gone meanwhile
        if not stat.S_ISREG(st.st_mode):
            continue
        kind, name = kind_of(entry.name, st)
        obj = NamedObject(kind=kind, name=name, path=entry.path, size=st.st_size,
                          uid=st.st_uid, gid=st.st_gid, mode=stat.S_IMODE(st.st_mode),
                          dev=st.st_dev, ino=st.st_ino)
        if kind == "sem":
            obj.value = _sem_value(entry.path)
        elif kind == "mq":
            obj.size = _mq_qsize(entry.path)
        objs.append(obj)
    return objs


def _shm_kind(filename: str, st: os.stat_result) -> tuple[str, str]:
    # glibc names a semaphore's file "sem." + name.  A shm segment could be
    # called "sem.x" too; a semaphore file is always exactly 32 bytes.
    if (filename.startswith(SEM_PREFIX) and len(filename) > len(SEM_PREFIX)
            and st.st_size == SEM_FILE_SIZE):
        return "sem", filename[len(SEM_PREFIX):]
    return "shm", filename


def _mq_kind(filename: str, st: os.stat_result) -> tuple[str, str]:
    return "mq", filename


def _find_objects() -> tuple[list[NamedObject], int | None]:
    """All objects in the directories, and the mqueue device if known."""
    objs: list[NamedObject] = []
    d = shm_dir()
    if d:
        objs += _scan_dir(d, _shm_kind)
    mq_dev = None
    d = mqueue_dir()
    if d:
        objs += _scan_dir(d, _mq_kind)
        try:
            mq_dev = os.stat(d).st_dev
        except OSError:
            pass
    return objs, mq_dev


# --------------------------------------------------------------------------
# The processes

def _proc_uids_gids(pid: int) -> tuple[set[int], set[int]]:
    uids: set[int] = set()
    gids: set[int] = set()
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Uid:"):
                    uids = {int(x) for x in line.split()[1:]}
                elif line.startswith("Gid:") or line.startswith("Groups:"):
                    gids |= {int(x) for x in line.split()[1:]}
    except (OSError, ValueError):
        pass
    return uids, gids


def _could_open(uids: set[int], gids: set[int], obj: NamedObject) -> bool:
    """Could a process with these ids have opened obj, by its mode bits?

    Processes running as root could open anything, but we cannot read a
    root process's /proc entries unless we are root ourselves, and
    counting them would make every object "unknown" for an ordinary user.
    Run ipcctl as root to see everything.
    """
    if not uids:  # unreadable status: be careful
        return True
    if uids == {0}:
        return False
    if obj.mode & 0o007:
        return True
    if obj.mode & 0o070 and (not gids or obj.gid in gids):
        return True
    return obj.uid in uids and bool(obj.mode & 0o700)


def _maps_inodes(pid: int, keys: set[tuple[int, int]]) -> set[tuple[int, int]]:
    """(dev, ino) of keys that the process maps.  Raises PermissionError."""
    found = set()
    inos = {ino for _, ino in keys}
    with open(f"/proc/{pid}/maps", "rb") as f:
        data = f.read()
    for line in data.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        try:
            ino = int(parts[4])
        except ValueError:
            continue
        if ino not in inos:
            continue
        major, _, minor = parts[3].partition(b":")
        try:
            key = (os.makedev(int(major, 16), int(minor, 16)), ino)
        except ValueError:
            continue
        if key in keys:
            found.add(key)
    return found


def _fd_objects(pid: int, keys: set[tuple[int, int]], shm_prefix: str | None,
                mq_state: dict) -> tuple[set[tuple[int, int]], list[tuple]]:
    """(dev, ino) of keys the process has open, and queues not in keys.

    Only links that can be ours are stat'ed: paths under /dev/shm, and
    "/name" (what a message queue descriptor links to).  A "/name" link is
    a queue when its device is the mqueue device, or, when we do not know
    that device (no mqueue mount), when its text starts with "QSIZE:".
    Raises PermissionError when the fd directory is unreadable.
    """
    base = f"/proc/{pid}/fd"
    open_keys = set()
    queues = []
    for fd in os.listdir(base):
        link = f"{base}/{fd}"
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if not target.startswith("/"):
            continue  # socket:[..], pipe:[..], anon_inode:...
        if shm_prefix and target.startswith(shm_prefix):
            candidate = "shm"
        elif "/" not in target[1:] and len(target) > 1:
            candidate = "mq"
        else:
            continue
        try:
            st = os.stat(link)
        except OSError:
            continue
        key = (st.st_dev, st.st_ino)
        if key in keys:
            open_keys.add(key)
            continue
        if candidate != "mq" or not stat.S_ISREG(st.st_mode):
            continue
        is_mq = mq_state.get(st.st_dev)
        if is_mq is None:
            if mq_state.get("dev_known"):
                is_mq = False
            else:
                is_mq = _mq_qsize(link) is not None
                mq_state[st.st_dev] = is_mq
        if is_mq:
            name = target[1:]
            if name.endswith(" (deleted)"):
                continue  # an unlinked queue: it has no name any more
            queues.append((key, name, st, link))
    return open_keys, queues


def _attach_holders(objs: list[NamedObject], mq_dev: int | None) -> list[NamedObject]:
    """Fill holders/unknown_pids of objs; return queues found only via fds."""
    import psutil

    by_key: dict[tuple[int, int], NamedObject] = {(o.dev, o.ino): o for o in objs}
    keys = set(by_key)
    d = shm_dir()
    shm_prefix = (os.path.realpath(d) + "/") if d else None
    mq_state: dict = {}
    if mq_dev is not None:
        mq_state = {mq_dev: True, "dev_known": True}
    extra: dict[tuple[int, int], NamedObject] = {}
    unreadable: list[tuple[int, set[int], set[int]]] = []
    me = os.getpid()
    for proc in psutil.process_iter(["name"]):
        pid = proc.pid
        if pid == me:
            continue
        try:
            mapped = _maps_inodes(pid, keys)
            opened, queues = _fd_objects(pid, keys, shm_prefix, mq_state)
        except PermissionError:
            uids, gids = _proc_uids_gids(pid)
            unreadable.append((pid, uids, gids))
            continue
        except (FileNotFoundError, ProcessLookupError):
            continue  # exited meanwhile
        except OSError:
            continue
        if not (mapped or opened or queues):
            continue
        pname = proc.info.get("name") or "?"
        for key, qname, st, link in queues:
            obj = extra.get(key)
            if obj is None:
                obj = NamedObject(kind="mq", name=qname, path=None, size=_mq_qsize(link),
                                  uid=st.st_uid, gid=st.st_gid,
                                  mode=stat.S_IMODE(st.st_mode), dev=key[0], ino=key[1])
                extra[key] = obj
            opened.add(key)
            by_key.setdefault(key, obj)
        for key in mapped | opened:
            how = "+".join(w for w, s in (("mapped", mapped), ("open", opened)) if key in s)
            by_key[key].holders.append(Holder(pid, pname, how))
    every = list(by_key.values())
    for obj in every:
        if obj.holders:
            continue
        obj.unknown_pids = [pid for pid, uids, gids in unreadable
                            if _could_open(uids, gids, obj)]
    return list(extra.values())


def list_objects(*, all_users: bool = False, kinds: Iterable[str] = KINDS,
                 pattern: str | None = None, holders: bool = True) -> list[NamedObject]:
    """The named objects on this machine, with the processes using them.

    By default only the current user's objects (``all_users=True`` for
    everyone's).  ``pattern`` is a glob on the name as the API spells it.
    ``holders=False`` skips the (slower) scan of the processes.
    Message queues are complete only when an mqueue filesystem is mounted
    (``mqueue_dir()``); otherwise only the queues some process has open
    are found.
    """
    kinds = tuple(kinds)
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r} (expected one of {', '.join(KINDS)})")
    objs, mq_dev = _find_objects()
    if holders:
        objs += _attach_holders(objs, mq_dev)
    uid = os.geteuid()
    out = [o for o in objs
           if o.kind in kinds
           and (all_users or o.uid == uid)
           and (pattern is None or fnmatch.fnmatchcase(o.name, pattern))]
    out.sort(key=lambda o: (KINDS.index(o.kind), o.name))
    return out


# --------------------------------------------------------------------------
# Removing

def check_name(kind: str, name: str) -> str:
    """The OS name for kind/name, or raise (nothing touches the OS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
    return os_name(name, SEM_NAME_MAX if kind == "sem" else NAME_MAX)


def remove(kind: str, name: str) -> None:
    """Unlink the named object (``shm_unlink``/``sem_unlink``/``mq_unlink``).

    Raises ``NotFoundError`` if there is none, ``PermissionDenied`` if it
    is not ours to remove, EINVAL/ENAMETOOLONG for a bad name (checked
    before anything touches the OS).  Processes that have it open or
    mapped keep it until they let go; the name is free at once.
    """
    import posix_ipc

    osn = check_name(kind, name)
    unlink = {"shm": posix_ipc.unlink_shared_memory,
              "sem": posix_ipc.unlink_semaphore,
              "mq": posix_ipc.unlink_message_queue}[kind]
    try:
        unlink(osn)
    except posix_ipc.Error as exc:
        raise from_posix_ipc(exc, name) from exc
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO, name) from exc


def _remove_found(obj: NamedObject) -> None:
    """Remove an object found by listing.  By name, as users and C programs
    do; a name the API refuses (not UTF-8: made by a C program or an old
    version, which posix_ipc cannot unlink) goes by its file, which is what
    shm_unlink/sem_unlink/mq_unlink do on Linux anyway."""
    try:
        check_name(obj.kind, obj.name)
    except IPCError:
        if obj.path is None:
            raise
        try:
            os.unlink(obj.path)
        except OSError as exc:
            raise os_error(exc.errno or errno.EIO, obj.name) from exc
        return
    remove(obj.kind, obj.name)


@dataclass
class CleanResult:
    obj: NamedObject
    removed: bool
    error: IPCError | None = None

    def as_dict(self) -> dict:
        d = self.obj.as_dict()
        d["removed"] = self.removed
        d["error"] = None if self.error is None else self.error.strerror
        return d


def clean(pattern: str | None = None, *, dry_run: bool = False,
          kinds: Iterable[str] = KINDS) -> list[CleanResult]:
    """Remove the current user's orphaned objects (no live process uses them).

    Looks twice: objects that look orphaned are checked again by a second
    scan of the processes just before they are removed, and only removed
    if they are still the same file (same inode) and still unused.  Objects
    in use or whose state is unknown are never touched, nor are other
    users' objects.  With ``dry_run`` nothing is removed; the results say
    what would be.
    """
    kinds = tuple(kinds)
    first = [o for o in list_objects(kinds=kinds, pattern=pattern) if o.state == ORPHANED]
    if not first:
        return []
    again = {(o.kind, o.name, o.dev, o.ino): o
             for o in list_objects(kinds=kinds, pattern=pattern)}
    results = []
    for o in first:
        now = again.get((o.kind, o.name, o.dev, o.ino))
        if now is None or now.state != ORPHANED:
            continue  # gone, replaced, or picked up meanwhile
        if dry_run:
            results.append(CleanResult(now, False))
            continue
        try:
            _remove_found(now)
        except IPCError as exc:
            results.append(CleanResult(now, False, exc))
        else:
            results.append(CleanResult(now, True))
    return results
