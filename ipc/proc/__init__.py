"""Subprocesses with stdin, stdout and stderr pipes that never lose data or
deadlock.

    from ipc import proc

    def got(stream, data):          # stream is "stdout" or "stderr"
        print(stream, data)

    with proc.spawn(["sort", "-r"], stdin=True, stdout=True, callback=got) as p:
        p.write(b"a\\nb\\nc\\n")
        p.close_stdin()             # EOF once everything queued is sent
        p.wait()                    # -> 0 (negative: killed by that signal)

``cmd`` is a string (run by ``/bin/sh -c``, as ``os.system``) or a list of
arguments (run directly: nothing in an argument is ever seen by a shell).
``stdin``/``stdout``/``stderr``: ``True`` (or ``PIPE``) makes a pipe, ``None``
or ``False`` inherits the parent's stream, a file object or a descriptor
redirects to it (``stderr=STDOUT`` merges it into stdout).  Output from the
pipes goes to ``callback(stream, data)`` while ``wait()`` runs.

The loop behind ``wait()`` is CPython's ``communicate`` made incremental: one
``poll()`` over non-blocking pipes, input written in whatever the pipe takes,
output read in 64 KiB chunks, ``BrokenPipeError`` stops the feeding (the
child is not reading any more; where SIGPIPE is not ignored, as under
``luaipc``, it is blocked around the writes, so that this stays an EPIPE
instead of killing the process); once a single output pipe is all that is
left, a plain blocking read is the loop.  The child is reaped with a
blocking ``waitpid`` (or a pidfd when a timeout applies) once its pipes are
closed, so an idle child costs no CPU.  Output is delivered until every pipe
reaches EOF, so a background grandchild that keeps stdout open keeps
``wait()`` waiting (``kill_tree()`` ends it).  ``pipeline()`` chains
commands ``a | b | c`` with the same loop and no shell.  A handle is not
thread-safe; a handle that is garbage collected kills and reaps its
child(ren).  ``shutdown_all()`` ends every child this process still runs
(the exit path of a fatal signal: see ``ipc.cleanup_on_signals``).
"""
from __future__ import annotations

import errno as _errno
import os
import signal as _signal
import subprocess
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import IO, TYPE_CHECKING, Any, cast

from .._errors import Timeout, os_error, os_errors
from .._timeout import Deadline, timeout as check_timeout
from ._launch import Command, chain, popen, redirect
from ._pump import (
    READ_SIZE as READ_SIZE,  # re-exported: the size of a chunk
    Pump,
    pump_fds,
    wait_any,
    wait_exit,
)

if TYPE_CHECKING:
    from types import TracebackType

    from _typeshed import FileDescriptorLike, StrOrBytesPath
    from typing_extensions import Self

    #: A stream option: True/PIPE (a pipe), None/False (inherit), DEVNULL,
    #: STDOUT (stderr only), a file descriptor or a file object.
    Stream = FileDescriptorLike | None
    #: ``env=``: the child's whole environment, as Popen takes it.
    Env = Mapping[str, StrOrBytesPath] | Mapping[bytes, StrOrBytesPath]

__all__ = ["spawn", "pipeline", "run", "wait_all", "shutdown_all", "Process", "Pipeline",
           "PendingRun", "Result", "CalledProcessError",
           "PIPE", "STDOUT", "DEVNULL"]

#: Pass as stdin/stdout/stderr to make a pipe (``True`` does the same).
PIPE = subprocess.PIPE
#: Pass as stderr to send it where stdout goes.
STDOUT = subprocess.STDOUT
#: Pass to connect a stream to /dev/null.
DEVNULL = subprocess.DEVNULL

Callback = Callable[[str, bytes], Any]


#: The handles of this process, for shutdown_all() (weak: a handle still
#: goes, and kills its children, when its last reference does).  A forked
#: child starts with none: its parent's children are not its own.
_live: weakref.WeakSet[_Handle] = weakref.WeakSet()
os.register_at_fork(after_in_child=_live.clear)


def _shutdown(handles: list[_Handle], grace: float | None) -> None:
    """SIGTERM to every tree, one ``grace`` for all of them together, then
    SIGKILL to what is left; every child reaped, every pipe closed."""
    grace = check_timeout(grace, "grace")   # before any signal: bad input kills nothing
    try:
        for h in handles:
            h.kill_tree(_signal.SIGTERM)
        deadline = Deadline(grace)
        for h in handles:
            for p in h._popens:
                wait_exit(p, deadline.remaining())
    finally:
        for h in handles:
            h.kill_tree(_signal.SIGKILL)
            h.close()


def _check_handles(handles: object, fn: str) -> None:
    """TypeError unless ``handles`` is a sequence of Process and Pipeline."""
    if isinstance(handles, (str, bytes)) or not isinstance(handles, Sequence):
        raise TypeError(f"handles must be a sequence of Process or Pipeline, "
                        f"not {type(handles).__name__}")
    for h in handles:
        if not isinstance(h, _Handle):
            raise TypeError(f"{fn}() takes Process and Pipeline handles, "
                            f"not {type(h).__name__}")


def shutdown_all(grace: float = 0.5, handles: Sequence[_Handle] | None = None) -> None:
    """``shutdown(grace)`` of ``handles`` (by default every handle whose
    children may still run), all at once, so ten children cost one grace,
    not ten.  Without ``handles`` it is what luaipc and
    ``ipc.cleanup_on_signals()`` do on SIGTERM before the exit handlers,
    whose finalizers would only SIGKILL them."""
    if handles is None:
        handles = [h for h in list(_live) if not h._pump.done]
    _check_handles(handles, "shutdown_all")
    _shutdown(list(handles), grace)


def _finalize(popens: list[subprocess.Popen[bytes]], pump: Pump) -> None:
    """A handle nobody holds any more: kill and reap its children (no
    zombies), close its pipes.  Never raises."""
    for p in popens:
        try:
            if p.returncode is None:
                p.kill()
                p.wait()
        except BaseException:  # noqa: BLE001  (a finalizer must not raise)
            pass
    try:
        pump.close()
    except BaseException:  # noqa: BLE001
        pass


class _Handle:
    """What Process and Pipeline share: the loop, callbacks, signals."""

    _popens: list[subprocess.Popen[bytes]]
    _pump: Pump
    #: What the callback is told for each stream (the Lua face uses bytes).
    _NAMES: tuple[str | bytes, str | bytes] = ("stdout", "stderr")

    def _setup(self, popens: list[subprocess.Popen[bytes]], stdin_file: IO[bytes] | None,
               outputs: list[tuple[IO[bytes], str | bytes]],
               callback: Callback | None) -> None:
        try:
            self._take(popens, stdin_file, outputs, callback)
        except BaseException:
            # e.g. EMFILE on dup(): no handle, so no child may outlive this
            for p in popens:
                for f in (p.stdin, p.stdout, p.stderr):
                    if f is not None:
                        f.close()
                p.kill()
                p.wait()
            raise

    def _take(self, popens: list[subprocess.Popen[bytes]], stdin_file: IO[bytes] | None,
              outputs: list[tuple[IO[bytes], str | bytes]],
              callback: Callback | None) -> None:
        self._popens = popens
        self._callback = callback
        self._stdin_pipe = stdin_file is not None
        self._eof = False
        in_fd = os.dup(stdin_file.fileno()) if stdin_file is not None else -1
        outs = []
        for pipe, name in outputs:
            outs.append((os.dup(pipe.fileno()), name))
        # Popen's own file objects are closed now: the pump owns the dups.
        for p in popens:
            for f in (p.stdin, p.stdout, p.stderr):
                if f is not None:
                    f.close()
            p.stdin = p.stdout = p.stderr = None
        self._pump = Pump(popens, in_fd, outs)
        self._finalizer = weakref.finalize(self, _finalize, popens, self._pump)
        _live.add(self)

    # -- input ---------------------------------------------------------------

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        """Queue ``data`` for the child's stdin (sent while ``wait()`` runs).

        Raises ValueError without a stdin pipe or after ``close_stdin()``;
        data the child never reads (it exited) is dropped silently.
        """
        if not self._stdin_pipe:
            raise ValueError("stdin is not connected to a pipe")
        if self._eof:
            raise ValueError("stdin is already closed")
        if isinstance(data, str):
            data = data.encode()
        elif not isinstance(data, bytes):
            data = bytes(data)  # a snapshot: later changes to it don't leak in
        self._pump.feed(data)

    def close_stdin(self) -> None:
        """Close stdin once everything queued has been sent (idempotent)."""
        if not self._stdin_pipe:
            raise ValueError("stdin is not connected to a pipe")
        if not self._eof:
            self._eof = True
            self._pump.close_input()

    # -- the loop ----------------------------------------------------------------

    def _deliver(self, out: list[Any]) -> None:
        # Set whenever there is an output pipe (spawn and pipeline insist).
        cb = cast("Callback", self._callback)
        for i in range(0, len(out), 2):
            data = out[i + 1]
            if isinstance(data, OSError):
                raise data
            cb(out[i], data)

    def step(self, timeout: float | None = 0) -> bool:
        """One turn of the loop: wait at most ``timeout`` seconds for a pipe,
        move what can be moved, call the callback.  True once finished."""
        out: list[Any] = []
        self._pump.step(check_timeout(timeout), out)
        self._deliver(out)
        return self._pump.done

    def wait(self, timeout: float | None = None) -> int:
        """Send queued input, deliver output to the callback until the pipes
        close, and reap the child(ren).  ``None`` waits forever, ``0`` does
        what is possible without waiting, ``> 0`` waits at most that long;
        raises ``ipc.Timeout`` when it runs out (call ``wait`` again later)."""
        pump = self._pump
        timeout = check_timeout(timeout)
        if timeout is None:  # the common case: no clock read per turn
            while not pump.done:
                self.step(None)
            return cast("int", self.returncode)  # done: every child is reaped
        deadline = Deadline(timeout)
        while not pump.done:
            if deadline.expired:
                self.step(0)  # what can still be done without waiting
                if pump.done:
                    break
                raise os_error(_errno.ETIMEDOUT,
                               message=f"process did not finish within {timeout} s")
            self.step(deadline.remaining())
        return cast("int", self.returncode)

    @property
    def finished(self) -> bool:
        return self._pump.done

    @property
    def returncode(self) -> int | None:  # what Process and Pipeline report
        raise NotImplementedError

    @property
    def pump(self) -> Pump:
        """The loop itself (``ipc/proc/_pump.py``), for a face that runs its
        own wait loop instead of ``wait()``: the Lua face's ``h:wait()``
        runs in Lua, one ``Pump.step`` per turn, so that its callback may
        yield.  Not for programs: ``step()`` and ``wait()`` are."""
        return self._pump

    # -- signals -------------------------------------------------------------------

    def send_signal(self, sig: int) -> None:
        """Send ``sig`` to the child(ren) that have not been reaped yet."""
        for p in self._popens:
            p.send_signal(sig)  # polls first: never signals a reaped pid

    def terminate(self) -> None:
        self.send_signal(_signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(_signal.SIGKILL)

    def kill_tree(self, sig: int = _signal.SIGKILL) -> None:
        """Send ``sig`` to the child(ren) and all their descendants (psutil),
        e.g. what a shell command started in the background.

        Where the tree cannot be read (no descriptor left for psutil's
        import or for /proc: EMFILE), the children still get ``sig``:
        shutdown() runs on the error paths, and must end them there too."""
        try:
            import psutil  # ~14 ms: paid by the first tree killed, not by every import
            victims = []
            for p in self._popens:
                if p.returncode is not None:
                    continue
                try:
                    root = psutil.Process(p.pid)
                    kids = root.children(recursive=True)
                except psutil.Error:
                    continue
                # the parent first: it cannot react to its children dying (a
                # shell's `wait` returning, a supervisor restarting them)
                victims.append(root)
                victims.extend(kids)
        except (ImportError, OSError):
            self.send_signal(sig)
            return
        for v in victims:
            try:
                v.send_signal(sig)
            except psutil.Error:
                pass

    def descriptors(self) -> tuple[list[tuple[int, int]], list[int]] | None:
        """For an event loop: what to poll before the next ``step(0)`` can
        move, ``([(fd, select.POLLIN or POLLOUT)...], pidfds)``, the pidfds
        new and the caller's to close; None if ``step(0)`` can move now."""
        return pump_fds(self._pump, False)

    def shutdown(self, grace: float = 1.0) -> None:
        """Terminate the whole tree, wait up to ``grace`` seconds, then kill
        what is left and reap the child(ren); pipes are closed."""
        _shutdown([self], grace)

    def close(self) -> None:
        """Kill what is still running, reap it, close the pipes (idempotent)."""
        self._finalizer()
        self._pump.done = True

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            try:
                if self._stdin_pipe and not self._eof:
                    self.close_stdin()
                self.wait()
            finally:
                self.close()
        else:
            self.shutdown()


class Process(_Handle):
    """A running command; see the module docstring.  Use ``spawn()``."""

    def __init__(self, cmd: Command, *, stdin: Stream = None, stdout: Stream = None,
                 stderr: Stream = None, callback: Callback | None = None,
                 cwd: StrOrBytesPath | None = None, env: Env | None = None) -> None:
        r_in, r_out, r_err = (redirect(stdin, "stdin"), redirect(stdout, "stdout"),
                              redirect(stderr, "stderr"))
        if (PIPE in (r_out, r_err)) and not callable(callback):
            raise TypeError("a callback is required when stdout or stderr is a pipe")
        p = popen(cmd, r_in, r_out, r_err, cwd, env)
        outputs = []
        if p.stdout is not None:
            outputs.append((p.stdout, self._NAMES[0]))
        if p.stderr is not None:
            outputs.append((p.stderr, self._NAMES[1]))
        self._setup([p], p.stdin, outputs, callback)

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._popens[0].pid

    @property
    def returncode(self) -> int | None:
        """None while running; the exit code; -N when killed by signal N."""
        return self._popens[0].returncode

    @property
    def status(self) -> tuple[str, int] | None:
        """``("exit", code)`` or ``("signal", signum)`` once reaped, else None."""
        rc = self.returncode
        if rc is None:
            return None
        return ("signal", -rc) if rc < 0 else ("exit", rc)

    def __repr__(self) -> str:
        state = "running" if self.returncode is None else f"returncode={self.returncode}"
        return f"<ipc.proc.Process pid={self.pid} {state}>"


class Pipeline(_Handle):
    """``a | b | c`` without a shell: stdin feeds the first command, the
    callback gets the last one's stdout and (with ``stderr=True``) the
    stderr of them all.  Use ``pipeline()``."""

    def __init__(self, cmds: Sequence[Command], *, stdin: Stream = None,
                 stdout: Stream = None, stderr: Stream = None,
                 callback: Callback | None = None, cwd: StrOrBytesPath | None = None,
                 env: Env | None = None) -> None:
        if isinstance(cmds, (str, bytes)):  # list("ls | wc") would run "l", "s", ...
            raise TypeError("pipeline() takes a list of commands (each a list of arguments "
                            "or a shell string), not a single string")
        cmds = list(cmds)
        if not cmds:
            raise ValueError("a pipeline needs at least one command")
        r_in, r_out, r_err = (redirect(stdin, "stdin"), redirect(stdout, "stdout"),
                              redirect(stderr, "stderr"))
        if r_err == STDOUT:
            raise ValueError("stderr=STDOUT is not supported in a pipeline")
        if (PIPE in (r_out, r_err)) and not callable(callback):
            raise TypeError("a callback is required when stdout or stderr is a pipe")
        popens, err_r = chain(cmds, r_in, r_out, r_err, cwd, env)
        outputs = []
        if popens[-1].stdout is not None:
            outputs.append((popens[-1].stdout, self._NAMES[0]))
        err_file = None
        if err_r is not None:
            err_file = os.fdopen(err_r, "rb", buffering=0)
            outputs.append((err_file, self._NAMES[1]))
        self._setup(popens, popens[0].stdin, outputs, callback)
        if err_file is not None:
            err_file.close()

    @property
    def pids(self) -> list[int]:
        """Every stage's process id, first to last."""
        return [p.pid for p in self._popens]

    @property
    def pid(self) -> int:
        """The pid of the last command."""
        return self._popens[-1].pid

    @property
    def returncodes(self) -> list[int | None]:
        """Every stage's status (None until reaped; -N: killed by signal N)."""
        return [p.returncode for p in self._popens]

    @property
    def returncode(self) -> int | None:
        """The last command's return code (as a shell pipeline), once all
        are reaped; None before."""
        codes = self.returncodes
        return None if None in codes else codes[-1]

    def __repr__(self) -> str:
        return f"<ipc.proc.Pipeline pids={self.pids} returncodes={self.returncodes}>"


def spawn(cmd: Command, *, stdin: Stream = None, stdout: Stream = None,
          stderr: Stream = None, callback: Callback | None = None,
          cwd: StrOrBytesPath | None = None, env: Env | None = None) -> Process:
    """Start ``cmd`` (a shell string, or a list of arguments: no shell).

    An OS failure (EMFILE for a pipe, ENOENT for the command...) raises the
    ``IPCError`` of its errno."""
    with os_errors():
        return Process(cmd, stdin=stdin, stdout=stdout, stderr=stderr, callback=callback,
                       cwd=cwd, env=env)


def pipeline(cmds: Sequence[Command], *, stdin: Stream = None, stdout: Stream = None,
             stderr: Stream = None, callback: Callback | None = None,
             cwd: StrOrBytesPath | None = None, env: Env | None = None) -> Pipeline:
    """Start ``cmds[0] | cmds[1] | ...`` (each a list of arguments or a
    shell string), connected by pipes that do not pass through Python.
    OS failures as in ``spawn``."""
    with os_errors():
        return Pipeline(cmds, stdin=stdin, stdout=stdout, stderr=stderr, callback=callback,
                        cwd=cwd, env=env)


def wait_all(handles: Sequence[Process | Pipeline], timeout: float | None = None) -> list[int]:
    """Wait for several processes (or pipelines) at once and return their
    statuses, in the order given.

    Each is fed its queued input and has its output delivered to its
    callback as ``wait()`` does, all from one loop in this thread, so N
    children take about as long as the slowest, not the sum.  A handle may
    appear twice, and finished ones are fine.  ``timeout`` as for
    ``wait()``: ``ipc.Timeout`` when it runs out, with every handle left as
    it was (call again to go on); a callback's exception goes through, the
    same way."""
    _check_handles(handles, "wait_all")
    timeout = check_timeout(timeout)
    deadline = Deadline(timeout)
    pending = list(dict.fromkeys(handles))   # once each, in order
    while True:
        for h in pending:
            h.step(0)                         # move what moves without waiting
        pending = [h for h in pending if not h.finished]
        if not pending:
            return [cast("int", h.returncode) for h in handles]
        if deadline.expired:
            raise os_error(_errno.ETIMEDOUT, message=(
                f"{len(pending)} of {len(dict.fromkeys(handles))} processes did not "
                f"finish within {timeout} s"))
        with os_errors():                     # EMFILE for a pidfd, say
            wait_any([h.pump for h in pending], deadline.remaining())


def _pipefail(codes: Sequence[int]) -> int:
    """bash's ``set -o pipefail``: the last stage that failed decides, so a
    failure in the middle of a pipeline is not hidden by a ``cat`` after it."""
    return next((c for c in reversed(codes) if c != 0), 0)


class Result(tuple[int, bytes, bytes]):
    """What ``run()`` returns: unpacks as ``(returncode, stdout, stderr)``,
    and has the attributes of ``subprocess.CompletedProcess`` (``args``,
    ``returncode``, ``stdout``, ``stderr``, ``check_returncode()``), plus
    ``returncodes``, one status per stage (a single command has one).

    ``returncode`` follows bash's ``pipefail`` rule: the status of the last
    stage that failed, 0 when all succeeded.  A stage killed by a signal
    counts as ``-signum``, as in ``subprocess``."""

    # No __slots__: args and returncodes live beside the three tuple items,
    # which stay what older code unpacks.
    args: Any
    returncodes: tuple[int, ...]

    def __new__(cls, returncode: int, stdout: bytes, stderr: bytes, *,
                args: Any = None, returncodes: Sequence[int] | None = None) -> Self:
        self = super().__new__(cls, (returncode, stdout, stderr))
        self.args = args
        self.returncodes = tuple(returncodes) if returncodes is not None else (returncode,)
        return self

    def __getnewargs_ex__(self) -> tuple[tuple[int, bytes, bytes], dict[str, Any]]:
        return ((self[0], self[1], self[2]), {"args": self.args, "returncodes": self.returncodes})

    @property
    def returncode(self) -> int:
        """The pipefail status (see the class)."""
        return self[0]

    @property
    def stdout(self) -> bytes:
        """Everything the command wrote to stdout."""
        return self[1]

    @property
    def stderr(self) -> bytes:
        """Everything the commands wrote to stderr."""
        return self[2]

    def check_returncode(self) -> None:
        """Raise ``ipc.proc.CalledProcessError`` if ``returncode`` is not 0."""
        if self.returncode:
            raise CalledProcessError(self.returncode, self.args, self.stdout, self.stderr,
                                     returncodes=self.returncodes)

    def __repr__(self) -> str:
        return (f"Result(args={self.args!r}, returncode={self.returncode}, "
                f"returncodes={list(self.returncodes)}, stdout={self.stdout!r}, "
                f"stderr={self.stderr!r})")


class CalledProcessError(subprocess.CalledProcessError):
    """``run(..., check=True)`` found a non-zero status: a
    ``subprocess.CalledProcessError`` (so existing ``except`` clauses work)
    that also says which stage of a pipeline failed (``returncodes``).  It is
    not an ``OSError``: no system call failed."""

    def __init__(self, returncode: int, cmd: Any, output: bytes | None = None,
                 stderr: bytes | None = None, *,
                 returncodes: Sequence[int] | None = None) -> None:
        super().__init__(returncode, cmd, output, stderr)
        self.returncodes = tuple(returncodes) if returncodes is not None else (returncode,)

    def __reduce__(self) -> tuple[Any, ...]:
        # The default pickles only (returncode, cmd): keep the output too.
        return (_rebuild_called, (self.returncode, self.cmd, self.output, self.stderr,
                                  self.returncodes))

    def __str__(self) -> str:
        text = super().__str__()
        if len(self.returncodes) > 1:
            failed = [i + 1 for i, c in enumerate(self.returncodes) if c]
            text += (f" (pipeline statuses {list(self.returncodes)}; "
                     f"failed stage{'s' if len(failed) > 1 else ''} "
                     f"{', '.join(map(str, failed))})")
        return text


CalledProcessError.__module__ = "ipc.proc"


def _rebuild_called(returncode: int, cmd: Any, output: bytes | None, stderr: bytes | None,
                    returncodes: Sequence[int]) -> CalledProcessError:
    return CalledProcessError(returncode, cmd, output, stderr, returncodes=returncodes)


class PendingRun:
    """What ``run`` is made of, for a caller that waits its own way (an
    event loop: ``ipc.loop.run``): ``PendingRun(cmd, input, cwd=, env=)``
    starts ``cmd`` with its output collected and ``input`` queued;
    ``handle`` is the Process or Pipeline to wait for; ``finish(rc,
    check)`` closes it and gives the ``Result``."""

    def __init__(self, cmd: Command | Sequence[Command], input: bytes | None = None, *,
                 cwd: StrOrBytesPath | None = None, env: Env | None = None) -> None:
        self.cmd = cmd
        self._bufs: dict[str, list[bytes]] = {"stdout": [], "stderr": []}
        is_pipeline = (not isinstance(cmd, (str, bytes)) and cmd
                       and all(not isinstance(c, (str, bytes)) for c in cmd))
        start: Callable[..., _Handle] = pipeline if is_pipeline else spawn
        self.handle: Process | Pipeline = start(  # type: ignore[assignment]
            cmd, stdin=True if input is not None else DEVNULL, stdout=True, stderr=True,
            callback=self._collect, cwd=cwd, env=env)
        if input is not None:
            self.handle.write(input)
            self.handle.close_stdin()

    def _collect(self, stream: str, data: bytes) -> None:
        self._bufs[stream].append(data)

    def timed_out(self) -> None:
        """The wait ran out: kill the whole tree and close the handle."""
        self.handle.shutdown(0)
        self.handle.close()

    def finish(self, rc: int, check: bool = False) -> Result:
        """The handle has ended with ``rc``: close it, give the Result
        (``check``: raise CalledProcessError for a non-zero returncode)."""
        h = self.handle
        h.close()
        codes = [c for c in h.returncodes if c is not None] if isinstance(h, Pipeline) else [rc]
        result = Result(_pipefail(codes), b"".join(self._bufs["stdout"]),
                        b"".join(self._bufs["stderr"]), args=self.cmd, returncodes=codes)
        if check:
            result.check_returncode()
        return result


def run(cmd: Command | Sequence[Command], input: bytes | None = None, *,
        timeout: float | None = None, check: bool = False,
        cwd: StrOrBytesPath | None = None, env: Env | None = None) -> Result:
    """Run ``cmd`` (or a pipeline, given a list of commands that are lists)
    to the end, feeding ``input``, and collect its stdout and stderr.

    The result's ``returncode`` follows the ``pipefail`` rule and
    ``returncodes`` has every stage's status (see ``Result``).  With
    ``check=True`` a non-zero ``returncode`` raises
    ``ipc.proc.CalledProcessError``.  On a timeout the whole tree is killed
    and ``ipc.Timeout`` raised."""
    if not isinstance(check, bool):
        raise TypeError(f"check must be a bool, not {type(check).__name__}")
    pending = PendingRun(cmd, input, cwd=cwd, env=env)
    try:
        rc = pending.handle.wait(timeout)
    except Timeout:
        pending.timed_out()
        raise
    except BaseException:
        pending.handle.close()          # as a `with` of the handle would
        raise
    return pending.finish(rc, check)


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
