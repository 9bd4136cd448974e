"""Who holds what: the processes that have a named object open or mapped.

Decided by *inode*, not by path: a process that created a semaphore maps
glibc's temporary file (``/dev/shm/sem.XXXXXX (deleted)`` in
``/proc/PID/maps``), which is the same inode as ``sem.name``; psutil's
``memory_maps()`` gives only the path, so ``/proc/PID/maps`` (device and
inode columns) and the ``/proc/PID/fd`` links are read directly.  psutil
enumerates the processes and names them.

What we cannot see is counted, never guessed: the maps and fd of another
user's process are unreadable unless we may ptrace it (root, or
CAP_SYS_PTRACE), and such a process may be using any object, whatever its
mode bits say (a descriptor passed over a socket, a file opened before a
chmod, a capability, a setuid program).  /proc mounted with
``hidepid=invisible`` (or ``ptraceable``) does not even list them.  Which
of those a given object concerns is for the kernel to say (lease.py).
"""
from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from .objects import Holder, NamedObject, mounts, mq_qsize, shm_dir

Key = tuple[int, int]  # (st_dev, st_ino)
#: st_dev -> whether it is the mqueue device, and "dev_known" -> whether
#: that device is known (an mqueue mount), in which case no other is one
MqState = dict[int | str, bool]

CAP_SYS_PTRACE = 19  # linux/capability.h


@dataclass
class ProcessScan:
    """What a pass over /proc found, besides the holders it filled in."""
    #: pids whose maps or fd we may not read
    uninspectable: list[int] = field(default_factory=list)
    #: /proc hides processes from us: there may be holders we cannot count
    blind: bool = False
    #: queues found only through a holder's descriptor (no mqueue mount)
    queues: list[NamedObject] = field(default_factory=list)


def _maps_inodes(pid: int, keys: set[Key]) -> set[Key]:
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


def _fd_objects(pid: int, keys: set[Key], shm_prefix: str | None,
                mq_state: MqState) -> tuple[set[Key], list[tuple[Key, str, os.stat_result, str]]]:
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
                is_mq = mq_qsize(link) is not None
                mq_state[st.st_dev] = is_mq
        if is_mq:
            name = target[1:]
            if name.endswith(" (deleted)"):
                continue  # an unlinked queue: it has no name any more
            queues.append((key, name, st, link))
    return open_keys, queues


def _effective_caps() -> int:
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("CapEff:"):
                    return int(line.split()[1], 16)
    except (OSError, ValueError):
        pass
    return 0


def proc_hides_processes() -> bool:
    """Does /proc leave out processes we may not inspect?

    The kernel's rule (fs/proc/base.c, has_pid_permissions): with
    ``hidepid=invisible`` (2) a process is listed only to those who may
    ptrace it or belong to the mount's ``gid=`` group; with
    ``hidepid=ptraceable`` (4) only to those who may ptrace it.  With
    ``noaccess`` (1) every process is listed and the unreadable ones are
    counted as such.  CAP_SYS_PTRACE may ptrace every process.
    """
    options: dict[str, str] = {}
    for point, fstype, opts in mounts():
        if point == "/proc" and fstype == "proc":
            options = dict(o.partition("=")[::2] for o in opts.split(","))  # the last wins
    hidepid = options.get("hidepid", "off")
    if hidepid not in ("2", "invisible", "4", "ptraceable"):
        return False
    if _effective_caps() >> CAP_SYS_PTRACE & 1:
        return False
    if hidepid in ("2", "invisible") and options.get("gid", "").isdigit():
        gid = int(options["gid"])
        if gid == os.getegid() or gid in os.getgroups():
            return False
    return True


def scan_processes(objs: list[NamedObject], mq_dev: int | None) -> ProcessScan:
    """Fill in the holders of objs, and say what could not be seen."""
    import psutil

    by_key: dict[Key, NamedObject] = {(o.dev, o.ino): o for o in objs}
    keys = set(by_key)
    d = shm_dir()
    shm_prefix = (os.path.realpath(d) + "/") if d else None
    mq_state: MqState = {}
    if mq_dev is not None:
        mq_state = {mq_dev: True, "dev_known": True}
    scan = ProcessScan(blind=proc_hides_processes())
    extra: dict[Key, NamedObject] = {}
    me = os.getpid()
    for proc in psutil.process_iter(["name"]):
        pid = proc.pid
        if pid == me:
            continue
        try:
            mapped = _maps_inodes(pid, keys)
            opened, queues = _fd_objects(pid, keys, shm_prefix, mq_state)
        except PermissionError:
            scan.uninspectable.append(pid)
            continue
        except OSError:
            continue  # exited meanwhile (ENOENT, ESRCH)
        if not (mapped or opened or queues):
            continue
        pname = proc.info.get("name") or "?"
        for key, qname, st, link in queues:
            obj = extra.get(key)
            if obj is None:
                obj = NamedObject(kind="mq", name=qname, path=None, size=mq_qsize(link),
                                  uid=st.st_uid, gid=st.st_gid,
                                  mode=stat.S_IMODE(st.st_mode), dev=key[0], ino=key[1])
                extra[key] = obj
            opened.add(key)
            by_key.setdefault(key, obj)
        for key in mapped | opened:
            how = "+".join(w for w, s in (("mapped", mapped), ("open", opened)) if key in s)
            by_key[key].holders.append(Holder(pid, pname, how))
    scan.queues = list(extra.values())
    return scan
