"""Names of named objects: this session's prefix, and what is left of a
name (a segment, a semaphore, a queue)."""
from __future__ import annotations

import errno
import os
import uuid
from pathlib import Path

import posix_ipc

__all__ = [
    "MQ_DIR",
    "our_anonymous_lindas",
    "PREFIX",
    "SHM_DIR",
    "leftovers",
    "new_name",
    "queue_exists",
    "remove_named",
]

#: Every name a test makes starts with this; the random part is this pytest
#: session's, so sessions running side by side never judge each other's names.
PREFIX = f"luaipct-{uuid.uuid4().hex[:6]}-"
SHM_DIR = Path("/dev/shm")
MQ_DIR = Path("/dev/mqueue")


def new_name() -> str:
    """A fresh random name of this session (the ``make_name`` fixture also
    removes what it names)."""
    return PREFIX + uuid.uuid4().hex[:12]


def queue_exists(name: str) -> bool:
    """Whether the message queue "/name" exists (asked of the kernel by
    name: no mqueue mount is needed, which these machines lack)."""
    try:
        posix_ipc.MessageQueue("/" + name).close()
    except posix_ipc.ExistentialError:
        return False
    return True


def leftovers(name: str) -> list[str]:
    """What is left of a named shm, semaphore, queue or linda called name:
    [] once all are gone."""
    found = [str(p) for p in (SHM_DIR / name, SHM_DIR / f"sem.{name}",
                              SHM_DIR / f"linda.{name}") if p.exists()]
    if queue_exists(name):
        found.append(f"mq /{name}")
    return found


def remove_named(name: str) -> None:
    """Remove whatever shm, semaphore, queue or linda is called name."""
    for p in (SHM_DIR / name, SHM_DIR / f"sem.{name}", SHM_DIR / f"linda.{name}"):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            # ENAMETOOLONG: "sem." + a name of 252-255 bytes is longer than
            # a file name may be, so no such semaphore can exist
            if exc.errno != errno.ENAMETOOLONG:
                raise
    try:
        posix_ipc.unlink_message_queue("/" + name)
    except posix_ipc.ExistentialError:
        pass


def _ours(path: Path) -> bool:
    """Whether an anonymous linda (linda.anon.<creator pid>.<hex>) may be
    this session's: made by this process, or by one that has ended (a
    child).  One whose creator still runs elsewhere may be another
    session's, in use (pytest sessions and fuzz children side by side):
    judging or removing it broke their pools."""
    pid = path.name.split(".")[2]
    if not pid.isdigit() or int(pid) == os.getpid():
        return True
    return not Path(f"/proc/{pid}").exists()


def our_anonymous_lindas() -> set[Path]:
    """The anonymous lindas in /dev/shm that may be this session's."""
    return {p for p in SHM_DIR.glob("linda.anon.*") if _ours(p)}
