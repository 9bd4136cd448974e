"""Removing: by name (``ipcctl rm``) and the clean policy (``ipcctl clean``)."""
from __future__ import annotations

import errno
import os
from collections.abc import Iterable
from dataclasses import dataclass

from .._errors import IPCError, from_posix_ipc, os_error
from .census import list_objects
from .lease import BUSY, GONE, write_lease
from .objects import (
    IN_USE,
    KINDS,
    LINDA_PREFIX,
    ORPHANED,
    SHM_DIR,
    UNKNOWN,
    NamedObject,
    check_name,
)


def remove(kind: str, name: str) -> None:
    """Unlink the named object (``shm_unlink``/``sem_unlink``/``mq_unlink``).

    Raises ``NotFoundError`` if there is none, ``PermissionDenied`` if it
    is not ours to remove, EINVAL/ENAMETOOLONG for a bad name (checked
    before anything touches the OS).  Processes that have it open or
    mapped keep it until they let go; the name is free at once.
    """
    import posix_ipc

    osn = check_name(kind, name)
    if kind == "linda":
        try:
            os.unlink(f"{SHM_DIR}/{LINDA_PREFIX}{osn[1:]}")
        except OSError as exc:
            raise os_error(exc.errno or errno.EIO, name) from exc
        return
    unlink = {"shm": posix_ipc.unlink_shared_memory,
              "sem": posix_ipc.unlink_semaphore,
              "mq": posix_ipc.unlink_message_queue}[kind]
    try:
        unlink(osn)
    except posix_ipc.Error as exc:
        raise from_posix_ipc(exc, name) from exc
    except OSError as exc:
        raise os_error(exc.errno or errno.EIO, name) from exc


@dataclass
class CleanResult:
    """What clean did with one object: removed it, would remove it (dry
    run), left it because its state is UNKNOWN, or failed (error)."""
    obj: NamedObject
    removed: bool
    error: IPCError | None = None


def _remove_unused(obj: NamedObject) -> bool:
    """Unlink obj's file if nobody uses it; False if it went meanwhile
    (another clean, its owner) or was picked up.  Raises IPCError.

    By its file, not by name: on Linux that is what shm_unlink, sem_unlink
    and mq_unlink do, and it also removes a name the API refuses (not
    UTF-8: made by a C program or an old version).  Under a write lease
    when the kernel grants one, so no process can start using the object
    between the check and the unlink; the name cannot be given to another
    file meanwhile either, since the sticky directory lets only its owner
    (us) or root rename over it or remove it.
    """
    path = obj.path
    if path is None:  # a queue seen only through a holder, which is in use
        raise ValueError(f"{obj.kind} {obj.name!r} has no file to remove")
    with write_lease(path, obj.dev, obj.ino) as verdict:
        if verdict in (GONE, BUSY):
            return False
        # FREE, or None: we could not ask the kernel, and the second scan
        # of the processes (clean) is the answer.
        try:
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) != (obj.dev, obj.ino):
                return False
            os.unlink(path)
        except FileNotFoundError:
            return False  # removed meanwhile: what we wanted, not an error
        except OSError as exc:
            raise os_error(exc.errno or errno.EIO, obj.name) from exc
    return True


def clean(pattern: str | None = None, *, dry_run: bool = False,
          kinds: Iterable[str] = KINDS) -> list[CleanResult]:
    """Remove the current user's orphaned objects (no process uses them).

    Looks twice: objects that look orphaned are checked again by a second
    listing just before they are removed, and only removed if they are
    still the same file (same inode) and still unused, under a write lease
    where the kernel grants one (``_remove_unused``).  Objects in use are
    never touched, nor are other users' objects; objects whose state is
    unknown are left too, and come back with ``removed`` false.  Objects
    that disappear meanwhile (another clean removed them) are not an
    error and are not reported.  With ``dry_run`` nothing is removed; the
    results say what would be.
    """
    kinds = tuple(kinds)
    first = [o for o in list_objects(kinds=kinds, pattern=pattern)
             if o.state in (ORPHANED, UNKNOWN)]
    again = {}
    if any(o.state == ORPHANED for o in first):
        again = {(o.kind, o.name, o.dev, o.ino): o
                 for o in list_objects(kinds=kinds, pattern=pattern)}
    results = []
    for seen in first:
        o = seen  # as the first listing saw it; an orphan as the second one sees it
        if seen.state == ORPHANED:
            now = again.get((seen.kind, seen.name, seen.dev, seen.ino))
            if now is None or now.state == IN_USE:
                continue  # gone, replaced, or picked up meanwhile
            o = now
        if dry_run or o.state == UNKNOWN:
            results.append(CleanResult(o, False))
            continue
        try:
            removed = _remove_unused(o)
        except IPCError as exc:
            results.append(CleanResult(o, False, exc))
        else:
            if removed:
                results.append(CleanResult(o, True))
    return results
