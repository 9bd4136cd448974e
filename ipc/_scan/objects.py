"""The named objects: where each kind lives, and what a listing says of one.

Where they live (glibc, Linux):

- shared memory ``"/name"`` is the file ``/dev/shm/name``;
- a semaphore ``"/name"`` is the 32-byte file ``/dev/shm/sem.name``;
- a linda ``"name"`` (ipc.linda) is the file ``/dev/shm/linda.name``,
  which starts with its magic bytes (see ipc/linda/_os.py);
- a message queue ``"/name"`` is the file ``name`` in an ``mqueue``
  filesystem, wherever one is mounted (usually ``/dev/mqueue``).  Nothing
  needs to be mounted for queues to work, but without a mount the only
  way to see a queue is through a process that has it open, so orphaned
  queues cannot be found (``mqueue_dir()`` is then None).

Names are ``str`` as ``os.fsdecode`` gives them: a name that is not UTF-8
keeps its bytes as surrogate escapes (``os.fsencode`` gives them back).
Showing such a name is the command's business, not this module's.
"""
from __future__ import annotations

import os
import pwd
import stat
import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, field

from .._names import NAME_MAX, SEM_NAME_MAX, os_name

KINDS = ("shm", "sem", "mq", "linda")
SHM_DIR = "/dev/shm"
SEM_PREFIX = "sem."
LINDA_PREFIX = "linda."
LINDA_MAGIC = b"LINDA\0"  # then the format's version (ipc/linda/_os.py)
SEM_FILE_SIZE = 32  # sizeof(sem_t) on Linux, 32- and 64-bit

IN_USE, ORPHANED, UNKNOWN = "in-use", "orphaned", "unknown"


@dataclass
class Holder:
    """A live process that has an object open (a descriptor) or mapped."""
    pid: int
    name: str
    how: str  # "mapped", "open" or "mapped+open"


@dataclass
class NamedObject:
    """One named shm segment, semaphore or message queue."""
    kind: str                 # "shm", "sem", "mq" or "linda"
    name: str                 # as the API spells it (no leading "/")
    path: str | None          # its file, or None (a queue seen only via a process)
    size: int | None          # bytes (shm), 32 (sem), bytes queued (mq), of state (linda)
    uid: int
    gid: int
    mode: int                 # permission bits
    dev: int = field(repr=False, default=0)
    ino: int = field(repr=False, default=0)
    value: int | None = None  # a semaphore's current value, when readable
    #: the processes we could inspect that have it open or mapped
    holders: list[Holder] = field(default_factory=list)
    #: the kernel's answer, from a write lease (see lease.py): does any
    #: process at all have it open or mapped?  None: we could not ask.
    open_anywhere: bool | None = None
    #: processes whose /proc entries we may not read, that may be using it
    unknown_pids: list[int] = field(default_factory=list)
    #: /proc hides processes from us (hidepid), so some may be using it
    blind: bool = False

    @property
    def owner(self) -> str:
        return user_name(self.uid)

    @property
    def state(self) -> str:
        """IN_USE, ORPHANED or UNKNOWN: the one rule ls and clean follow.

        In use if a process we can see holds it, or the kernel says some
        process holds it.  Orphaned if the kernel says none does, or, when
        we could not ask the kernel, if we could inspect every process and
        none holds it.  Otherwise unknown: one we cannot inspect may.
        """
        if self.holders or self.open_anywhere:
            return IN_USE
        if self.open_anywhere is False:
            return ORPHANED
        return UNKNOWN if self.unknown_pids or self.blind else ORPHANED

    @property
    def os_name(self) -> str:
        return "/" + self.name


def check_name(kind: str, name: str) -> str:
    """The OS name for kind/name, or raise (nothing touches the OS)."""
    check_kinds((kind,))
    limit = {"sem": SEM_NAME_MAX, "linda": NAME_MAX - len(LINDA_PREFIX)}.get(kind, NAME_MAX)
    return os_name(name, limit)


def check_kinds(kinds: tuple[str, ...]) -> None:
    for k in kinds:
        if k not in KINDS:
            raise ValueError(f"unknown kind {k!r} (expected one of {', '.join(KINDS)})")


# --------------------------------------------------------------------------
# Where things live

def shm_dir() -> str | None:
    """The directory of POSIX shm and semaphores, or None if absent."""
    return SHM_DIR if os.path.isdir(SHM_DIR) else None


def mounts() -> list[tuple[str, str, str]]:
    """(mount point, filesystem type, superblock options) of every mount
    in our namespace, in mount order, from /proc/self/mountinfo."""
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.readlines()
    except OSError:
        return []
    found = []
    for line in lines:
        pre, sep, post = line.rstrip("\n").partition(" - ")
        fields, tail = pre.split(" "), post.split(" ")
        if sep and len(fields) > 4 and len(tail) > 2:
            found.append((_unescape_mount(fields[4]), tail[0], tail[2]))
    return found


def mqueue_dir() -> str | None:
    """Where an mqueue filesystem is mounted in our namespace, or None.

    A mount anywhere counts (the usual place is /dev/mqueue; the tests
    mount one in a private namespace).
    """
    found = None
    for point, fstype, _ in mounts():
        if fstype == "mqueue" and os.path.isdir(point):
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


def user_name(uid: int) -> str:
    if uid not in _users:
        try:
            _users[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            _users[uid] = str(uid)
    return _users[uid]


# --------------------------------------------------------------------------
# Reading the objects

def sem_value(path: str) -> int | None:
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
    word: int
    if struct.calcsize("P") == 8:
        (word,) = struct.unpack(order + "Q", data[:8])
        return word & 0xFFFFFFFF
    (word,) = struct.unpack(order + "I", data[:4])
    return word >> 1


def mq_qsize(path: str) -> int | None:
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


def _scan_dir(directory: str,
              kind_of: Callable[[str, os.stat_result], tuple[str, str]]) -> list[NamedObject]:
    objs: list[NamedObject] = []
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
            obj.value = sem_value(entry.path)
        elif kind == "mq":
            obj.size = mq_qsize(entry.path)
        elif kind == "linda":
            obj.size = linda_used(entry.path)
        objs.append(obj)
    return objs


def _shm_kind(filename: str, st: os.stat_result) -> tuple[str, str]:
    # glibc names a semaphore's file "sem." + name.  A shm segment could be
    # called "sem.x" too; a semaphore file is always exactly 32 bytes.
    if (filename.startswith(SEM_PREFIX) and len(filename) > len(SEM_PREFIX)
            and st.st_size == SEM_FILE_SIZE):
        return "sem", filename[len(SEM_PREFIX):]
    # Likewise a segment could be called "linda.x": a linda has its magic.
    if (filename.startswith(LINDA_PREFIX) and len(filename) > len(LINDA_PREFIX)
            and _has_magic(os.path.join(SHM_DIR, filename), LINDA_MAGIC)):
        return "linda", filename[len(LINDA_PREFIX):]
    return "shm", filename


def _has_magic(path: str, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def linda_used(path: str) -> int | None:
    """Bytes of state a linda holds now, from its header (gen at 8 picks
    the buffer; the lengths are at 24 and 32)."""
    try:
        with open(path, "rb") as f:
            head = f.read(40)
    except OSError:
        return None
    if len(head) < 40 or not head.startswith(LINDA_MAGIC):
        return None
    gen = struct.unpack_from("=I", head, 8)[0]
    used: int = struct.unpack_from("=Q", head, 24 + 8 * (gen & 1))[0]
    return used


def _mq_kind(filename: str, _st: os.stat_result) -> tuple[str, str]:
    return "mq", filename


def find_objects() -> tuple[list[NamedObject], int | None]:
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
