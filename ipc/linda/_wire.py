"""The wire codec of lindas (issue 15), Python side: one value <-> one msgpack object.

Lindas carry values between processes, Lua (``ipc/linda/wire.lua``, the
same format in pure Lua) and Python alike.  ``dumps(value)`` gives the bytes
of one msgpack object, ``loads(data)`` the value back.

=========================  ===============================  =========================
Python                     msgpack                          Lua (wire.lua)
=========================  ===============================  =========================
None, bool                 nil, bool                        nil, boolean
int (-2**63 .. 2**64-1)    int, smallest encoding           integer (5.3+; uint64 >=
                                                            2**63 a float); a number
                                                            on 5.1, 5.2, LuaJIT (exact
                                                            below 2**53 only)
float                      float64, always                  float (3.0 stays a float
                                                            on 5.3+)
str                        str (UTF-8)                      string
bytes, bytearray,          bin                              string
memoryview
list, tuple                array                            sequence 1..n (None in a
                                                            list: a hole)
dict                       map                              table
a list or dict met twice   ext 1 (id, container) at its     the same table, met twice
(by identity), cycles too  first occurrence, then ext 2     (cycles work)
                           (id); ids 0, 1, 2... in order
LindaRef(name), or what    ext 4 (the name's bytes)         unref(name)
``ref`` names
--                         ext 3: a Lua function            refused here (ValueError)
=========================  ===============================  =========================

Back in Python: str is str when it is valid UTF-8, else bytes (a Lua string
is any bytes); bin is bytes; ``loads(data, raw=True)`` gives bytes for every
string.  Arrays are lists, maps dicts: a Lua sequence is a list, any other
table (an empty one too) a dict; a map key that is an array or a map (no
conforming sender makes one) is refused, as Python cannot hash it.

``dumps`` refuses what Lua could not hold, naming the place as a key path
such as ``value['jobs'][2]``: with TypeError, a value of another type (unless
``ref`` names it) and a map key other than str, bytes, int, float or bool;
with ValueError, a NaN key, an int out of msgpack's range, a str with lone
surrogates, nesting deeper than ``MAX_DEPTH``.  Subclasses go as their
base type (an IntEnum as an int, an OrderedDict as a map).  Tuples are
written by value, each time they occur (they cannot be cyclic by
themselves, and their sharing is not observable).

``loads`` raises ValueError("malformed linda message: ...") on malformed,
truncated or trailing input.  It takes msgpack's C decoder; a message with
ext 1 or 2 (sharing), with a str that is not UTF-8, or that msgpack
refuses goes to a small decoder of our own, which words every error.
msgpack's decoder takes nesting deeper than ``MAX_DEPTH`` (to its own stack
limit), ours and Lua's do not; no encoder writes it.  A None map value (no
Lua table holds one) stays in Python; Lua drops the key.
"""
from __future__ import annotations

import math
import struct
from collections.abc import Callable

import msgpack

TYPE_CHECKING = False  # not typing's (see ipc/__init__.py)
if TYPE_CHECKING:  # pragma: no cover
    from typing import Any, Final

__all__ = ["LindaRef", "MAX_DEPTH", "dumps", "loads"]

#: The deepest nesting either side writes or reads (wire.lua's maxdepth).
MAX_DEPTH: Final = 200

_EXT_SHARED, _EXT_BACKREF, _EXT_FUNCTION, _EXT_LINDA, _EXT_GLOBALS = 1, 2, 3, 4, 5


class LindaRef:
    """A linda named in a message (ext 4): what ``loads`` gives for one
    without ``unref``, and what ``dumps`` writes as one.  Equal when the
    names are; immutable.  (Not a typing.NamedTuple: importing typing costs
    a linda's user about 5 ms of start-up.)"""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)

    def __setattr__(self, attr: str, value: object) -> None:
        raise AttributeError(f"LindaRef is immutable: cannot set {attr!r}")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, LindaRef):
            return self.name == other.name
        return NotImplemented

    def __hash__(self) -> int:
        return hash((LindaRef, self.name))

    def __repr__(self) -> str:
        return f"LindaRef(name={self.name!r})"


def _name_bytes(name: str) -> bytes:
    # Linda names are bytes in Lua: surrogateescape keeps any of them.
    return name.encode("utf-8", "surrogateescape")


def _malformed(why: str) -> ValueError:
    return ValueError(f"malformed linda message: {why}")


# -- dumps --------------------------------------------------------------------

# Exact types packb writes as they are, and that hold nothing else.
_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes, bytearray, memoryview})
_KEYS: Final = frozenset({str, int, bool, bytes})   # and float, not NaN


def _where(path: list[object]) -> str:
    return "value" + "".join(f"[{k!r}]" for k in path)


def _kind(o: object) -> str:
    """What o is, for a message: "a set", "a decimal.Decimal", "None"."""
    if o is None:
        return "None"
    t = type(o)
    name = t.__qualname__ if t.__module__ == "builtins" else f"{t.__module__}.{t.__qualname__}"
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _as_plain(o: object) -> object:
    """A subclass of a scalar type as that type (IntEnum -> int...), for
    packb's strict_types; None if o is none."""
    if isinstance(o, int):
        return int.__index__(o)  # bool cannot be subclassed: never here
    if isinstance(o, float):
        return float.__float__(o)
    if isinstance(o, str):
        return str.__str__(o)
    if isinstance(o, (bytes, bytearray, memoryview)):
        return bytes(memoryview(o))
    return None


class _Dumper:
    """One dumps() call: a first pass (scan) checks the value, asks ``ref``
    about objects of other types and finds the lists and dicts met twice;
    then packb writes the value, or (sharing, or a scalar packb refuses)
    the second pass of our own (emit), which says where the problem is."""

    __slots__ = ("ids", "names", "path", "ref", "seen", "shared")

    def __init__(self, ref: Callable[[Any], str | None] | None) -> None:
        self.ref = ref
        self.seen: dict[int, object] = {}     # id -> the object (kept alive: ids stay unique)
        self.shared: set[int] = set()
        self.names: dict[int, str] = {}       # id -> linda name, from ref
        self.path: list[object] = []
        self.ids: dict[int, int] = {}         # id -> wire id, as emit meets them

    # -- the first pass

    def scan(self, o: object, depth: int) -> None:
        """Checks a value that is no exact scalar, at ``self.path``."""
        if isinstance(o, LindaRef):
            return
        if isinstance(o, (msgpack.ExtType, msgpack.Timestamp)):
            raise TypeError(f"cannot send {_kind(o)} at {_where(self.path)}")
        if isinstance(o, (list, tuple, dict)):
            if depth >= MAX_DEPTH:
                raise ValueError(f"cannot send a value nested deeper than {MAX_DEPTH} "
                                 f"levels at {_where(self.path)}")
            if not isinstance(o, tuple):
                i = id(o)
                if i in self.seen:
                    self.shared.add(i)
                    return
                self.seen[i] = o
            path = self.path
            if isinstance(o, dict):
                for k, v in o.items():
                    if type(k) not in _KEYS:
                        self.check_key(k)
                    if type(v) not in _SCALARS:
                        path.append(k)
                        self.scan(v, depth + 1)
                        path.pop()
            else:
                for n, v in enumerate(o):
                    if type(v) not in _SCALARS:
                        path.append(n)
                        self.scan(v, depth + 1)
                        path.pop()
            return
        if _as_plain(o) is not None:
            return
        if id(o) in self.names:
            return
        name = self.ref(o) if self.ref is not None else None
        if name is None:
            raise TypeError(f"cannot send {_kind(o)} at {_where(self.path)}")
        if not isinstance(name, str):
            raise TypeError(f"cannot send {_kind(o)} at {_where(self.path)}: ref gave "
                            f"{_kind(name)}, not a linda name (str)")
        self.seen[id(o)] = o
        self.names[id(o)] = name

    def check_key(self, k: object) -> None:
        if isinstance(k, float):
            if math.isnan(k):
                raise ValueError(f"cannot send a NaN map key at {_where(self.path)}")
            return
        if isinstance(k, (str, int, bytes)):  # subclasses (bool is exact)
            return
        raise TypeError(f"cannot send {_kind(k)} as a map key at {_where(self.path)} "
                        f"(keys are str, bytes, int, float or bool)")

    # -- packb's default, for what strict_types sends here

    def default(self, o: object) -> object:
        if isinstance(o, LindaRef):
            return msgpack.ExtType(_EXT_LINDA, _name_bytes(o.name))
        name = self.names.get(id(o))
        if name is not None:
            return msgpack.ExtType(_EXT_LINDA, _name_bytes(name))
        if isinstance(o, dict):
            return dict(o)
        if isinstance(o, (list, tuple)):
            return list(o)
        plain = _as_plain(o)
        if plain is None:  # pragma: no cover (scan let nothing else through)
            raise TypeError(f"cannot send {_kind(o)}")
        return plain

    # -- the second pass

    def emit(self, o: object, out: list[bytes], depth: int) -> None:
        if isinstance(o, LindaRef):
            out.append(msgpack.packb(msgpack.ExtType(_EXT_LINDA, _name_bytes(o.name))))
            return
        name = self.names.get(id(o))
        if name is not None:
            out.append(msgpack.packb(msgpack.ExtType(_EXT_LINDA, _name_bytes(name))))
            return
        if isinstance(o, (list, tuple, dict)):
            i = id(o)
            if i in self.shared:
                n = self.ids.get(i)
                if n is not None:
                    out.append(msgpack.packb(msgpack.ExtType(_EXT_BACKREF, msgpack.packb(n))))
                    return
                n = self.ids[i] = len(self.ids)
                inner = [msgpack.packb(n)]
                self.container(o, inner, depth)
                out.append(msgpack.packb(msgpack.ExtType(_EXT_SHARED, b"".join(inner))))
                return
            self.container(o, out, depth)
            return
        if o is None or type(o) is bool:
            out.append(msgpack.packb(o))
            return
        plain = _as_plain(o)
        try:
            out.append(msgpack.packb(plain))
        except OverflowError:
            raise ValueError(f"cannot send an int out of msgpack's range (-2**63 .. 2**64-1) "
                             f"at {_where(self.path)}") from None
        except UnicodeEncodeError:
            raise ValueError(f"cannot send a str that is not valid Unicode (a lone "
                             f"surrogate) at {_where(self.path)}") from None

    def container(self, o: list[Any] | tuple[Any, ...] | dict[Any, Any], out: list[bytes],
                  depth: int) -> None:
        path = self.path
        if isinstance(o, dict):
            out.append(_head(len(o), 0x80, b"\xde", b"\xdf"))
            for k, v in o.items():
                self.emit(k, out, depth + 1)
                path.append(k)
                self.emit(v, out, depth + 1)
                path.pop()
        else:
            out.append(_head(len(o), 0x90, b"\xdc", b"\xdd"))
            for n, v in enumerate(o):
                path.append(n)
                self.emit(v, out, depth + 1)
                path.pop()


def _head(n: int, fix: int, h16: bytes, h32: bytes) -> bytes:
    if n < 16:
        return bytes((fix | n,))
    if n < 0x10000:
        return h16 + n.to_bytes(2, "big")
    if n < 0x100000000:
        return h32 + n.to_bytes(4, "big")
    raise ValueError(f"cannot send a container of {n} items (msgpack: fewer than 2**32)")


# Loops, not all(): a generator costs 0.2 us more on a 3-item value (measured).
def _plain(o: object, depth: int, seen: set[int]) -> bool:
    """Whether packb alone writes ``o`` as the table says: an exact scalar,
    or lists, tuples and dicts of such, with keys that need no check,
    nothing nested as deep as ``MAX_DEPTH``, and no list or dict met twice
    (sharing and cycles are the second pass's).  False sends the value the
    long way, which also words any refusal."""
    t = type(o)
    if t is dict or t is list:
        if depth >= MAX_DEPTH or id(o) in seen:
            return False
        seen.add(id(o))
    elif t is tuple:
        if depth >= MAX_DEPTH:
            return False
    else:
        return t in _SCALARS
    scalars = _SCALARS
    if isinstance(o, dict):                      # (exact: t says so)
        keys = _KEYS
        for k, x in o.items():
            if type(k) not in keys or (type(x) not in scalars and not _plain(x, depth + 1, seen)):
                return False
        return True
    if isinstance(o, (list, tuple)):
        for x in o:
            if type(x) not in scalars and not _plain(x, depth + 1, seen):
                return False
    return True


def dumps(value: object, ref: Callable[[Any], str | None] | None = None) -> bytes:
    """The bytes of ``value`` as one msgpack object (the table above).

    ``ref(obj)``, if given, is asked about each object of another type: a
    str (a linda's name) sends it as a linda reference (ext 4); None
    refuses it.  ``LindaRef(name)`` always goes as one.
    """
    # A scalar, or lists, tuples and dicts of exact scalars, none shared (see
    # _plain): nothing to find, packb alone.
    if _plain(value, 0, set()):
        try:
            return msgpack.packb(value)
        except (OverflowError, ValueError, BufferError):
            pass  # emit says where
    d = _Dumper(ref)
    if type(value) not in _SCALARS:
        d.scan(value, 0)
    if not d.shared:
        try:
            return msgpack.packb(value, strict_types=True, default=d.default)
        except (OverflowError, ValueError, BufferError):
            pass  # emit says where
    out: list[bytes] = []
    d.emit(value, out, 0)
    return b"".join(out)


# -- loads --------------------------------------------------------------------

class _Slow(Exception):
    """The fast path met what only our own decoder does (ext 1, 2, 3...)."""


class _HookFailed(Exception):
    """unref raised inside msgpack's ext_hook: re-raised as it is."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


def _plain_hook(code: int, data: bytes) -> object:
    if code == _EXT_LINDA:
        return LindaRef(data.decode("utf-8", "surrogateescape"))
    raise _Slow


def loads(data: bytes | bytearray | memoryview, raw: bool = False,
          unref: Callable[[str], Any] | None = None) -> Any:
    """The value of the one msgpack object ``data`` holds.

    ``raw``: every string as bytes (else str when it is valid UTF-8).
    ``unref(name)``, if given, makes the object for each linda reference
    (called once per name and message); without it they come as
    ``LindaRef(name)``.
    """
    cache: dict[bytes, Any] = {}
    hook: Callable[[int, bytes], object] = _plain_hook
    if unref is not None:
        def unref_hook(code: int, payload: bytes) -> object:
            if code != _EXT_LINDA:
                raise _Slow
            return _unref(unref, cache, payload)
        hook = unref_hook
    try:
        return msgpack.unpackb(data, raw=raw, strict_map_key=False, ext_hook=hook)
    except _HookFailed as exc:
        raise exc.error from None
    except (_Slow, ValueError, TypeError, msgpack.UnpackException):
        pass  # our own decoder decides, and words the error
    return _Loader(memoryview(data).tobytes(), raw, unref, cache).top()


def _unref(unref: Callable[[str], Any], cache: dict[bytes, Any], payload: bytes) -> Any:
    if payload in cache:
        return cache[payload]
    try:
        v = unref(payload.decode("utf-8", "surrogateescape"))
    except BaseException as exc:  # noqa: BLE001 (re-raised as it is by loads)
        raise _HookFailed(exc) from None
    cache[payload] = v
    return v


_FIXEXT_LEN: Final = {0xd4: 1, 0xd5: 2, 0xd6: 4, 0xd7: 8, 0xd8: 16}
_INTS: Final = {0xcc: ">B", 0xcd: ">H", 0xce: ">I", 0xcf: ">Q",
                0xd0: ">b", 0xd1: ">h", 0xd2: ">i", 0xd3: ">q"}


class _Loader:
    """The decoder of our own, for what msgpack's fast path cannot do:
    sharing (ext 1 and 2: the container is made and registered before it is
    filled, so cycles work), str that is not UTF-8 (bytes), and every error
    message."""

    __slots__ = ("cache", "data", "end", "raw", "refs", "unref")

    def __init__(self, data: bytes, raw: bool, unref: Callable[[str], Any] | None,
                 cache: dict[bytes, Any]) -> None:
        self.data = data
        self.end = len(data)
        self.raw = raw
        self.unref = unref
        self.cache = cache
        self.refs: list[Any] = []

    def top(self) -> Any:
        v, i = self.value(0, 0)
        if i != self.end:
            extra = self.end - i
            raise _malformed(f"{extra} byte{'s' if extra > 1 else ''} after the value")
        return v

    def take(self, i: int, n: int) -> bytes:
        j = i + n
        if j > self.end:
            raise _malformed("truncated")
        return self.data[i:j]

    def uint(self, i: int, n: int) -> int:
        return int.from_bytes(self.take(i, n), "big")

    def string(self, i: int, n: int) -> tuple[Any, int]:
        s = self.take(i, n)
        if not self.raw:
            try:
                return s.decode("utf-8"), i + n
            except UnicodeDecodeError:
                pass  # a Lua string of other bytes
        return s, i + n

    def value(self, i: int, depth: int) -> tuple[Any, int]:
        """The value at i, inside level ``depth``, and the index after it."""
        if i >= self.end:
            raise _malformed("truncated")
        c = self.data[i]
        if c < 0x80:
            return c, i + 1
        if c >= 0xe0:
            return c - 0x100, i + 1
        if 0xa0 <= c < 0xc0:
            return self.string(i + 1, c - 0xa0)
        if c < 0x90:
            return self.map(c - 0x80, i + 1, depth + 1, None)
        if c < 0xa0:
            return self.array(c - 0x90, i + 1, depth + 1, None)
        if c == 0xc0:
            return None, i + 1
        if c == 0xc2:
            return False, i + 1
        if c == 0xc3:
            return True, i + 1
        if c in _INTS:
            fmt = _INTS[c]
            n = struct.calcsize(fmt)
            return struct.unpack(fmt, self.take(i + 1, n))[0], i + 1 + n
        if c == 0xcb:
            return struct.unpack(">d", self.take(i + 1, 8))[0], i + 9
        if c == 0xca:
            return struct.unpack(">f", self.take(i + 1, 4))[0], i + 5
        if c in (0xd9, 0xda, 0xdb):
            k = 1 << (c - 0xd9)
            return self.string(i + 1 + k, self.uint(i + 1, k))
        if c in (0xc4, 0xc5, 0xc6):
            k = 1 << (c - 0xc4)
            n = self.uint(i + 1, k)
            return self.take(i + 1 + k, n), i + 1 + k + n
        if c in (0xdc, 0xdd):
            k = 2 << (c - 0xdc)
            return self.array(self.uint(i + 1, k), i + 1 + k, depth + 1, None)
        if c in (0xde, 0xdf):
            k = 2 << (c - 0xde)
            return self.map(self.uint(i + 1, k), i + 1 + k, depth + 1, None)
        ext = self.ext_at(c, i)
        if ext is not None:
            return self.ext(*ext, depth)
        raise _malformed(f"byte 0xc1 (never used) at offset {i}")

    def array(self, n: int, i: int, depth: int, ident: int | None) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise _malformed(f"nested deeper than {MAX_DEPTH} levels")
        if n > self.end - i:
            raise _malformed("truncated")
        out: list[Any] = []
        if ident is not None:
            self.refs.append(out)
        for _ in range(n):
            v, i = self.value(i, depth)
            out.append(v)
        return out, i

    def map(self, n: int, i: int, depth: int, ident: int | None) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise _malformed(f"nested deeper than {MAX_DEPTH} levels")
        if 2 * n > self.end - i:
            raise _malformed("truncated")
        out: dict[Any, Any] = {}
        if ident is not None:
            self.refs.append(out)
        for _ in range(n):
            k, i = self.value(i, depth)
            if isinstance(k, (list, dict)):
                what = "an array" if isinstance(k, list) else "a map"
                raise ValueError(f"cannot load a map key that is {what}: "
                                 f"a Python dict key must be hashable")
            v, i = self.value(i, depth)
            out[k] = v
        return out, i

    def ext_at(self, c: int, i: int) -> tuple[int, int, int] | None:
        """The type, payload start and payload end of the ext at i (header
        byte c), or None if c starts no ext."""
        if c in _FIXEXT_LEN:
            n, j = _FIXEXT_LEN[c], i + 1
        elif c in (0xc7, 0xc8, 0xc9):
            k = 1 << (c - 0xc7)
            n, j = self.uint(i + 1, k), i + 1 + k
        else:
            return None
        typ = struct.unpack(">b", self.take(j, 1))[0]
        self.take(j + 1, n)
        return typ, j + 1, j + 1 + n

    def ext(self, typ: int, i: int, end: int, depth: int) -> tuple[Any, int]:
        if typ == _EXT_SHARED:
            ident, j = self.value(i, depth)
            if type(ident) is not int or ident != len(self.refs):
                raise _malformed("a shared table with an id out of order")
            v, j = self.wrapped(j, depth + 1, ident)
            if j != end:
                raise _malformed("a shared table whose length does not match its content")
            return v, end
        if typ == _EXT_BACKREF:
            ident, j = self.value(i, depth)
            if j != end:
                raise _malformed("a back-reference whose length does not match its content")
            if type(ident) is not int or not 0 <= ident < len(self.refs):
                raise _malformed("a back-reference to an unknown id")
            return self.refs[ident], end
        if typ == _EXT_FUNCTION:
            raise ValueError("a Lua function cannot be loaded in Python")
        if typ == _EXT_LINDA:
            payload = self.data[i:end]
            if self.unref is None:
                return LindaRef(payload.decode("utf-8", "surrogateescape")), end
            try:
                return _unref(self.unref, self.cache, payload), end
            except _HookFailed as exc:
                raise exc.error from None
        if typ == _EXT_GLOBALS:
            raise _malformed("the global table marker outside a function")
        raise _malformed(f"unknown ext type {typ}")

    def wrapped(self, j: int, depth: int, ident: int) -> tuple[Any, int]:
        """What ext 1 wraps: an array or a map (a Lua function: refused)."""
        if j >= self.end:
            raise _malformed("truncated")
        c = self.data[j]
        if 0x80 <= c < 0x90:
            return self.map(c - 0x80, j + 1, depth, ident)
        if 0x90 <= c < 0xa0:
            return self.array(c - 0x90, j + 1, depth, ident)
        if c in (0xdc, 0xdd):
            k = 2 << (c - 0xdc)
            return self.array(self.uint(j + 1, k), j + 1 + k, depth, ident)
        if c in (0xde, 0xdf):
            k = 2 << (c - 0xde)
            return self.map(self.uint(j + 1, k), j + 1 + k, depth, ident)
        ext = self.ext_at(c, j)
        if ext is not None and ext[0] == _EXT_FUNCTION:
            raise ValueError("a Lua function cannot be loaded in Python")
        raise _malformed("ext 1 wraps no table")
