"""The one timeout rule of every Python API in ipc.

``None`` waits forever, ``0`` tries once, ``> 0`` waits at most that many
seconds.  A negative timeout also waits forever (as ``threading`` does, and
as LuaIPC's ``dec`` does from Lua), and so does one too large for the OS
to sleep.  NaN, booleans and non-numbers are errors.
"""
from __future__ import annotations

import math

#: Longer than this (about 31 years) is forever: sem_timedwait, poll and
#: select cannot express it anyway.
FOREVER = float(2 ** 30)


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
