"""The ``ipcctl`` command: list, remove and clean up named IPC objects.

    ipcctl ls [--json] [--all] [--kind KIND] [PATTERN]
    ipcctl rm KIND NAME...
    ipcctl clean [--dry-run] [--json] [--kind KIND] [PATTERN]

Names are spelled as in the Lua and Python APIs (no leading "/").  KIND is
``shm``, ``sem`` or ``mq``.  Exit status: 0 on success, 1 when something
could not be done (a missing name, a removal that failed), 2 on misuse.
Also runs as ``python -m ipc.cli.ipcctl``.
"""
from __future__ import annotations

import argparse
import errno
import json
import os
import stat
import sys

from .. import __version__
from .._errors import IPCError
from .. import _registry as reg

PROGNAME = "ipcctl"

STATE_TEXT = {reg.IN_USE: "in use", reg.ORPHANED: "orphaned", reg.UNKNOWN: "unknown"}


def _warn(msg: str) -> None:
    print(f"{PROGNAME}: {msg}", file=sys.stderr)


def _mq_note(kinds) -> None:
    if "mq" in kinds and reg.mqueue_dir() is None:
        _warn("note: no mqueue filesystem mounted: only message queues a process has "
              "open are seen, orphaned ones are not (mount -t mqueue none /dev/mqueue)")


def _size_text(obj: reg.NamedObject) -> str:
    return "?" if obj.size is None else str(obj.size)


def _procs_text(obj: reg.NamedObject) -> str:
    parts = [f"{h.pid} ({h.name})" for h in obj.holders]
    if obj.unknown_pids:
        parts.append(f"? ({len(obj.unknown_pids)} unreadable)")
    return ", ".join(parts) if parts else "-"


def _table(rows: list[list[str]], out) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths)] + [r[-1]]
        # numbers right-aligned (SIZE is column 2)
        cells[2] = r[2].rjust(widths[2])
        out.write("  ".join(cells).rstrip() + "\n")


def _kinds(args) -> tuple[str, ...]:
    return tuple(args.kind) if args.kind else reg.KINDS


def cmd_ls(args) -> int:
    kinds = _kinds(args)
    objs = reg.list_objects(all_users=args.all, kinds=kinds, pattern=args.pattern)
    if args.json:
        json.dump([o.as_dict() for o in objs], sys.stdout, indent=2)
        sys.stdout.write("\n")
    elif objs:
        rows = [["KIND", "NAME", "SIZE", "OWNER", "MODE", "VALUE", "STATE", "PROCESSES"]]
        for o in objs:
            rows.append([o.kind, _shown(o.name), _size_text(o), o.owner,
                         stat.filemode(stat.S_IFREG | o.mode)[1:],
                         "-" if o.value is None else str(o.value),
                         STATE_TEXT[o.state], _procs_text(o)])
        _table(rows, sys.stdout)
    else:
        who = "" if args.all else " of yours"
        print(f"no named objects{who}" + (f" matching {args.pattern!r}" if args.pattern else ""))
    _mq_note(kinds)
    return 0


def cmd_rm(args) -> int:
    # Check every name first: a name that tries to escape (../x, a/b) or is
    # too long is refused before anything touches the OS.
    bad = False
    for name in args.names:
        try:
            reg.check_name(args.kind, name)
        except IPCError as exc:
            if name.startswith("/"):
                hint = " (names are spelled without the leading '/')"
            elif exc.errno == errno.EINVAL:
                hint = " (a name is not empty, '.' or '..' and has no '/' or NUL)"
            else:
                hint = ""
            _warn(f"rm: {args.kind} {name!r}: {exc.strerror}{hint}")
            bad = True
    if bad:
        _warn("rm: nothing removed")
        return 2
    status = 0
    for name in args.names:
        try:
            reg.remove(args.kind, name)
        except IPCError as exc:
            _warn(f"rm: {args.kind} {name!r}: {exc.strerror}")
            status = 1
        else:
            if args.verbose:
                print(f"removed {args.kind} {name}")
    return status


def cmd_clean(args) -> int:
    kinds = _kinds(args)
    results = reg.clean(args.pattern, dry_run=args.dry_run, kinds=kinds)
    status = 0 if all(r.error is None for r in results) else 1
    if args.json:
        json.dump([r.as_dict() for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        verb = "would remove" if args.dry_run else "removed"
        for r in results:
            o = r.obj
            if r.error is not None:
                _warn(f"clean: {o.kind} {_shown(o.name)}: {r.error.strerror}")
            else:
                print(f"{verb} {o.kind} {_shown(o.name)} (size {_size_text(o)}, owner {o.owner})")
        done = sum(1 for r in results if r.error is None)
        if not results:
            print("nothing to clean: no orphaned objects of yours"
                  + (f" matching {args.pattern!r}" if args.pattern else ""))
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

    ls = sub.add_parser("ls", help="list named objects and the processes using them")
    ls.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    ls.add_argument("-a", "--all", action="store_true", help="objects of every user, not only yours")
    ls.add_argument("-k", "--kind", action="append", choices=reg.KINDS,
                    help="only this kind (may be repeated)")
    ls.add_argument("pattern", nargs="?", metavar="PATTERN", help="glob on the name, e.g. 'job-*'")
    ls.set_defaults(func=cmd_ls)

    rm = sub.add_parser("rm", help="remove named objects")
    rm.add_argument("kind", choices=reg.KINDS, metavar="KIND", help="shm, sem or mq")
    rm.add_argument("names", nargs="+", metavar="NAME")
    rm.add_argument("-v", "--verbose", action="store_true", help="say what was removed")
    rm.set_defaults(func=cmd_rm)

    cl = sub.add_parser("clean", help="remove your objects that no live process uses")
    cl.add_argument("-n", "--dry-run", action="store_true", help="only say what would be removed")
    cl.add_argument("--json", action="store_true", help="print JSON (a list of objects)")
    cl.add_argument("-k", "--kind", action="append", choices=reg.KINDS,
                    help="only this kind (may be repeated)")
    cl.add_argument("pattern", nargs="?", metavar="PATTERN", help="glob on the name, e.g. 'job-*'")
    cl.set_defaults(func=cmd_clean)
    return p


def _shown(name: str) -> str:
    """A name for people: undecodable bytes and control characters as
    \\xNN (never raw to the terminal, never as surrogate escapes)."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def main(argv: list[str] | None = None) -> int:
    # Names are file names: show undecodable bytes rather than crash.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(errors="backslashreplace")
        except (AttributeError, ValueError):
            pass
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except BrokenPipeError:  # ipcctl ls | head
        try:
            sys.stdout = None  # type: ignore[assignment]
        except Exception:
            pass
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
