"""Closing a handle while other threads are blocked on it.

posix_ipc releases the GIL while it waits, and its ``close()`` frees the
OS object at once:

* ``sem_close`` unmaps the semaphore under a thread still inside
  ``sem_timedwait``, which dies with SIGSEGV when the wait returns (POSIX:
  "If any threads in the calling process are currently blocked on the
  semaphore, the behavior is undefined");
* ``mq_close`` frees the descriptor number, and the next ``open`` in any
  thread may get it back, so a blocked call's retry would land on another
  file.

So a handle keeps the calls that may be using its OS object in flight in
an ``InFlight``, and the OS close runs exactly once: in ``close()`` when no
call is in flight, else in the last call to leave.  Waking the calls that
are blocked is each module's business (sem waits in slices, mq polls a
wake-up descriptor).
"""
from __future__ import annotations

import contextlib
import os
import weakref
from collections.abc import Callable

#: Every InFlight of this process, for _forked.
_ALL: weakref.WeakSet[InFlight] = weakref.WeakSet()


def _forked() -> None:
    """In a child made by fork(): the calls the parent had in flight are in
    threads the child does not have, so they will never leave."""
    for inflight in list(_ALL):
        inflight.calls.clear()


os.register_at_fork(after_in_child=_forked)


class InFlight:
    """The calls in flight on one OS handle, and its one OS close.

    The hot path inlines the protocol (a method call would cost more than
    the rest of an uncontended ``dec()``)::

        calls = self._inflight.calls
        calls.append(None)            # before reading the "closed" state
        try:
            ... use the OS object, unless the handle is closed ...
        finally:
            calls.pop()
            if <the handle is closed>:
                self._inflight.close()

    ``close()`` marks the handle closed *then* calls ``InFlight.close``: a
    call that entered before sees the handle open and leaves the OS close
    to whoever leaves last; one that enters after sees it closed and never
    touches the OS object.  A ``close()`` that still uses the OS object
    after marking the handle closed (mq sets its wake-up descriptor) enters
    ``calls`` itself first, like any other call.
    """

    __slots__ = ("__weakref__", "_close", "calls")

    def __init__(self, close: Callable[[], None]) -> None:
        #: One entry per call in flight.  ``list.append`` and ``list.pop``
        #: are atomic in CPython (and locked on free-threaded builds), so
        #: counting costs no lock.
        self.calls: list[None] = []
        self._close = [close]
        _ALL.add(self)

    def close(self) -> None:
        """Run the OS close if no call is in flight and it has not run yet.

        Never raises (it also runs from finalizers)."""
        if self.calls:
            return                    # the last call to leave does it
        try:
            close = self._close.pop()  # atomic: only one caller gets it
        except IndexError:
            return
        with contextlib.suppress(Exception):
            close()
