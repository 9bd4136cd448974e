"""Starting children: stream options as Popen takes them, and ``a | b | c``
as a chain of Popens joined by pipes that do not pass through Python.

Everything here either succeeds or leaves nothing behind: a failure on the
way (EMFILE for a pipe, ENOENT for a command) closes the descriptors made
so far and kills and reaps the children already started.
"""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .._errors import os_error

__all__ = ["Command", "chain", "popen", "redirect"]

PIPE, STDOUT = subprocess.PIPE, subprocess.STDOUT

Command = str | bytes | Sequence[str | bytes | os.PathLike[str] | os.PathLike[bytes]]


def redirect(v: Any, what: str) -> Any:
    """What Popen gets for a stream option (None: inherit)."""
    if v is None or v is False:
        return None
    if v is True or (isinstance(v, int) and not isinstance(v, bool) and v == PIPE):
        return PIPE
    if isinstance(v, int):
        if v == STDOUT and what != "stderr":
            raise ValueError("STDOUT is only valid for stderr")
        return v
    if hasattr(v, "fileno"):
        if hasattr(v, "flush"):
            v.flush()  # what Python buffered goes first
        return v.fileno()
    raise TypeError(f"{what} must be True/PIPE, None/False, DEVNULL, a file "
                    f"descriptor or a file object, not {type(v).__name__}")


def popen(cmd: Command, stdin: Any, stdout: Any, stderr: Any, cwd: Any,
          env: Any) -> subprocess.Popen[bytes]:
    """Start ``cmd``: a string through ``/bin/sh -c``, a list directly."""
    if env is not None and not isinstance(env, Mapping):
        raise TypeError(f"env must be a mapping or None, not {type(env).__name__}")
    if isinstance(cmd, (str, bytes)):
        shell = True
    elif isinstance(cmd, Iterable):
        cmd = list(cmd)
        if not cmd:
            raise ValueError("empty command")
        shell = False
    else:
        raise TypeError(f"cmd must be a str or a list of arguments, not {type(cmd).__name__}")
    try:
        return subprocess.Popen(cmd, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
                                bufsize=0, cwd=cwd, env=env, close_fds=True)
    except FileNotFoundError as exc:
        program = cmd[0] if isinstance(cmd, list) else None
        if isinstance(program, str) and " " in program and exc.filename == program:
            # ["echo hi", ...]: a shell command line where a program was meant.
            err = os_error(errno.ENOENT, program)
            err.reason = ("a list is one program and its arguments; pass a shell "
                          "command line as one string, a pipeline as a list of lists")
            raise err from None
        raise


def chain(cmds: list[Command], stdin: Any, stdout: Any, stderr: Any, cwd: Any,
          env: Any) -> tuple[list[subprocess.Popen[bytes]], int | None]:
    """Start ``cmds[0] | cmds[1] | ...``: ``stdin`` feeds the first,
    ``stdout`` takes the last one's output, ``stderr`` (as ``redirect``
    gives them) takes every command's.  Returns the Popens and, when
    ``stderr`` is PIPE, the read end of the one pipe all their stderrs
    share (else None)."""
    popens: list[subprocess.Popen[bytes]] = []
    ours: list[int] = []                    # descriptors to close on the way
    err_r = err_w = None
    try:
        if stderr == PIPE:
            err_r, err_w = os.pipe()
            ours += [err_r, err_w]
        prev = stdin
        for i, cmd in enumerate(cmds):
            last = i == len(cmds) - 1
            nxt = None
            if last:
                out = stdout
            else:
                nxt, out = os.pipe()
                ours += [nxt, out]
            p = popen(cmd, prev, out, err_w if err_w is not None else stderr, cwd, env)
            popens.append(p)
            # The child has its copies now: drop the ends we passed on.
            for fd in (prev if i > 0 else None, None if last else out):
                if fd is not None:
                    ours.remove(fd)
                    os.close(fd)
            prev = nxt
        if err_w is not None:
            ours.remove(err_w)
            os.close(err_w)
    except BaseException:
        for fd in ours:
            os.close(fd)
        for p in popens:
            for f in (p.stdin, p.stdout):
                if f is not None:
                    f.close()
            p.kill()
            p.wait()
        raise
    return popens, err_r
