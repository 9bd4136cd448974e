"""The ``ipcctl`` command: list, remove and clean up named IPC objects.

    ipcctl ls [--json] [--all] [--kind KIND] [PATTERN]
    ipcctl rm KIND NAME...
    ipcctl clean [--dry-run] [--json] [--kind KIND] [PATTERN]

Names are spelled as in the Lua and Python APIs (no leading "/").  KIND is
``shm``, ``sem`` or ``mq``.  Exit status: 0 on success, 1 when something
could not be done (a missing name, a removal that failed), 2 on misuse.
Also runs as ``python -m ipc.cli.ipcctl``.

An object is *in use* when any process, of any user, has it open or
mapped, *orphaned* when none has, and *unknown* when ipcctl cannot tell
(a process it may not inspect could be using it): ``clean`` removes only
orphans.  Run as root to see every process.

Names are file names: any bytes but "/" and NUL.  For people (the table,
messages, ``rm -v``) ``_shown()`` escapes undecodable bytes and control
characters; ``--json`` has the exact bytes too (``JSON_HELP``, printed by
``ipcctl ls --help``).
"""
from __future__ import annotations

import argparse
import errno
import io
import json
import os
import stat
import sys

from .. import __version__, _scan as reg
from .._errors import IPCError

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from collections.abc import Iterable
    from typing import TextIO

PROGNAME = "ipcctl"

JSON_HELP = """\
--json prints a list of objects with the keys kind, name, name_hex, path,
path_hex, size, uid, owner, mode, state (in-use, orphaned or unknown),
processes (pid, name, how), unknown_processes (how many processes ipcctl
may not inspect could be using it) and value; clean adds removed and
error.  The output is ASCII.  A name is any bytes but "/" and NUL: name
and path are exact text when they are UTF-8, and shown with \\xNN escapes
when not (as in the table); name_hex and path_hex are always their exact
bytes in hex (path_hex is null when path is), so a program finds the
very file with bytes.fromhex(obj["path_hex"])."""

STATE_TEXT = {reg.IN_USE: "in use", reg.ORPHANED: "orphaned", reg.UNKNOWN: "unknown"}


def _warn(msg: str) -> None:
    print(f"{PROGNAME}: {msg}", file=sys.stderr)


def _mq_note(kinds: Iterable[str]) -> None:
    if "mq" in kinds and reg.mqueue_dir() is None:
        _warn("note: no mqueue filesystem mounted: only message queues a process has "
              "open are seen, orphaned ones are not (mount -t mqueue none /dev/mqueue)")


def _size_text(obj: reg.NamedObject) -> str:
    return "?" if obj.size is None else str(obj.size)


def _procs_text(obj: reg.NamedObject) -> str:
    parts = [f"{h.pid} ({_shown(h.name)})" for h in obj.holders]
    if obj.unknown_pids:
        parts.append(f"? ({len(obj.unknown_pids)} unreadable)")
    elif obj.state != reg.ORPHANED and not obj.holders:
        parts.append("? (not visible to you)")
    return ", ".join(parts) if parts else "-"


def _shown(name: str) -> str:
    """A name for people: undecodable bytes and control characters as
    \\xNN, \\n... (never raw to the terminal, never as surrogate escapes).
    The one way ipcctl shows a name that came from the system."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _quoted(name: str) -> str:
    return f"'{_shown(name)}'"


def _is_utf8(text: str) -> bool:
    """False for a name with bytes that are not UTF-8 (os.fsdecode keeps
    them as lone surrogates, which are not text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json_text(text: str) -> str:
    """Exact when it is UTF-8 (JSON escapes what needs it), else shown:
    strict JSON parsers refuse a lone surrogate."""
    return text if _is_utf8(text) else _shown(text)


def _object_json(o: reg.NamedObject) -> dict[str, object]:
    """Stable keys, for ``ls --json`` and ``clean --json``."""
    return {
        "kind": o.kind, "name": _json_text(o.name),
        "name_hex": os.fsencode(o.name).hex(),
        "path": None if o.path is None else _json_text(o.path),
        "path_hex": None if o.path is None else os.fsencode(o.path).hex(),
        "size": o.size, "uid": o.uid, "owner": _json_text(o.owner),
        "mode": f"{o.mode:04o}", "state": o.state,
        "processes": [{"pid": h.pid, "name": _json_text(h.name), "how": h.how}
                      for h in o.holders],
        "unknown_processes": len(o.unknown_pids),
        "value": o.value,
    }


def _clean_json(r: reg.CleanResult) -> dict[str, object]:
    d = _object_json(r.obj)
    d["removed"] = r.removed
    d["error"] = None if r.error is None else r.error.strerror
    return d


def _dump_json(items: list[dict[str, object]]) -> None:
    json.dump(items, sys.stdout, indent=2)  # ensure_ascii: plain ASCII, whatever the locale
    sys.stdout.write("\n")


def _table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        # the last column is not padded: one cell fewer than widths
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=False)] + [r[-1]]
        # numbers right-aligned (SIZE is column 2)
        cells[2] = r[2].rjust(widths[2])
        out.write("  ".join(cells).rstrip() + "\n")


def _kinds(args: argparse.Namespace) -> tuple[str, ...]:
    return tuple(args.kind) if args.kind else reg.KINDS


def cmd_ls(args: argparse.Namespace) -> int:
    kinds = _kinds(args)
    objs = reg.list_objects(all_users=args.all, kinds=kinds, pattern=args.pattern)
    if args.json:
        _dump_json([_object_json(o) for o in objs])
    elif objs:
        rows = [["KIND", "NAME", "SIZE", "OWNER", "MODE", "VALUE", "STATE", "PROCESSES"]]
        for o in objs:
            rows.append([o.kind, _shown(o.name), _size_text(o), _shown(o.owner),
                         stat.filemode(stat.S_IFREG | o.mode)[1:],
                         "-" if o.value is None else str(o.value),
                         STATE_TEXT[o.state], _procs_text(o)])
        _table(rows, sys.stdout)
    else:
        who = "" if args.all else " of yours"
        print(f"no named objects{who}" + _matching(args.pattern))
    _mq_note(kinds)
    return 0


def _name_hint(name: str, exc: IPCError) -> str:
    """Why check_name refused name, in words."""
    if exc.errno != errno.EINVAL:
        return ""
    if name.startswith("/"):
        return " (names are spelled without the leading '/')"
    if not _is_utf8(name):
        return (" (the name is not UTF-8, which the API refuses; `ipcctl clean PATTERN` "
                "removes such an object by its file once it is orphaned)")
    return " (a name is not empty, '.' or '..' and has no '/' or NUL)"


def _matching(pattern: str | None) -> str:
    return f" matching {_quoted(pattern)}" if pattern else ""


def cmd_rm(args: argparse.Namespace) -> int:
    # Check every name first: a name that tries to escape (../x, a/b) or is
    # too long is refused before anything touches the OS.
    bad = False
    for name in args.names:
        try:
            reg.check_name(args.kind, name)
        except IPCError as exc:
            _warn(f"rm: {args.kind} {_quoted(name)}: {exc.strerror}{_name_hint(name, exc)}")
            bad = True
    if bad:
        _warn("rm: nothing removed")
        return 2
    status = 0
    for name in args.names:
        try:
            reg.remove(args.kind, name)
        except IPCError as exc:
            _warn(f"rm: {args.kind} {_quoted(name)}: {exc.strerror}")
            status = 1
        else:
            if args.verbose:
                print(f"removed {args.kind} {_shown(name)}")
    return status


def cmd_clean(args: argparse.Namespace) -> int:
    kinds = _kinds(args)
    results = reg.clean(args.pattern, dry_run=args.dry_run, kinds=kinds)
    status = 0 if all(r.error is None for r in results) else 1
    if args.json:
        _dump_json([_clean_json(r) for r in results])
    else:
        verb = "would remove" if args.dry_run else "removed"
        done = 0
        for r in results:
            o = r.obj
            what = f"{o.kind} {_shown(o.name)}"
            if r.error is not None:
                _warn(f"clean: {what}: {r.error.strerror}")
            elif o.state == reg.UNKNOWN:
                n = len(o.unknown_pids)
                who = (f"{n} process{'es' if n != 1 else ''} you may not inspect" if n
                       else "/proc hides processes from you")
                print(f"kept {what}: unknown whether it is in use ({who}; root sees all)")
            else:
                print(f"{verb} {what} (size {_size_text(o)}, owner {_shown(o.owner)})")
                done += 1
        if not results:
            print("nothing to clean: no orphaned objects of yours" + _matching(args.pattern))
        else:
            things = f"{done} object{'s' if done != 1 else ''}"
            print(f"{things} would be removed" if args.dry_run else f"{things} removed")
    _mq_note(kinds)
    return status


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROGNAME,
        description="List, remove and clean up named shared memory, semaphores and "
                    "message queues (names as the luaipc API spells them, without '/').")
    p.add_argument("--version", action="version", version=f"{PROGNAME} (luaipc) {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    ls = sub.add_parser("ls", help="list named objects and the processes using them",
                        epilog=JSON_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    ls.add_argument("-a", "--all", action="store_true",
                    help="objects of every user, not only yours")
    ls.add_argument("-k", "--kind", action="append", choices=reg.KINDS,
                    help="only this kind (may be repeated)")
    ls.add_argument("pattern", nargs="?", metavar="PATTERN", help="glob on the name, e.g. 'job-*'")
    ls.set_defaults(func=cmd_ls)

    rm = sub.add_parser("rm", help="remove named objects")
    rm.add_argument("kind", choices=reg.KINDS, metavar="KIND", help="shm, sem, mq or linda")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-v", "--verbose", action="store_true", help="say what was removed")
    rm.set_defaults(func=cmd_rm)

    cl = sub.add_parser("clean", help="remove your objects that no live process uses",
                        epilog=JSON_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    cl.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    cl.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    cl.add_argument("-k", "--kind", action="append", choices=reg.KINDS,
                    help="only this kind (may be repeated)")
    cl.add_argument("pattern", nargs="?", metavar="PATTERN", help="glob on the name, e.g. 'job-*'")
    cl.set_defaults(func=cmd_clean)
    return p


def main(argv: list[str] | None = None) -> int:
    # Names reach output through _shown(); this is for argparse, which
    # echoes a bad argument (a surrogate escape) as it is.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        status: int = args.func(args)
    except BrokenPipeError:  # ipcctl ls | head
        sys.stdout = None  # nothing left to flush at exit
        return 0
    except KeyboardInterrupt:
        return 130
    return status


if __name__ == "__main__":
    sys.exit(main())
