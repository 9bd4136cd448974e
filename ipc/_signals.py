"""``ipc.cleanup_on_signals()``: SIGTERM and SIGHUP end a Python program
the way a normal exit does (see the function)."""
from __future__ import annotations

import _signal  # the C module: signal's wrapper imports enum (start-up time)
import atexit
import sys

__all__ = ["cleanup_on_signals"]

#: What the call handles: ``kill``, ``docker stop`` and ``systemctl stop``
#: send SIGTERM, a terminal that closes sends SIGHUP.
SIGNALS = (_signal.SIGTERM, _signal.SIGHUP)

_received = 0  # the first signal that came (0: none yet)


def cleanup_on_signals() -> tuple[int, ...]:
    """Make SIGTERM and SIGHUP end this program as a normal exit would.

    Off by default: Python dies of these signals at once, and then no
    finalizer runs, so the shm segments, semaphores and message queues this
    process created keep their names and its ``ipc.proc`` children keep
    running.  After this call, the first of these signals raises
    ``SystemExit(128 + signum)`` in the main thread (a blocked
    ``sem.acquire()``, ``mq.receive()`` or ``proc`` wait ends with it), so
    ``finally`` blocks and ``with`` blocks run (a semaphore held with
    ``with sem:`` is given back), and then the normal exit: ``ipc.proc``
    children get SIGTERM, and SIGKILL after half a second, and are reaped;
    the exit handlers run, among them the finalizers of creator handles,
    which unlink the names.  The exit status is 128 + signum (143 for
    SIGTERM), the number a shell shows for a process killed by the signal.
    (``luaipc`` goes one step further and dies by the signal itself, as the
    ``lua`` it stands in for; a Python program keeps Python's own exit, whose
    interpreter teardown a re-raised signal would cut short.)

    Only the first signal counts: later ones are ignored while the program
    exits, so a burst (systemd's SIGTERM followed by SIGHUP) cannot cut the
    cleanup short; SIGKILL still ends it at once.  Non-daemon threads are
    waited for, as at any normal exit, and a program that catches the
    ``SystemExit`` goes on running.  A Lua loop running in one of this
    program's ``LuaRuntime``\\ s is not interrupted (``luaipc`` arms a hook
    for that; here the runtimes are the program's own).

    Call it from the main thread (``signal.signal``'s rule; ``ValueError``
    otherwise).  A signal that is not at its default disposition is left
    alone: ignored (``nohup``) or handled by the program.  Calling it again
    does nothing more.  Returns the signals it now handles.
    """
    import signal  # here: its wrapper's enums are for this call only
    handled = []
    for s in SIGNALS:
        current = signal.getsignal(s)
        if current == signal.SIG_DFL:
            signal.signal(s, _on_signal)
        elif current is not _on_signal:
            continue
        handled.append(signal.Signals(s))
    return tuple(handled)


def _on_signal(signum: int, _frame: object) -> None:
    global _received
    if _received:
        return
    _received = signum
    # Registered now, so it runs first among the exit handlers: before the
    # finalizers, which would SIGKILL the children without a grace.
    atexit.register(_stop_children)
    raise SystemExit(128 + signum)


def _stop_children() -> None:
    proc = sys.modules.get("ipc.proc")
    if proc is not None:  # no proc module loaded: no children to stop
        proc.shutdown_all()


def exit_pending() -> None:
    """Raise the exit of a signal this module handled, if one came.

    posix_ipc (1.3.2) lets only KeyboardInterrupt out of a wait that a
    signal interrupted: any other exception the handler raised, such as
    this module's SystemExit, is replaced by ``SignalError``, and the
    caller would wait on.  So ipc's waits call this after a SignalError,
    before they wait again.  (The program is ending: a later wait that a
    signal interrupts ends with the same SystemExit.)
    """
    if _received:
        raise SystemExit(128 + _received)
