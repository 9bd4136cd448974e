"""list_objects: the named objects, who holds them, and their state."""
from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable

from .holders import scan_processes
from .lease import BUSY, GONE, probe
from .objects import KINDS, NamedObject, check_kinds, find_objects


def list_objects(*, all_users: bool = False, kinds: Iterable[str] = KINDS,
                 pattern: str | None = None) -> list[NamedObject]:
    """The named objects on this machine, with the processes using them.

    By default only the current user's objects (``all_users=True`` for
    everyone's).  ``pattern`` is a glob on the name as the API spells it.
    Message queues are complete only when an mqueue filesystem is mounted
    (``mqueue_dir()``); otherwise only the queues some process has open
    are found.  Each object's ``state`` follows from its holders, the
    kernel's answer and what we could not inspect (``NamedObject.state``).
    """
    kinds = tuple(kinds)
    check_kinds(kinds)
    uid = os.geteuid()

    def wanted(o: NamedObject) -> bool:
        return (o.kind in kinds and (all_users or o.uid == uid)
                and (pattern is None or fnmatch.fnmatchcase(o.name, pattern)))

    found, mq_dev = find_objects()
    objs = [o for o in found if wanted(o)]
    scan = scan_processes(objs, mq_dev)
    objs += [q for q in scan.queues if wanted(q)]
    out = []
    for o in objs:
        if not o.holders and o.path is not None:
            verdict = probe(o.path, o.dev, o.ino)
            if verdict == GONE:
                continue  # removed (or replaced) since the directory was read
            o.open_anywhere = None if verdict is None else verdict == BUSY
        if not o.holders and o.open_anywhere is not False:
            o.unknown_pids = scan.uninspectable
            o.blind = scan.blind
        out.append(o)
    out.sort(key=lambda o: (KINDS.index(o.kind), o.name))
    return out
