"""The wire codec of lindas (issue 15): ipc/linda/wire.lua on every engine and
ipc/linda/_wire.py, each against the other and against msgpack itself.

Values go Lua -> Lua, Lua -> Python and Python -> Lua; where the mapping is
one to one, the bytes Lua writes are the bytes msgpack (and dumps) write
for the same value, so the format is msgpack and nothing of our own.  The
refusals name their place as a key path; malformed input is refused by both
decoders with a clear message, never a crash or a hang.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import msgpack
import pytest
from helpers.lua import DEFAULT_ENGINE, LUAJITS, installed, lua_version

from ipc.linda import _wire
from ipc.linda._wire import MAX_DEPTH, LindaRef, dumps, loads
from ipc.lua import RUNTIME_OPTIONS, lupa_module, run_chunk

hypothesis = pytest.importorskip("hypothesis")  # in the [test] extra
st = pytest.importorskip("hypothesis.strategies")

SOURCE = (Path(_wire.__file__).parent / "wire.lua").read_bytes()

# Lua helpers every runtime gets: deq(a, b) compares two values deeply, with
# int and float distinct on 5.3+, -0.0 apart from 0, NaN equal to NaN, and
# the same sharing on both sides (a table met twice in a is met twice in b).
HELPERS = r"""
local mtype = math.type
local function deq(a, b, ab, ba)
  if type(a) ~= type(b) then return false end
  if type(a) == "number" then
    if a ~= a then return b ~= b end
    if mtype and mtype(a) ~= mtype(b) then return false end
    if a == 0 and b == 0 then return 1 / a == 1 / b end
    return a == b
  end
  if type(a) ~= "table" then return a == b end
  if ab[a] ~= nil or ba[b] ~= nil then return ab[a] == b and ba[b] == a end
  ab[a], ba[b] = b, a
  for k, v in pairs(a) do
    if not deq(v, rawget(b, k), ab, ba) then return false end
  end
  for k in pairs(b) do
    if rawget(a, k) == nil then return false end
  end
  return true
end
function same(a, b) return deq(a, b, {}, {}) end
function roundtrip(v, opts) return same(v, wire.decode(wire.encode(v, opts), opts)) end
function refusal(v, opts)
  local ok, err = pcall(wire.encode, v, opts)
  if ok then return "no error" end
  return err
end
function reject(s, opts)
  local ok, err = pcall(wire.decode, s, opts)
  if ok then return "no error" end
  return err
end
"""


class Wire:
    """A runtime of one engine with the wire codec in the global `wire`."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.ints = lua_version(engine) >= (5, 3)   # an integer subtype
        self.lua = lupa_module(engine).LuaRuntime(**RUNTIME_OPTIONS)
        self.lua.execute("wire = ...", run_chunk(self.lua, SOURCE, b"=[ipc.linda.wire]"))
        self.lua.execute(HELPERS)

    def __call__(self, code: str, *args: Any) -> Any:
        """Runs a chunk (``...`` = args) and gives its results."""
        return self.lua.execute(code, *args)

    def encode(self, expr: str) -> bytes:
        """wire.encode of a Lua expression."""
        return self(f"return wire.encode({expr})")

    def number(self, x: float) -> float:
        """What a Python number is once it has been a Lua number here."""
        if self.ints:
            return x if isinstance(x, float) or -2**63 <= x < 2**63 else float(x)
        if isinstance(x, int):
            return x if abs(x) < 2**53 else float(x)
        negative_zero = x == 0 and math.copysign(1, x) < 0
        if x.is_integer() and abs(x) < 2**53 and not negative_zero:
            return int(x)
        return x

    def literal(self, v: Any) -> str:
        """Lua source for a Python value (str as its UTF-8 bytes)."""
        if v is None:
            return "nil"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int):
            return "math.mininteger" if self.ints and v == -2**63 else f"({v})"
        if isinstance(v, float):
            if math.isnan(v):
                return "(0/0)"
            if math.isinf(v):
                return "math.huge" if v > 0 else "(-math.huge)"
            return f'tonumber("{v!r}")'
        if isinstance(v, str):
            v = v.encode()
        if isinstance(v, bytes):
            return '"' + "".join(f"\\{c:03d}" for c in v) + '"'
        if isinstance(v, list):
            return "{" + ", ".join(self.literal(x) for x in v) + "}"
        if isinstance(v, dict):
            return "{" + ", ".join(f"[{self.literal(k)}] = {self.literal(x)}"
                                   for k, x in v.items()) + "}"
        raise TypeError(v)


@pytest.fixture
def wire(engine) -> Wire:
    return Wire(engine)


_WIRES: dict[str, Wire] = {}


def cached(engine: str) -> Wire:
    """One runtime per engine for the property tests (hypothesis runs many
    examples in one test)."""
    if engine not in _WIRES:
        _WIRES[engine] = Wire(engine)
    return _WIRES[engine]


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (1 is not 1.0, nor
    True; -0.0 is not 0.0; NaN is NaN)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a):
            return math.isnan(b)
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        keys = {(type(k), k) for k in b}
        return len(a) == len(b) and all((type(k), k) in keys and same(v, b[k])
                                        for k, v in a.items())
    return bool(a == b)


# -- numbers ------------------------------------------------------------------

INTS = [0, 1, -1, 127, 128, -32, -33, 255, 256, -128, -129, 65535, 65536, -32768, -32769,
        2**31 - 1, 2**31, -2**31, -2**31 - 1, 2**32 - 1, 2**32, -2**32, 2**53 - 1, 2**53,
        -2**53, 2**53 + 1, 2**62, 2**63 - 1, -2**63]
FLOATS = [0.5, -0.0, 0.0, 1.5, -1.5, 0.1, 1 / 3, 3.0, -7.0, 2.0**53, 2.0**63, 2.0**64,
          -2.0**63, 1e300, -1e-300, 5e-324, 2.2250738585072014e-308, 2.225073858507201e-308,
          1.7976931348623157e308, math.inf, -math.inf]


def test_ints_lua_to_python(wire):
    for x in INTS:
        data = wire.encode(wire.literal(x))
        want = wire.number(x)
        assert same(loads(data), want), (x, data.hex())
        assert data == msgpack.packb(want), (x, data.hex())   # msgpack's own bytes


def test_floats_lua_to_python(wire):
    for x in FLOATS:
        data = wire.encode(wire.literal(x))
        want = wire.number(x)
        assert same(loads(data), want), (x, data.hex())
        assert data == msgpack.packb(want), (x, data.hex())
        if isinstance(want, float):
            assert data[0] == 0xcb  # float64, never float32


def test_nan_crosses_as_a_float64(wire):
    data = wire.encode("0/0")
    assert data[0] == 0xcb and len(data) == 9
    assert math.isnan(loads(data))
    assert wire("local x = wire.decode(...); return x ~= x", dumps(math.nan)) is True


def test_int_and_float_stay_apart_on_5_3_and_later(wire):
    assert wire.encode("3.0") == (msgpack.packb(3.0) if wire.ints else b"\x03")
    assert wire.encode("3") == b"\x03"
    types = wire("local a, b = ... a, b = wire.decode(a), wire.decode(b) "
                 "return math.type and math.type(a) or 'none', math.type and math.type(b) or 'none'",
                 dumps(3.0), dumps(3))
    assert types == ((b"float", b"integer") if wire.ints else (b"none", b"none"))


def test_numbers_lua_to_lua(wire):
    for x in INTS + FLOATS + [math.nan]:
        assert wire(f"return roundtrip({wire.literal(x)})") is True, x
    # -0.0 keeps its sign, 2^53 as a float stays one
    assert wire("local z = wire.decode(wire.encode(tonumber('-0.0'))) return 1 / z") == -math.inf


def test_numbers_python_to_lua(wire):
    for x in INTS + FLOATS + [2**64 - 1, 2**63]:
        want = wire.number(x)
        got = wire(f"local v = wire.decode(...) return v == {wire.literal(want)}, "
                   "math.type and math.type(v) or 'number'", dumps(x))
        kind = (b"integer" if isinstance(want, int) else b"float") if wire.ints else b"number"
        assert got == (True, kind), (x, got)
    if wire.ints:  # the edges of int64 are exact
        assert wire("return wire.decode(...) == math.maxinteger", dumps(2**63 - 1)) is True
        assert wire("return wire.decode(...) == math.mininteger", dumps(-2**63)) is True
        # beyond int64: a float (uint64 2^64 - 1 rounds to 2^64)
        assert wire("local v = wire.decode(...) return math.type(v), v == 2^64",
                    dumps(2**64 - 1)) == (b"float", True)


def test_float32_is_read_too(wire):
    data = b"\xca" + bytes.fromhex("3fc00000")   # 1.5 as a float32
    assert wire("return wire.decode(...)", data) == 1.5
    assert wire("return wire.decode(...)", b"\xca\x7f\x80\x00\x00") == math.inf
    assert wire("return wire.decode(...)", b"\xca\x00\x00\x00\x01") == 2.0**-149


# -- strings ------------------------------------------------------------------

def test_strings_are_msgpack_str_with_their_bytes(wire):
    every = bytes(range(256))
    data = wire("return wire.encode(...)", every)
    assert data[:3] == b"\xda\x01\x00" and data[3:] == every   # str16, not bin
    assert loads(data) == every                                # not UTF-8: bytes
    assert loads(data, raw=True) == every
    assert wire("local data, every = ... return wire.decode(data) == every", data, every) is True
    for s in (b"", b"\xff\xfe", b"\xed\xa0\x80", b"caf\xc3\xa9"):
        data = wire("return wire.encode(...)", s)
        assert data[0] & 0xe0 == 0xa0                          # fixstr
        try:
            text = s.decode()
        except UnicodeDecodeError:
            assert loads(data) == s
        else:
            assert data == msgpack.packb(text) and same(loads(data), text)
        assert loads(data, raw=True) == s


def test_string_headers_at_every_size_boundary(wire):
    for n in (31, 32, 255, 256, 65535, 65536):
        data = wire(f"return wire.encode(string.rep('a', {n}))")
        assert data == msgpack.packb("a" * n), n
        assert wire("return #wire.decode(...)", data) == n


def test_bytes_and_str_from_python_are_lua_strings(wire):
    every = bytes(range(256))
    got = wire("local t = wire.decode(...) return t[1], t[2], t[3]",
               dumps([every, "héllo", ""]))
    assert got == (every, "héllo".encode(), b"")


# -- tables -------------------------------------------------------------------

# A sequence 1..8 whose keys are in the hash part, where next() gives them
# out of order on every engine (test_a_hashed_sequence_comes_out_of_order).
HASHED = ("local o = 1 local t = {[8*o]='v8', [7*o]='v7', [6*o]='v6', [5*o]='v5', "
          "[4*o]='v4', [3*o]='v3', [2*o]='v2', [1*o]='v1'}")

# (Lua expression, the value Python gets, whether Lua's bytes are msgpack's
# for that value: not so for maps of several keys, whose order is Lua's)
TABLES = [
    ("{}", {}, True),
    ("{1, 2, 3}", [1, 2, 3], True),
    ("{x = 1}", {"x": 1}, True),
    ("{{{}}}", [[{}]], True),
    ("{1, 'two', {x = {true, false}}}", [1, "two", {"x": [True, False]}], True),
    ("{1, 2, nil, 4}", {1: 1, 2: 2, 4: 4}, False),
    ("{[0] = 'z', 'a'}", {0: "z", 1: "a"}, False),
    ("{1, 2, x = 3}", {1: 1, 2: 2, "x": 3}, False),
    ("{[1.5] = 1}", {1.5: 1}, True),
    ("{[true] = 'y'}", {True: "y"}, True),
    ("{[-1] = 'm'}", {-1: "m"}, True),
    (f"(function() {HASHED} return t end)()", [f"v{i}" for i in range(1, 9)], True),
    (f"(function() {HASHED} for i = 1, 8 do t[i] = {{t[i]}} end return t end)()",
     [[f"v{i}"] for i in range(1, 9)], True),
    ("(function() local t = {} for i = 1, 100 do t[i] = i * 2 end return t end)()",
     [i * 2 for i in range(1, 101)], True),
    ("(function() local t = {} for i = 1, 20 do t['k' .. i] = i end return t end)()",
     {f"k{i}": i for i in range(1, 21)}, False),
    ("{ {1}, {2}, x = {3} }", {1: [1], 2: [2], "x": [3]}, False),
    ("setmetatable({1, 2}, {__index = function() return 'no' end})", [1, 2], True),
    ("setmetatable({1, 2, 3}, {__len = function() return 1 end})", [1, 2, 3], True),
]


@pytest.mark.parametrize(("expr", "want", "exact"), TABLES, ids=[t[0][:40] for t in TABLES])
def test_tables_lua_to_python(wire, expr, want, exact):
    data = wire.encode(expr)
    assert same(loads(data), want), data.hex()
    if exact:
        assert data == msgpack.packb(want)
    assert wire(f"return roundtrip({expr})") is True


def test_a_hashed_sequence_comes_out_of_order(wire):
    # what makes the two HASHED cases above test the encoder's second look
    keys = wire(f"{HASHED} local o = {{}} for k in next, t do o[#o + 1] = k end "
                "return table.concat(o, ',')")
    assert keys != b"1,2,3,4,5,6,7,8"


def test_a_sequence_is_an_array_and_anything_else_a_map(wire):
    kinds = wire("""
      local function kind(v) local c = wire.encode(v):byte() return
        (c >= 0x90 and c < 0xa0 or c == 0xdc) and "array" or "map" end
      return kind({1}), kind({}), kind({1, nil, 3}), kind({n = 1, 1}), kind({[2] = 2})""")
    assert kinds == (b"array", b"map", b"map", b"map", b"map")


def test_nested_values_lua_to_lua(wire):
    assert wire(r"""
      local big = {}
      for i = 1, 300 do big[i] = {id = i, name = "job" .. i, w = i / 3, ok = i % 2 == 0} end
      return roundtrip({1, "two", x = 3.5, [true] = {}, t = {{}, {{}}}, s = "\0\255"})
         and roundtrip(big) and roundtrip({}) and roundtrip({[1.5] = -0.0, [-3] = 1 / 0})
    """) is True


def test_holes_from_python_stay_holes(wire):
    got = wire("local t = wire.decode(...) return t[1], t[2], t[3], #t == 3 or #t == 1",
               dumps([1, None, 3]))
    assert got == (1, None, 3, True)
    # a None map value is simply absent in Lua
    assert wire("local t = wire.decode(...) return next(t)", dumps({"a": None})) is None


def test_python_containers_to_lua(wire):
    data = dumps({"a": [1, 2], "b": (3, 4), "c": {"d": {}}, "e": [], 7: "seven"})
    assert wire("""local t = wire.decode(...)
      return same(t, {a = {1, 2}, b = {3, 4}, c = {d = {}}, e = {}, [7] = "seven"})""",
                data) is True


# -- shared tables and cycles -------------------------------------------------

def test_shared_tables_lua_to_python_and_back(wire):
    data = wire("local s = {1} return wire.encode({s, s})")
    a = [1]
    assert data == dumps([a, a]) == bytes.fromhex("92c70301009101d40200")
    v = loads(data)
    assert v == [[1], [1]] and v[0] is v[1]
    assert wire("local t = wire.decode(...) return t[1] == t[2] and t[1][1] == 1", data) is True


def test_cycles_lua_to_python_and_back(wire):
    data = wire("local t = {} t[1] = t return wire.encode(t)")
    cyc: list[Any] = []
    cyc.append(cyc)
    assert data == dumps(cyc)
    v = loads(data)
    assert v[0] is v
    data = wire("local t = {} t.self = t return wire.encode(t)")
    d: dict[str, Any] = {}
    d["self"] = d
    assert data == dumps(d)
    v = loads(data)
    assert v["self"] is v
    assert wire("local t = wire.decode(...) return t.self == t", dumps(d)) is True


def test_ids_in_order_of_first_occurrence(wire):
    data = wire("local a, b = {1}, {2} return wire.encode({a, b, a, b, {a}})")
    a, b = [1], [2]
    assert data == dumps([a, b, a, b, [a]])
    v = loads(data)
    assert v[0] is v[2] is v[4][0] and v[1] is v[3] and v[0] is not v[1]


def test_sharing_and_cycles_lua_to_lua(wire):
    assert wire("""
      local s = {x = 1}
      local t = {s, s, {s}, m = {s = s}}
      t.self = t
      s.back = t
      local d = wire.decode(wire.encode(t))
      return same(t, d) and d[1] == d[2] and d[3][1] == d[1] and d.m.s == d[1]
         and d.self == d and d[1].back == d and d ~= t""") is True


def test_python_sharing_to_lua(wire):
    a = {"k": [1, 2]}
    cyc: list[Any] = [a]
    cyc.append(cyc)
    data = dumps([a, a["k"], cyc])
    assert wire("""local t = wire.decode(...)
      return t[1] == t[3][1] and t[2] == t[1].k and t[3][2] == t[3]""", data) is True


def test_python_sharing_round_trip():
    a = [1]
    d: dict[str, Any] = {"a": a, "b": a}
    d["me"] = d
    v = loads(dumps(d))
    assert v["a"] is v["b"] and v["me"] is v and v["a"] == [1]
    # tuples go by value: no ext for them
    t = (1, 2)
    assert dumps([t, t]) == msgpack.packb([[1, 2], [1, 2]])


# -- refusals -----------------------------------------------------------------

FN = "{engine = wire.engine}"
REFUSALS = [
    ("{jobs = {1, 2, {fn = print}}}", "nil", "cannot send a function at value.jobs[3].fn"),
    ("{x = io.stdout}", "nil", "cannot send a userdata at value.x"),
    ("{co = coroutine.create(function() end)}", "nil", "cannot send a coroutine at value.co"),
    ("{a = {[{}] = 1}}", "nil", "cannot send a table used as a map key at value.a"),
    ("{[print] = 1}", "nil", "cannot send a function used as a map key at value"),
    ("print", "nil", "cannot send a function at value"),
    ("function() end", "nil", "cannot send a function at value"),
    ('{["a b"] = {print}}', "nil", 'cannot send a function at value["a b"][1]'),
    ("{[2.5] = {print}}", "nil", "cannot send a function at value[2.5][1]"),
    ("{[true] = {x = io.stdout}}", "nil", "cannot send a userdata at value[true].x"),
    ("(function() local s = {} return {s, s, {print}} end)()", "nil",
     "cannot send a function at value[3][1]"),
    ("{f = print}", FN, "cannot send a C function at value.f"),
    ("(function() local h = io.stdout return {function() return h end} end)()", FN,
     "cannot send a userdata at value[1]<upvalue h>"),
    ("{x = io.stdout}", "{ref = function() return 1 end}",
     "cannot send a userdata (opts.ref gave a number, not a linda name) at value.x"),
]


@pytest.mark.parametrize(("expr", "opts", "message"), REFUSALS,
                         ids=[r[2].split(" at ")[-1] + " " + r[0][:20] for r in REFUSALS])
def test_refusals_name_the_place(wire, expr, opts, message):
    assert wire(f"return refusal({expr}, {opts})").decode() == message
    # and the next encode starts clean
    assert wire("return wire.encode({1, {2}})") == msgpack.packb([1, [2]])


def test_nesting_deeper_than_the_limit_is_refused(wire):
    ok = wire(f"""local t = {{}} local c = t
      for i = 2, {MAX_DEPTH} do c.x = {{}} c = c.x end
      return roundtrip(t)""")
    assert ok is True
    msg = wire(f"""local t = {{}} local c = t
      for i = 2, {MAX_DEPTH + 1} do c.x = {{}} c = c.x end
      return refusal(t)""").decode()
    assert msg.startswith(f"cannot send a value nested deeper than {MAX_DEPTH} levels at "
                          "value.x.x.x.x.x.x.x[...].x.x.x"), msg


def test_python_plain_nested_values_are_packb_and_sharing_still_found():
    """dumps' short path (packb alone) takes nested lists, tuples and dicts
    of exact scalars; a list or dict met twice anywhere, a subclass, or
    nesting at the limit takes the long one."""
    v = [1, "two", {"x": 3.5, "l": [b"\x00", None, (True, -7)]}]
    assert dumps(v) == msgpack.packb(v)
    a = [1]
    shared = [{"p": a}, {"q": [a]}]
    got = loads(dumps(shared))
    assert got[0]["p"] is got[1]["q"][0] and got[0]["p"] == [1]

    class D(dict):
        pass
    assert loads(dumps([{"d": D(k=1)}])) == [{"d": {"k": 1}}]

    deep: list[Any] = []
    c = deep
    for _ in range(MAX_DEPTH - 1):
        c.append([])
        c = c[0]
    assert loads(dumps(deep)) == deep                       # MAX_DEPTH levels
    c.append(())
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels"):
        dumps(deep)


def test_bad_options_are_refused(wire):
    assert wire("return refusal(1, 'x')") == (
        b"bad linda encode options: a table expected, got string")
    assert wire("return refusal({}, {engine = 5})") == (
        b"bad linda encode options: engine must be a string, got number")
    assert wire("return reject('\\192', 5)") == (
        b"bad linda decode options: a table expected, got number")
    assert wire("return reject(5)") == b"malformed linda message: a string expected, got number"


def test_python_refusals_name_the_place():
    cases = [
        ({1, 2}, TypeError, "cannot send a set at value"),
        ({"jobs": [1, object()]}, TypeError, "cannot send an object at value['jobs'][1]"),
        ({(1,): 2}, TypeError, "cannot send a tuple as a map key at value"),
        ({"a": {None: 1}}, TypeError, "cannot send None as a map key at value['a']"),
        ({math.nan: 1}, ValueError, "cannot send a NaN map key at value"),
        ([2**64], ValueError, "cannot send an int out of msgpack's range"),
        ({"a": [1, {"b": -2**63 - 1}]}, ValueError, "at value['a'][1]['b']"),
        (["\udc80"], ValueError,
         "cannot send a str that is not valid Unicode (a lone surrogate) at value[0]"),
        ([msgpack.ExtType(1, b"")], TypeError, "cannot send a msgpack.ext.ExtType at value[0]"),
    ]
    for value, cls, message in cases:
        with pytest.raises(cls) as info:
            dumps(value)
        assert message in str(info.value), (value, str(info.value))
    deep: list[Any] = []
    c = deep
    for _ in range(MAX_DEPTH):
        c.append([])
        c = c[0]
    with pytest.raises(ValueError, match=f"nested deeper than {MAX_DEPTH} levels at value"):
        dumps(deep)
    assert loads(dumps(deep[0])) == deep[0]      # 200 levels go


def test_python_subclasses_go_as_their_base_types():
    import enum

    class Color(enum.IntEnum):
        RED = 1

    class Tag(str):
        pass

    class Seq(list):
        pass

    from collections import OrderedDict
    value = [Color.RED, Tag("t"), Seq([1]), OrderedDict(a=1), bytearray(b"x"),
             memoryview(b"y"), 2.5]
    assert same(loads(dumps(value)), [1, "t", [1], {"a": 1}, b"x", b"y", 2.5])
    assert dumps(value) == msgpack.packb([1, "t", [1], {"a": 1}, b"x", b"y", 2.5])


# -- functions (ext 3) --------------------------------------------------------

def test_functions_cross_with_their_upvalues(wire):
    assert wire(f"""
      local n = 10
      local cfg = {{k = 1}}
      local function count() n = n + 1 return n end
      local function get() return cfg.k, math.floor(2.5) end
      local function fact(k) if k <= 1 then return 1 end return k * fact(k - 1) end
      local v = {{count = count, get = get, cfg = cfg, fact = fact, again = count}}
      local d = wire.decode(wire.encode(v, {FN}), {FN})
      local a = d.count()
      local k, f = d.get()
      d.cfg.k = 5                        -- the upvalue and d.cfg are one table
      return a == 11 and n == 10 and k == 1 and f == 2 and d.get() == 5
         and d.fact(5) == 120 and d.again == d.count and d.count ~= count""") is True


def test_functions_need_the_engine_option(wire):
    data = wire(f"return wire.encode(function() return 1 end, {FN})")
    assert wire("return reject(...)", data).decode() == (
        f"cannot receive a function from {wire.engine}: decode was not given opts.engine")
    assert wire("return refusal(function() end)") == b"cannot send a function at value"
    with pytest.raises(ValueError, match=r"^a Lua function cannot be loaded in Python$"):
        loads(data)
    shared = wire(f"local f = function() end return wire.encode({{f, f}}, {FN})")
    with pytest.raises(ValueError, match=r"^a Lua function cannot be loaded in Python$"):
        loads(shared)


def test_a_function_loads_only_on_its_engine(wire):
    other = DEFAULT_ENGINE if wire.engine != DEFAULT_ENGINE else LUAJITS[-1]
    if other not in installed():
        pytest.skip(f"{other} is not in this lupa")
    data = wire(f"return wire.encode({{function() end}}, {FN})")
    there = cached(other)
    assert there("return reject(..., {engine = wire.engine})", data).decode() == (
        f"function from {wire.engine} cannot be loaded on {other}")


# -- linda references (ext 4) -------------------------------------------------

def test_linda_references_lua_side(wire):
    data = wire("""
      local L = setmetatable({}, {})
      local asked = 0
      local function ref(x)
        asked = asked + 1
        if x == L then return "jobs" elseif x == io.stdout then return "out" end
      end
      local s = wire.encode({L, io.stdout, L, {plain = {}}}, {ref = ref})
      assert(asked == 2, asked)             -- once each; plain tables are not asked
      return s""")
    assert same(loads(data), [LindaRef("jobs"), LindaRef("out"), LindaRef("jobs"),
                              {"plain": {}}])
    assert loads(data, unref=lambda name: name.upper())[:3] == ["JOBS", "OUT", "JOBS"]
    assert wire("""local d = wire.decode(..., {unref = function(n) return "<" .. n .. ">" end})
      return d[1] .. d[2] .. d[3]""", data) == b"<jobs><out><jobs>"
    assert wire("return reject(...)", data) == (
        b"cannot receive a linda reference (jobs): decode was not given opts.unref")
    # at the top, too: a table with a metatable and a userdata
    tops = wire("""local L = setmetatable({}, {})
      local function ref(x) if x == L then return "jobs" elseif x == io.stdout then return "" end end
      return wire.encode(L, {ref = ref}), wire.encode(io.stdout, {ref = ref}),
             wire.encode(setmetatable({1}, {}), {ref = ref})""")
    assert [loads(t) for t in tops] == [LindaRef("jobs"), LindaRef(""), [1]]
    assert tops[1] == dumps(LindaRef("")) == b"\xc7\x00\x04"


def test_linda_references_python_side(wire):
    class Linda:
        def __init__(self, name: str) -> None:
            self.name = name

    jobs = Linda("jobs")
    data = dumps({"q": jobs, "r": LindaRef("res")}, ref=lambda o: o.name if isinstance(o, Linda)
                 else None)
    assert loads(data) == {"q": LindaRef("jobs"), "r": LindaRef("res")}
    calls: list[str] = []

    def unref(name: str) -> object:
        calls.append(name)
        return Linda(name)

    v = loads(dumps([jobs, jobs], ref=lambda o: o.name), unref=unref)
    assert v[0] is v[1] and v[0].name == "jobs" and calls == ["jobs"]
    assert wire("""local d = wire.decode(..., {unref = function(n) return "L:" .. n end})
      return d.q, d.r""", data) == (b"L:jobs", b"L:res")
    with pytest.raises(TypeError, match=r"cannot send a .*Linda at value"):
        dumps(jobs)
    with pytest.raises(TypeError, match=r"at value\[0\]: ref gave an int, not a linda name"):
        dumps([jobs], ref=lambda _o: 7)
    with pytest.raises(ZeroDivisionError):   # a hook's own error comes through as it is
        loads(data, unref=lambda _name: 1 / 0)


def test_hooks_may_encode_and_decode_in_their_turn(wire):
    assert wire("""
      local L = setmetatable({}, {})
      local inner
      local function ref(x)
        inner = wire.encode({1, {2}, x = "y"})         -- another encode, mid-way
        return "L"
      end
      local s = {7}
      local v = {s, L, s, {8}}
      local data = wire.encode(v, {ref = ref})
      local function unref(name) return wire.decode(inner) end
      local d = wire.decode(data, {unref = unref})
      return d[1] == d[3] and d[1][1] == 7 and d[2].x == "y" and d[2][2][1] == 2
         and d[4][1] == 8""") is True


# -- malformed input ----------------------------------------------------------

NAN = b"\xcb\x7f\xf8\x00\x00\x00\x00\x00\x00"
# (bytes, Lua's message, Python's message or None when Python can hold it)
MALFORMED = [
    (b"", "malformed linda message: truncated", "malformed linda message: truncated"),
    (b"\x91", "malformed linda message: truncated", "malformed linda message: truncated"),
    (b"\xa3ab", "malformed linda message: truncated", "malformed linda message: truncated"),
    (b"\xcb\x00\x00", "malformed linda message: truncated", "malformed linda message: truncated"),
    (b"\xdd\xff\xff\xff\xff", "malformed linda message: truncated",
     "malformed linda message: truncated"),
    (b"\xdb\xff\xff\xff\xff", "malformed linda message: truncated",
     "malformed linda message: truncated"),
    (b"\xc1", "malformed linda message: byte 0xc1 (never used) at offset 0",
     "malformed linda message: byte 0xc1 (never used) at offset 0"),
    (b"\x90\x00", "malformed linda message: 1 byte after the value",
     "malformed linda message: 1 byte after the value"),
    (b"\xc0\xc0\xc0", "malformed linda message: 2 bytes after the value",
     "malformed linda message: 2 bytes after the value"),
    (b"\xd4\x02\x00", "malformed linda message: a back-reference to an unknown id",
     "malformed linda message: a back-reference to an unknown id"),
    (b"\xd5\x01\x01\x90", "malformed linda message: a shared table with an id out of order",
     "malformed linda message: a shared table with an id out of order"),
    (b"\xd5\x01\x00\x01", "malformed linda message: ext 1 wraps no table",
     "malformed linda message: ext 1 wraps no table"),
    (b"\xc7\x04\x01\x00\x91\x01\x00",
     "malformed linda message: a shared table whose length does not match its content",
     "malformed linda message: a shared table whose length does not match its content"),
    (b"\xd4\x09\x00", "malformed linda message: unknown ext type 9",
     "malformed linda message: unknown ext type 9"),
    (b"\xd4\xff\x00", "malformed linda message: unknown ext type -1",
     "malformed linda message: unknown ext type -1"),
    (b"\xc7\x00\x05", "malformed linda message: the global table marker outside a function",
     "malformed linda message: the global table marker outside a function"),
    (b"\x81\x90\x01", "malformed linda message: a table as a map key",
     "cannot load a map key that is an array: a Python dict key must be hashable"),
    (b"\x81\x80\x01", "malformed linda message: a table as a map key",
     "cannot load a map key that is a map: a Python dict key must be hashable"),
    (b"\x81\xc0\x01", "malformed linda message: a nil map key", None),
    (b"\x81" + NAN + b"\x01", "malformed linda message: a NaN map key", None),
    (b"\x91" * (MAX_DEPTH + 1) + b"\xc0",
     f"malformed linda message: nested deeper than {MAX_DEPTH} levels", None),
]


@pytest.mark.parametrize(("data", "lua_message", "py_message"), MALFORMED,
                         ids=[m[0][:8].hex() for m in MALFORMED])
def test_malformed_input_is_refused(wire, data, lua_message, py_message):
    assert wire("return reject(...)", data).decode() == lua_message
    assert wire("return wire.decode(wire.encode({1, 'x'}))[2]") == b"x"   # starts clean
    if py_message is None:
        loads(data)   # Python can hold a None or NaN key, and msgpack's deep nesting
    else:
        with pytest.raises(ValueError) as info:
            loads(data)
        assert str(info.value) == py_message


def test_python_refuses_very_deep_nesting_cleanly():
    # msgpack's own decoder stops at its stack limit; ours at MAX_DEPTH
    with pytest.raises(ValueError, match="nested deeper than 200 levels"):
        loads(b"\x91" * 100_000 + b"\xc0")
    with pytest.raises(ValueError, match="nested deeper than 200 levels"):
        loads(b"\xd4\x01\x00" + b"\x91" * 300 + b"\xc0")


def test_every_truncation_is_refused(wire):
    data = wire("""local s = {1.5, "x"} local t = {s, s, {k = string.rep("v", 40)}, -70000}
      t.me = t return wire.encode({t, 2.5, "end"})""")
    loads(data)
    for n in range(len(data)):
        assert wire("return reject(...)", data[:n]).decode() == (
            "malformed linda message: truncated"), n
        with pytest.raises(ValueError, match=r"^malformed linda message"):
            loads(data[:n])


def test_a_wrong_type_of_message(wire):
    with pytest.raises(TypeError):
        loads(123)  # type: ignore[arg-type]
    assert wire("return reject({})") == b"malformed linda message: a string expected, got table"


# -- properties ---------------------------------------------------------------

LEAVES = (st.booleans() | st.integers(-2**63, 2**63 - 1) | st.floats(allow_nan=False)
          | st.text(max_size=40))
#: Values whose Lua form is one to one: no None inside a table (a hole), no
#: empty list (an empty table is a map), str keys only, one key per map (the
#: order of a map's keys is Lua's own).
ONE_TO_ONE = st.none() | st.recursive(
    LEAVES, lambda kids: st.lists(kids, min_size=1, max_size=6)
    | st.dictionaries(st.text(max_size=8), kids, max_size=1), max_leaves=20)
#: Any value Lua can hold, for the trip Python -> Lua -> Python.
KEYS = st.text(max_size=8) | st.integers(-2**63, 2**63 - 1) | st.booleans() | st.binary(max_size=8)
ANY = st.recursive(
    LEAVES | st.none() | st.binary(max_size=20) | st.floats(),
    lambda kids: st.lists(kids.filter(lambda v: v is not None), max_size=6)
    | st.dictionaries(KEYS, kids, max_size=6), max_leaves=25)

PROPERTY = hypothesis.settings(max_examples=40, deadline=None, suppress_health_check=[
    hypothesis.HealthCheck.function_scoped_fixture, hypothesis.HealthCheck.too_slow])


def through_lua(w: Wire, v: Any) -> Any:
    """What a Python value is after a trip through Lua (decode, encode)."""
    if v is None or isinstance(v, bool):
        return v
    if isinstance(v, (int, float)):
        return w.number(v)
    if isinstance(v, bytes):
        try:
            return v.decode()
        except UnicodeDecodeError:
            return v
    if isinstance(v, str):
        return v
    items = list(enumerate(v, 1)) if isinstance(v, list) else list(v.items())
    out: dict[Any, Any] = {}
    for k, x in items:              # in order: Lua's t[k] = nil removes a key set before
        key = through_lua(w, k)
        if x is None:
            out.pop(key, None)
        else:
            out[key] = through_lua(w, x)
    keys = list(out)
    if keys and all(type(k) is int for k in keys) and sorted(keys) == list(range(1, len(keys) + 1)):
        return [out[i] for i in range(1, len(keys) + 1)]
    return out


@PROPERTY
@hypothesis.given(value=ONE_TO_ONE)
def test_property_lua_writes_what_msgpack_writes(engine, value):
    w = cached(engine)
    data = w(f"return wire.encode({w.literal(value)})")
    want = through_lua(w, value)
    assert data == dumps(want) == msgpack.packb(want)
    assert same(loads(data), want)


@PROPERTY
@hypothesis.given(value=ANY)
def test_property_python_to_lua_and_back(engine, value):
    w = cached(engine)
    data = w("return wire.encode(wire.decode(...))", dumps(value))
    assert same(loads(data), through_lua(w, value))


@hypothesis.settings(max_examples=200, deadline=None)
@hypothesis.given(value=ANY)
def test_property_python_round_trip(value):
    want = through_python(value)
    assert same(loads(dumps(value)), want)


def through_python(v: Any) -> Any:
    """dumps then loads: tuples are lists, and None in a map stays."""
    if isinstance(v, list):
        return [through_python(x) for x in v]
    if isinstance(v, dict):
        return {k: through_python(x) for k, x in v.items()}
    return v


def valid_messages() -> list[bytes]:
    a = [1, "two"]
    cyc: list[Any] = [a, a, {"x": 3.5, "b": b"\x00\xff"}, LindaRef("q"), 2**40, -7]
    cyc.append(cyc)
    return [dumps(cyc), dumps({"k": [None, True, 1e300]}), dumps("s" * 40)]


@PROPERTY
@hypothesis.given(data=st.binary(max_size=48) | st.builds(
    lambda m, i, b: m[:i % len(m)] + bytes([b]) + m[i % len(m) + 1:],
    st.sampled_from(valid_messages()), st.integers(0, 10**6), st.integers(0, 255)))
def test_property_hostile_bytes_never_crash_either_decoder(engine, data):
    w = cached(engine)
    msg = w("return reject(...)", data).decode("utf-8", "replace")
    assert msg == "no error" or msg.startswith((
        "malformed linda message: ", "cannot receive a function from ",
        "cannot receive a linda reference")), msg
    try:
        loads(data)
    except ValueError:
        pass
