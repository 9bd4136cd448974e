"""The one timeout rule of every API in ipc, and the one deadline.

``None`` waits forever, ``0`` tries once, ``> 0`` waits at most that many
seconds.  A negative timeout also waits forever (as ``threading`` does, and
as LuaIPC's ``dec`` does from Lua), and so does one longer than ``FOREVER``.
NaN, booleans and non-numbers are errors.

A wait that may take several OS calls (a retry after a signal, a poll that
woke for another descriptor, a lock polled in steps) keeps one ``Deadline``
and asks it what is left before each call, so the calls add up to the
timeout it was given, never to more.  The Lua faces get ``FOREVER`` from
their core (``ipc/<module>/lua.py`` lists it in ``__all__``), never a
number of their own.
"""
from __future__ import annotations

import math
from time import monotonic

__all__ = ["FOREVER", "Deadline", "poll_ms", "timeout"]

#: Longer than this (about 34 years) is forever: sem_timedwait, poll and
#: select cannot express it anyway.
FOREVER = float(2 ** 30)

#: poll() takes a C int of milliseconds (about 24.8 days): a longer wait
#: polls again.
_POLL_MAX_MS = 2 ** 31 - 1


def timeout(value: float | None, what: str = "timeout") -> float | None:
    """``value`` as seconds to wait, or None for forever."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} must be a number or None, not {type(value).__name__}")
    if math.isnan(value):
        raise ValueError(f"{what} must not be NaN")
    if value < 0 or value > FOREVER:
        return None
    return float(value)


class Deadline:
    """When a wait of ``timeout`` seconds (as ``timeout()`` returns it;
    None: no end) that began at ``start`` (``time.monotonic()``; default:
    now) must be over.  On the monotonic clock, so that setting the system
    clock neither stretches nor cuts a wait short.

    A call that first tries once without waiting takes ``start`` at its
    entry and makes the Deadline only when it has to wait: a try that
    succeeds then costs one clock read, not an object.
    """

    __slots__ = ("_at",)

    def __init__(self, timeout: float | None, start: float | None = None) -> None:
        if timeout is None:
            self._at: float | None = None
        else:
            self._at = (monotonic() if start is None else start) + timeout

    def remaining(self) -> float | None:
        """Seconds left (0.0 once the deadline has passed); None: no end."""
        at = self._at
        if at is None:
            return None
        left = at - monotonic()
        return max(0.0, left)

    @property
    def expired(self) -> bool:
        """True once the deadline has passed (never without an end)."""
        at = self._at
        return at is not None and monotonic() >= at

    def __repr__(self) -> str:
        left = self.remaining()
        return "<Deadline never>" if left is None else f"<Deadline in {left:.3f} s>"


def poll_ms(seconds: float | None) -> int | None:
    """``seconds`` as poll()'s timeout: milliseconds rounded up (a wait
    rounded down would wake before its deadline, find time left and poll
    again for 0 ms, spinning), at most what a C int holds, never negative
    (poll() reads a negative timeout as forever); None: forever."""
    if seconds is None:
        return None
    if seconds <= 0:
        return 0
    return min(math.ceil(seconds * 1000), _POLL_MAX_MS)
