"""Lindas: named stores of keyed FIFO queues of values, between processes.

    from ipc import linda

    with linda.create("jobs") as l:             # l = linda.open("jobs") elsewhere
        l.send("todo", {"file": "a.txt", "n": 3})
        key, job = l.receive("todo", "stop", timeout=5)   # ipc.Timeout after 5 s
        l.set("config", {"depth": 2})           # a slot: not consumed by get()
        l.get("config")                         # {'depth': 2}

The Lanes linda (``lanes.linda()`` in ``require "ipc.lanes"``), between
processes: Lua scripts on any engine and Python programs meet on one linda
by its name.  Each key holds a FIFO of values; ``send`` appends (waiting
while the key is at its ``limit``), ``receive`` takes the first value of
the first listed key that has one, ``set``/``get`` replace and peek.

Values are copied, never shared, in the msgpack wire format of
``ipc/linda/_wire.py`` (see there for the mapping between Lua and Python:
strings from Lua arrive as ``str`` when they are UTF-8, else as
``bytes``; ``raw=True`` gives ``bytes`` always).  Keys are strings,
numbers or booleans; ``"x"`` and ``b"x"`` are the same key, as they are the
same Lua string.

A linda is the file ``/dev/shm/linda.<name>``, with no server: any process
may be killed at any instant, holding whatever lock, and the linda stays
whole and usable (``ipc/linda/_os.py`` says why).  Waits sleep in the
kernel (a futex): no polling.  The state of a linda is bounded by its
``capacity`` (``DEFAULT_CAPACITY``, 16 MiB, unless its creator says
otherwise); a change that would exceed it raises an ``IPCError`` with
errno ENOSPC and changes nothing.  Every change rewrites the state, so a
linda suits many small queues better than one very long one.

The handle that created a linda removes its name when closed or collected
(ipc/_owned.py); handles that have it open keep working.  ``linda()``
opens a linda or creates it; an anonymous one (no name) gets a unique name.
"""
from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from functools import partial
from time import monotonic

from msgpack import unpackb

from .._errors import Timeout, timed_out
from .._inflight import InFlight
from .._names import NAME_MAX, os_name
from .._owned import Owned
from .._timeout import timeout as _timeout
from . import _os, _wire
from ._os import DEFAULT_CAPACITY, MIN_CAPACITY, State, key_bit

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any

    from typing_extensions import Self

__all__ = ["Linda", "open", "create", "linda", "unlink", "DEFAULT_CAPACITY", "MIN_CAPACITY",
           "Timeout", "State", "key_bit", "key_bytes", "key_value", "receivable", "sendable"]

#: Longest name: the file is /dev/shm/linda.<name>.
NAME_LEN_MAX = NAME_MAX - len(_os.PREFIX)
_CLOSED = "I/O operation on closed linda"
_CLOSED_WHILE_WAITING = "linda closed while waiting"
#: limit() without a new limit (None means "unlimited").
_KEEP: Any = object()


#: Keys seen lately, as their bytes (most programs use a few keys, often).
_KEYS: dict[object, bytes] = {}
_KEYS_MAX = 1024


def key_bytes(key: object) -> bytes:
    """A key's bytes in the state (see ``_make_key``), remembered for the
    string keys a program uses again and again."""
    if type(key) is str:
        blob = _KEYS.get(key)
        if blob is None:
            if len(_KEYS) >= _KEYS_MAX:
                _KEYS.clear()
            blob = _KEYS[key] = _make_key(key)
        return blob
    return _make_key(key)


def _make_key(key: object) -> bytes:
    """A key's bytes in the state: the msgpack object a Lua face makes of
    the same Lua value, so Lua and Python meet on one key.  A Lua string is
    a msgpack str whatever its bytes, so ``b"x"`` is ``"x"``; a float with
    an integral value is that integer (Lua 5.3+ makes ``t[1.0]`` ``t[1]``)."""
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogateescape")
    if isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
        n = len(data)
        if n < 32:
            head = bytes((0xA0 | n,))
        elif n < 0x100:
            head = bytes((0xD9, n))
        elif n < 0x10000:
            head = b"\xda" + n.to_bytes(2, "big")
        else:
            head = b"\xdb" + n.to_bytes(4, "big")
        return head + data
    if isinstance(key, float) and key.is_integer() and -2.0 ** 63 <= key < 2.0 ** 63:
        key = int(key)
    if isinstance(key, (bool, int, float)):
        return _wire.dumps(key)
    raise TypeError(f"linda key must be str, bytes, a number or a bool, "
                    f"not {type(key).__name__}")


def key_value(blob: bytes) -> Any:
    """The Python value of a key's bytes (``key_bytes``'s inverse): str
    when UTF-8, else bytes."""
    try:
        return unpackb(blob, raw=False)
    except UnicodeDecodeError:
        return unpackb(blob, raw=True)


def receivable(keys: list[bytes], least: int = 1) -> Callable[[State], bool]:
    """Whether ``receive_bytes(keys, 0, least)`` would take something from
    ``state`` now (one of ``keys`` holds ``least`` values): what a waiter
    that must not take (ipc.loop's helpers) watches for."""
    def ready(state: State) -> bool:
        for k in keys:
            entry = state.get(k)
            if entry is not None and len(entry[1]) >= least:
                return True
        return False
    return ready


def sendable(key: bytes, n: int) -> Callable[[State], bool]:
    """Whether ``send_bytes(key, n blobs, 0)`` would go now (the key is
    under its limit by ``n``): as ``receivable``, for senders."""
    def ready(state: State) -> bool:
        entry = state.get(key)
        return entry is None or not 0 <= entry[0] < len(entry[1]) + n
    return ready


def _status(fifo: list[bytes], limit: int) -> str:
    """Lanes' fill status of a key against its limit."""
    if limit < 0 or len(fifo) < limit:
        return "under"
    return "exact" if len(fifo) == limit else "over"


class Linda:
    """A handle to a linda (see the module docstring).

    ``Linda(name, create=None, capacity=None, raw=False)``: ``create=True``
    creates it (``FileExistsError`` if it exists), ``False`` opens an
    existing one (``FileNotFoundError`` if there is none), ``None`` opens it
    or else creates it.  ``name=None`` creates an anonymous linda with a
    unique name (``l.name``), which others can open while it exists.
    ``capacity`` (bytes) bounds its state; only its creator can set it.
    """

    def __init__(self, name: str | bytes | None = None, create: bool | None = None,
                 capacity: int | None = None, raw: bool = False) -> None:
        if name is None:
            if create is False:
                raise ValueError("an anonymous linda can only be created")
            name, create = f"anon.{os.getpid()}.{os.urandom(6).hex()}", True
        osname = os_name(name, NAME_LEN_MAX)
        if capacity is not None:
            if isinstance(capacity, bool) or not isinstance(capacity, int):
                raise TypeError(f"capacity must be an int, not {type(capacity).__name__}")
            if capacity < MIN_CAPACITY:
                raise ValueError(f"capacity must be at least {MIN_CAPACITY} bytes, "
                                 f"not {capacity}")
            if create is False:
                raise ValueError("capacity is set by the creator: open() takes none")
        #: The name as the API spells it (``"jobs"``).
        self.name: str = os.fsdecode(name)
        self.raw = raw
        store = None
        if create is not True:
            try:
                store = _os.Store(osname, self.name, None)
            except FileNotFoundError:
                if create is False:
                    raise
        self.created = store is None
        if store is None:
            try:
                store = _os.Store(osname, self.name, capacity or DEFAULT_CAPACITY)
            except FileExistsError:
                if create:
                    raise
                store = _os.Store(osname, self.name, None)  # another process was first
                self.created = False
        self._store: _os.Store | None = store
        #: The most bytes the linda's state may take.
        self.capacity: int = store.capacity
        self._owned = Owned(partial(_os.unlink, osname, self.name)) if self.created else None
        self._inflight = InFlight(store.close)
        weakref.finalize(self, self._inflight.close).atexit = False
        self._finalizer = weakref.finalize(self, _release, self._owned)

    # -- the byte-level interface -------------------------------------------------
    #
    # The verbs with Lanes' results, keys and values as their msgpack bytes
    # (``key_bytes``; values: ``_wire``): the Lua core calls these (its face
    # encodes in Lua), and so do protocols built on lindas (ipc.lanes), with
    # ``transact``/``transact_wait`` for a change of their own.  The
    # Pythonic methods below encode and decode.

    def transact(self, change: _os.Change) -> Any:
        """Run ``change(state)`` as one atomic change of the linda: the
        state is ``{key bytes: [limit (-1: none), [value bytes, ...]]}``,
        which it may modify; it returns ``(result, wake)``, ``wake`` 0 when
        it changed nothing, else the ``key_bit`` of each key whose waits
        must wake, or-ed.  Returns ``result``."""
        calls = self._inflight.calls
        calls.append(None)                    # see ipc/_inflight.py
        try:
            store = self._store
            if store is None:
                raise ValueError(_CLOSED)
            return store.run(change)[0]
        finally:
            calls.pop()
            if self._store is None:
                self._inflight.close()

    def transact_wait(self, change: _os.Change, bits: int, timeout: float | None) -> Any:
        """``transact(change)`` until its result is not None, sleeping
        between tries until a change wakes ``bits`` (the or of the
        ``key_bit`` of the keys it waits on), at most ``timeout`` seconds
        (checked: None, 0 or more); None when that passes."""
        calls = self._inflight.calls
        calls.append(None)
        try:
            store = self._store
            if store is None:
                raise ValueError(_CLOSED)
            result, gen = store.run(change, register=timeout != 0)
            if result is not None or timeout == 0:
                return result
            deadline = None if timeout is None else monotonic() + timeout
            while True:
                store.wait(gen, bits, deadline)
                if self._store is None:
                    raise ValueError(_CLOSED_WHILE_WAITING)
                last = deadline is not None and monotonic() >= deadline
                result, gen = store.run(change, register=not last)
                if result is not None or last:
                    return result
        finally:
            calls.pop()
            if self._store is None:
                self._inflight.close()

    def send_bytes(self, key: bytes, blobs: list[bytes], timeout: float | None) -> bool:
        """Append ``blobs`` to ``key`` atomically, waiting while they would
        take it past its limit; False when the timeout passes first."""
        n, bit = len(blobs), key_bit(key)

        def change(state: State) -> tuple[bool | None, int]:
            entry = state.get(key)
            if entry is None:
                state[key] = [-1, list(blobs)]
                return True, bit
            limit, fifo = entry
            if 0 <= limit < len(fifo) + n:
                return None, 0
            fifo.extend(blobs)
            return True, bit

        return self.transact_wait(change, bit, timeout) is not None

    def receive_bytes(self, keys: list[bytes], timeout: float | None, least: int = 1,
                 most: int = 1, claim: bytes | None = None) -> tuple[bytes, list[bytes]] | None:
        """``(key, values)``: ``least`` to ``most`` values taken from the
        first of ``keys`` that has ``least``; None when the timeout passes.
        ``claim``: in the same change, set that key's slot to the first value
        taken (ipc.lanes: a process marks the job it took, so that no kill
        can fall between taking and marking)."""
        bits = 0
        for k in keys:
            bits |= key_bit(k)

        def change(state: State) -> tuple[tuple[bytes, list[bytes]] | None, int]:
            for k in keys:
                entry = state.get(k)
                if entry is not None and len(entry[1]) >= least:
                    fifo = entry[1]
                    taken = fifo[:most]
                    del fifo[:most]
                    if claim is None:
                        return (k, taken), key_bit(k)
                    state[claim] = [-1, taken[:1]]
                    return (k, taken), key_bit(k) | key_bit(claim)
            return None, 0

        result: tuple[bytes, list[bytes]] | None = self.transact_wait(change, bits, timeout)
        return result

    def wake(self, bits: int) -> None:
        """Wake every wait on ``bits`` (``key_bit``s or-ed), in every
        process, without a change: each looks at the state again and, if
        nothing is there for it, sleeps on.  ipc.loop ends a cancelled
        helper's wait with it.  Closed: nothing."""
        calls = self._inflight.calls
        calls.append(None)
        try:
            store = self._store
            if store is not None:
                store.wake(bits)
        finally:
            calls.pop()
            if self._store is None:
                self._inflight.close()

    def set_bytes(self, key: bytes, blobs: list[bytes]) -> tuple[bool, str]:
        """Replace the values of ``key`` (clearing a key that does not exist
        does not create it): whether the key was full and now has room, and
        its fill status."""
        bit = key_bit(key)

        def change(state: State) -> tuple[tuple[bool, str], int]:
            entry = state.get(key)
            if entry is None:
                if not blobs:
                    return (False, "under"), 0
                entry = state[key] = [-1, []]
            limit = entry[0]
            was_full = 0 <= limit <= len(entry[1])
            entry[1] = list(blobs)
            return (was_full and len(blobs) < limit, _status(entry[1], limit)), bit

        result: tuple[bool, str] = self.transact(change)
        return result

    def get_bytes(self, key: bytes, n: int) -> list[bytes]:
        """The first ``n`` values of ``key``, not consumed."""
        def look(state: State) -> tuple[list[bytes], int]:
            entry = state.get(key)
            return (list(entry[1][:n]) if entry is not None else []), 0

        result: list[bytes] = self.transact(look)
        return result

    def limit_bytes(self, key: bytes, limit: int | None) -> tuple[bool, str]:
        """Set the limit of ``key`` (None: unlimited): whether it was full
        and now has room, and its fill status."""
        new = -1 if limit is None else limit
        bit = key_bit(key)

        def change(state: State) -> tuple[tuple[bool, str], int]:
            entry = state.get(key)
            if entry is None:
                entry = state[key] = [-1, []]
            old, fifo = entry
            entry[0] = new
            room = (0 <= old <= len(fifo)) and (new < 0 or len(fifo) < new)
            return (room, _status(fifo, new)), bit

        result: tuple[bool, str] = self.transact(change)
        return result

    def limit_of_bytes(self, key: bytes) -> tuple[int | None, str]:
        """The limit of ``key`` (None: unlimited) and its fill status."""
        def look(state: State) -> tuple[tuple[int | None, str], int]:
            entry = state.get(key)
            if entry is None:
                return (None, "under"), 0
            return (None if entry[0] < 0 else entry[0], _status(entry[1], entry[0])), 0

        result: tuple[int | None, str] = self.transact(look)
        return result

    def count_bytes(self, keys: list[bytes]) -> dict[bytes, int]:
        """How many values each of ``keys`` holds (all keys when none are
        given); keys the linda has never had are left out."""
        def look(state: State) -> tuple[dict[bytes, int], int]:
            wanted = keys or state
            return {k: len(state[k][1]) for k in wanted if k in state}, 0

        result: dict[bytes, int] = self.transact(look)
        return result

    # -- the Pythonic API ------------------------------------------------------

    def send(self, key: Any, *values: Any, timeout: float | None = None) -> None:
        """Append ``values`` to ``key``'s FIFO, all or none (Lanes: atomic),
        waiting while they would take it past its limit.  Raises
        ``ipc.Timeout`` when the timeout passes first."""
        if not values:
            raise ValueError("send() needs at least one value after the key")
        k = key_bytes(key)
        blobs = [_wire.dumps(v) for v in values]
        t = _timeout(timeout)
        if not self.send_bytes(k, blobs, t):
            raise timed_out(t, f"room in key {key!r} of linda", self.name)

    def receive(self, *keys: Any, timeout: float | None = None) -> tuple[Any, Any]:
        """``(key, value)``: the first value of the first of ``keys`` that has
        one, waiting until one has (see timeouts).  Raises ``ipc.Timeout``."""
        if not keys:
            raise ValueError("receive() needs at least one key")
        t = _timeout(timeout)
        got = self.receive_bytes([key_bytes(k) for k in keys], t)
        if got is None:
            raise timed_out(t, "a value in linda", self.name)
        return key_value(got[0]), self._load(got[1][0])

    def receive_batched(self, key: Any, least: int, most: int | None = None, *,
                        timeout: float | None = None) -> list[Any]:
        """Take between ``least`` and ``most`` (default ``least``) values of
        ``key`` at once, waiting until it holds ``least``."""
        most = least if most is None else most
        for v, what in ((least, "least"), (most, "most")):
            if isinstance(v, bool) or not isinstance(v, int):
                raise TypeError(f"{what} must be an int, not {type(v).__name__}")
        if not 1 <= least <= most:
            raise ValueError(f"need 1 <= least <= most, not {least} and {most}")
        t = _timeout(timeout)
        got = self.receive_bytes([key_bytes(key)], t, least, most)
        if got is None:
            raise timed_out(t, f"{least} values in key {key!r} of linda", self.name)
        return [self._load(b) for b in got[1]]

    def set(self, key: Any, *values: Any) -> None:
        """Replace ``key``'s values with ``values`` (none: clear it); never
        waits (the limit does not apply), and wakes receivers."""
        self.set_bytes(key_bytes(key), [_wire.dumps(v) for v in values])

    def get(self, key: Any, n: int | None = None) -> Any:
        """Peek without consuming: the first value of ``key`` (None if it
        has none), or, given ``n``, a list of its first ``n`` values."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"n must be a positive int, not {n!r}")
        blobs = self.get_bytes(key_bytes(key), 1 if n is None else n)
        if n is None:
            return self._load(blobs[0]) if blobs else None
        return [self._load(b) for b in blobs]

    def limit(self, key: Any, limit: int | None = _KEEP) -> int | None:
        """Set how many values ``key`` may hold before ``send`` waits (None:
        no limit; 0 blocks every send).  Without ``limit``: the current
        limit.  Returns the limit now in force."""
        k = key_bytes(key)
        if limit is _KEEP:
            return self.limit_of_bytes(k)[0]
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise ValueError(f"limit must be a non-negative int or None, not {limit!r}")
        self.limit_bytes(k, limit)
        return limit

    def count(self, *keys: Any) -> Any:
        """With one key: how many values it holds (0 if none).  Otherwise
        a dict of key -> count, of the given keys (all when none given)
        that the linda has."""
        counts = self.count_bytes([key_bytes(k) for k in keys])
        if len(keys) == 1:
            return next(iter(counts.values()), 0)
        return {key_value(k): n for k, n in counts.items()}

    def _load(self, blob: bytes) -> Any:
        return _wire.loads(blob, raw=self.raw)

    # -- state, closing ----------------------------------------------------------

    @property
    def closed(self) -> bool:
        """True once ``close()`` has run."""
        return self._store is None

    @property
    def owner(self) -> bool:
        """True while this handle will remove the name when closed."""
        return self._owned is not None and self._owned.held

    def close(self) -> None:
        """Close the handle (again: nothing); the creator's close also
        removes the name.  Calls blocked on this handle in other threads
        end with ``ValueError``; nothing is taken for them."""
        store = self._store
        if store is None:
            return
        calls = self._inflight.calls
        calls.append(None)
        try:
            self._store = None
            store.wake_all()
            self._finalizer()
        finally:
            calls.pop()
            self._inflight.close()

    def unlink(self) -> None:
        """Remove the linda's name now (open handles keep working)."""
        if self._store is None:
            raise ValueError(_CLOSED)
        if self._owned is not None:
            self._owned.detach()
        unlink(self.name)

    def __enter__(self) -> Self:
        if self._store is None:
            raise ValueError(_CLOSED)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._store is None else f"capacity={self.capacity}"
        return f"<ipc.linda.Linda {self.name!r} {state}>"


def _release(owned: Owned | None) -> None:
    if owned is not None:
        owned.release()


def open(name: str | bytes, *, raw: bool = False) -> Linda:
    """Open an existing linda (``FileNotFoundError`` if there is none)."""
    return Linda(name, create=False, raw=raw)


def create(name: str | bytes | None = None, *, capacity: int | None = None,
           raw: bool = False) -> Linda:
    """Create a linda (``FileExistsError`` if the name is taken); without a
    name, an anonymous one."""
    return Linda(name, create=True, capacity=capacity, raw=raw)


def linda(name: str | bytes | None = None, *, capacity: int | None = None,
          raw: bool = False) -> Linda:
    """Open the linda ``name``, or create it if there is none (then this
    handle owns it); without a name, create an anonymous one."""
    return Linda(name, create=None, capacity=capacity, raw=raw)


def unlink(name: str | bytes) -> None:
    """Remove a linda's name (``FileNotFoundError`` if there is none)."""
    _os.unlink(os_name(name, NAME_LEN_MAX), os.fsdecode(name))


def __dir__() -> list[str]:
    # dir() and completion show the API, not the imports (PEP 562).
    return sorted(__all__)
