-- The wire codec of lindas (issue 15): one Lua value <-> one msgpack object,
-- in pure Lua, for every engine (5.1-5.5, LuaJIT 2.0 and 2.1).  Only bytes
-- cross between a Lua state and Python, so the Lua side encodes and decodes
-- itself; ipc/linda/_wire.py is the same format over the msgpack library.
--
-- Loaded with (loadstring or load)(src, "=[ipc.linda.wire]") and called with
-- no arguments; the chunk returns
--
--   wire.encode(v [, opts]) -> string     one msgpack object
--   wire.decode(s [, opts]) -> v          exactly one object, nothing after it
--   wire.engine                           this state's tag: "lua5.4", "luajit2.1"...
--   wire.maxdepth                         200, the deepest nesting either side takes
--
-- opts (a table; every field optional):
--   encode: opts.engine  a tag (give wire.engine): Lua functions may cross (ext 3)
--           opts.ref     ref(x) -> a linda name or nil, asked of each userdata and
--                        each table with a metatable: a name sends x as ext 4
--   decode: opts.engine  this state's tag: functions from that engine load
--           opts.unref   unref(name) -> the value to put where ext 4 `name` was
--
-- The format (each value one msgpack object):
--
--   Lua                        msgpack                  back in Lua
--   nil, boolean               nil, bool                the same
--   integer (5.3+)             int, smallest encoding   integer (uint64 >= 2^63: float)
--   float (5.3+)               float64, always          float (3.0 stays a float)
--   number (5.1, 5.2, LuaJIT)  int if integral and      number (an int64/uint64 beyond
--                              |x| < 2^53 (-0 aside),   2^53 loses precision there)
--                              else float64
--   string                     str (bytes as they are,  string (str and bin alike;
--                              UTF-8 or not)            float32 is read too)
--   sequence 1..n, n >= 1      array                    sequence; a nil in an array
--   any other table            map (an empty table too) (from Python) is a hole
--   a table met twice          ext 1 (id, container) at its first occurrence, then
--                              ext 2 (id): ids 0, 1, 2... in order of first occurrence;
--                              cycles work (the table is made, then filled)
--   Lua function (opt-in)      ext 3 (engine tag, string.dump bytecode, array of
--                              upvalues, each a value or ext 5 for _G)
--   linda (opt-in, opts.ref)   ext 4 (the name's bytes)
--
-- Metatables do not cross, nor does an upvalue cell two closures share
-- (each gets a variable of its own, holding the same value: a table stays
-- one table), nor a 5.1 function environment (a loaded function gets the
-- receiving state's globals).  Loading bytecode is as safe as the sender:
-- turn functions on only between trusting processes.  decode refuses a map
-- key that is nil, NaN or a table (as encode refuses a table key), and a
-- nil map value (from Python) leaves its key out.
--
-- Refusals are Lua errors raised with level 0, naming what cannot cross and
-- where, as a key path from the value: "cannot send a function at
-- value.jobs[3].fn", "cannot send a table used as a map key at value.x";
-- `<upvalue n>` in a path is a function's upvalue.  Bad input to decode
-- raises "malformed linda message: ..." and changes nothing.
--
-- Speed: a scalar is one piece; a plain value (scalars and tables of them,
-- no table met twice, no hooks to ask) is checked and written in one pass
-- (fast) into a buffer kept between calls, concatenated once.  Anything
-- else takes two passes: the first (scan) checks every key and value, finds
-- the tables met more than once and tells sequences from maps, and gives the
-- refusals their key paths; the second (emit) writes.  The state of a call
-- is kept in upvalues of this chunk (no closure per call); a hook that
-- encodes or decodes in its turn gets it saved and restored around it.
-- decode reads fixints and short strings inline in its table loops.

local type, next, rawget, rawequal, tostring, tonumber, error =
      type, next, rawget, rawequal, tostring, tonumber, error
local byte, char, sub, format, find, gsub, dump =
      string.byte, string.char, string.sub, string.format, string.find, string.gsub, string.dump
local concat = table.concat
local floor, huge, frexp, ldexp = math.floor, math.huge, math.frexp, math.ldexp
local getmeta, getinfo, getupvalue, setupvalue =
      debug.getmetatable, debug.getinfo, debug.getupvalue, debug.setupvalue
local pack, unpack = string.pack, string.unpack   -- 5.3+
local mtype = math.type                           -- 5.3+: integers are a subtype
local INTS = mtype ~= nil
local rawlen = rawlen or function(t) return #t end  -- 5.1, LuaJIT: # is raw already
local G = _G

local MAXDEPTH = 200

local V = tonumber((_VERSION:gsub("%D", "")))     -- 51 ... 55 (LuaJIT: 51)
local ENGINE
if type(jit) == "table" and type(jit.version) == "string" then
  ENGINE = "luajit" .. (jit.version:match("(%d+%.%d+)") or "?")
else
  ENGINE = "lua" .. (_VERSION:match("(%d+%.%d+)") or "?")
end

-- Bytecode only ("b"), where the engine can say so; 5.1 tells by the
-- signature, checked before the call.
local loadbin
if V >= 52 or jit then
  loadbin = function(bc) return load(bc, "=(linda)", "b") end
else
  loadbin = loadstring
end

-- -- encoding: pieces -----------------------------------------------------

local FIX, FIXSTR, FIXARR, FIXMAP = {}, {}, {}, {}
for v = 0, 127 do FIX[v] = char(v) end
for v = -32, -1 do FIX[v] = char(v + 256) end
for k = 0, 31 do FIXSTR[k] = char(0xa0 + k) end
for k = 0, 15 do FIXARR[k] = char(0x90 + k); FIXMAP[k] = char(0x80 + k) end

local TWO32, TWO52, TWO53 = 4294967296, 4503599627370496, 9007199254740992

local function be16(x) return char(floor(x / 256), x % 256) end
local function be32(x)
  return char(floor(x / 16777216), floor(x / 65536) % 256, floor(x / 256) % 256, x % 256)
end

-- A number as one piece.
local num
if mtype then
  num = function(v)
    if mtype(v) ~= "integer" then return pack(">Bd", 0xcb, v) end
    if v >= 0 then
      if v < 128 then return FIX[v] end
      if v < 256 then return char(0xcc, v) end
      if v < 65536 then return pack(">BI2", 0xcd, v) end
      if v < TWO32 then return pack(">BI4", 0xce, v) end
      return pack(">Bi8", 0xcf, v)              -- the same bytes as uint64
    end
    if v >= -32 then return FIX[v] end
    if v >= -128 then return pack(">Bi1", 0xd0, v) end
    if v >= -32768 then return pack(">Bi2", 0xd1, v) end
    if v >= -2147483648 then return pack(">Bi4", 0xd2, v) end
    return pack(">Bi8", 0xd3, v)
  end
else
  -- IEEE 754 binary64 by hand: frexp gives x = m * 2^e, 0.5 <= m < 1.
  local function f64(x)
    if x ~= x then return "\203\127\248\0\0\0\0\0\0" end   -- NaN: the quiet one
    local sign = 0
    if x < 0 or (x == 0 and 1 / x < 0) then sign = 128; x = -x end
    if x == huge then return char(0xcb, sign + 127, 240, 0, 0, 0, 0, 0, 0) end
    if x == 0 then return char(0xcb, sign, 0, 0, 0, 0, 0, 0, 0) end
    local m, e = frexp(x)
    local E, f = e + 1022, nil
    if E <= 0 then                                  -- subnormal: x = f * 2^-1074
      f, E = ldexp(m, e + 1074), 0
    else
      f = (m * 2 - 1) * TWO52
    end
    local hi = floor(f / TWO32)
    return char(0xcb, sign + floor(E / 16), (E % 16) * 16 + floor(hi / 65536),
                floor(hi / 256) % 256, hi % 256) .. be32(f - hi * TWO32)
  end
  num = function(v)
    if v % 1 ~= 0 or v <= -TWO53 or v >= TWO53 or (v == 0 and 1 / v < 0) then
      return f64(v)
    end
    if v >= 0 then
      if v < 128 then return FIX[v] end
      if v < 256 then return char(0xcc, v) end
      if v < 65536 then return char(0xcd, floor(v / 256), v % 256) end
      if v < TWO32 then return "\206" .. be32(v) end
      local hi = floor(v / TWO32)
      return "\207" .. be32(hi) .. be32(v - hi * TWO32)
    end
    if v >= -32 then return FIX[v] end
    if v >= -128 then return char(0xd0, v + 256) end
    if v >= -32768 then return "\209" .. be16(v + 65536) end
    if v >= -2147483648 then return "\210" .. be32(v + TWO32) end
    local hi = floor(v / TWO32)                     -- negative; v - hi * 2^32 in [0, 2^32)
    return "\211" .. be32(hi + TWO32) .. be32(v - hi * TWO32)
  end
end

local function strhead(len)
  if len < 32 then return FIXSTR[len] end
  if len < 256 then return char(0xd9, len) end
  if len < 65536 then return char(0xda, floor(len / 256), len % 256) end
  if len < TWO32 then return "\219" .. be32(len) end
  error("cannot send a string of 4 GiB or more", 0)
end

local function arrayhead(n)
  if n < 16 then return FIXARR[n] end
  if n < 65536 then return "\220" .. be16(n) end
  return "\221" .. be32(n)
end

local function maphead(n)
  if n < 16 then return FIXMAP[n] end
  if n < 65536 then return "\222" .. be16(n) end
  return "\223" .. be32(n)
end

-- The header msgpack's own packers choose for an ext of `len` bytes.
local FIXEXT = { [1] = 0xd4, [2] = 0xd5, [4] = 0xd6, [8] = 0xd7, [16] = 0xd8 }
local function exthead(len, typ)
  local f = FIXEXT[len]
  if f then return char(f, typ) end
  if len < 256 then return char(0xc7, len, typ) end
  if len < 65536 then return char(0xc8, floor(len / 256), len % 256, typ) end
  return "\201" .. be32(len) .. char(typ)
end

-- -- encoding: the state of one call -------------------------------------

local SEEN      -- table or function -> true (being scanned), or a table's code
local SHARED    -- table or function -> true: met more than once
local NAMES     -- value -> linda name, from opts.ref
local IDS, NEXTID   -- SHARED value -> its id, assigned as emit meets it
local TOP, TOPCODE  -- the top table and its code, when SEEN is not needed
local REF, FN       -- opts.ref, opts.engine
local P = {}        -- P[1..d]: the keys from the value down to where scan is

-- A table's code: n > 0 for a sequence 1..n (an array), -1 - count for a map.

local function clear()
  SEEN, SHARED, NAMES, IDS, TOP, REF, FN = nil, nil, nil, nil, nil, nil, nil
end

local function keyname(k)
  local tk = type(k)
  if tk == "string" then
    if find(k, "^[%a_][%w_]*$") then return "." .. k end
    return '["' .. gsub(k, '[%c"\\\128-\255]', function(c)
      return format("\\%d", byte(c))
    end) .. '"]'
  end
  if tk == "table" then return "<upvalue " .. k[1] .. ">" end   -- see visit
  return "[" .. tostring(k) .. "]"
end

-- The path P[1..d], its middle left out when it is long.
local function where(d)
  local out, k = { "value" }, 1
  while k <= d do
    if d > 16 and k == 8 then out[#out + 1] = "[...]"; k = d - 7 end
    out[#out + 1] = keyname(P[k])
    k = k + 1
  end
  return concat(out)
end

local function fail(what, d)
  local path = where(d)
  clear()
  error("cannot send " .. what .. " at " .. path, 0)
end

local KIND = { table = "a table", ["function"] = "a function", userdata = "a userdata",
               thread = "a coroutine", cdata = "a cdata" }
local function kind(v)
  local tv = type(v)
  return KIND[tv] or ("a " .. tv)
end

-- opts.ref(v), with this call's state saved around it (it may encode).
local function callref(v, d)
  local seen, shared, names, top, topcode, ref, fn, p =
        SEEN, SHARED, NAMES, TOP, TOPCODE, REF, FN, P
  P = {}
  local name = ref(v)
  SEEN, SHARED, NAMES, TOP, TOPCODE, REF, FN, P = seen, shared, names, top, topcode, ref, fn, p
  if name == nil then return nil end
  if type(name) ~= "string" then
    fail(kind(v) .. " (opts.ref gave " .. kind(name) .. ", not a linda name)", d)
  end
  if not names then names = {}; NAMES = names end
  names[v] = name
  return name
end

local scan

-- Checks a value that is no string, number or boolean, reached at P[1..d].
local function visit(v, tv, d)
  local names = NAMES
  if names and names[v] then return end
  if tv == "table" then
    local seen = SEEN
    if not seen then seen = { [TOP] = true }; SEEN = seen end
    if seen[v] then
      local shared = SHARED
      if not shared then shared = {}; SHARED = shared end
      shared[v] = true
      return
    end
    if REF and getmeta(v) ~= nil and callref(v, d) then return end
    seen[v] = true
    seen[v] = scan(v, d + 1)
  elseif tv == "function" then
    if not FN then fail("a function", d) end
    if getinfo(v, "S").what == "C" then fail("a C function", d) end
    local seen = SEEN
    if not seen then seen = { [TOP] = true }; SEEN = seen end
    if seen[v] then
      local shared = SHARED
      if not shared then shared = {}; SHARED = shared end
      shared[v] = true
      return
    end
    seen[v] = true
    if d + 1 > MAXDEPTH then fail("a value nested deeper than " .. MAXDEPTH .. " levels", d) end
    local i = 1
    while true do
      local name, u = getupvalue(v, i)
      if name == nil then break end
      local tu = type(u)
      if tu ~= "string" and tu ~= "number" and tu ~= "boolean" and tu ~= "nil"
         and not rawequal(u, G) then
        P[d + 1] = { name }
        visit(u, tu, d + 1)
      end
      i = i + 1
    end
  elseif tv == "userdata" then
    if not (REF and callref(v, d)) then fail("a userdata", d) end
  elseif tv ~= "nil" then
    fail(kind(v), d)
  end
end

-- Checks the table t, reached at P[1..lvl-1]; gives its code.
function scan(t, lvl)
  if lvl > MAXDEPTH then
    fail("a value nested deeper than " .. MAXDEPTH .. " levels", lvl - 1)
  end
  local n = rawlen(t)
  local count, seq = 0, n > 0
  for k, v in next, t do
    count = count + 1
    local tk = type(k)
    if tk == "number" then
      if seq and (k < 1 or k > n or k % 1 ~= 0) then seq = false end
    elseif tk == "string" or tk == "boolean" then
      seq = false
    else
      fail(kind(k) .. " used as a map key", lvl - 1)
    end
    local tv = type(v)
    if tv ~= "string" and tv ~= "number" and tv ~= "boolean" then
      P[lvl] = k
      visit(v, tv, lvl)
    end
  end
  if seq and count == n then return n end
  return -1 - count
end

-- -- encoding: emit -------------------------------------------------------

local emit

-- Closes an ext whose header goes in buf[hdr] and payload is buf[hdr+1..n].
local function close(buf, hdr, n, typ)
  local len = 0
  for k = hdr + 1, n do len = len + #buf[k] end
  buf[hdr] = exthead(len, typ)
end

-- The id of a SHARED value: emits ext 2 and gives nil when it has one; else
-- assigns the next one, opens the ext 1 and gives its header's slot and n.
local function share(v, buf, n)
  local id = IDS[v]
  if id then
    local p = num(id)
    buf[n + 1] = exthead(#p, 2)
    buf[n + 2] = p
    return nil, n + 2
  end
  id = NEXTID
  NEXTID = id + 1
  IDS[v] = id
  buf[n + 2] = num(id)
  return n + 1, n + 2
end

local function container(t, code, buf, n)
  n = n + 1
  if code > 0 then
    buf[n] = arrayhead(code)
    for i = 1, code do
      local v = rawget(t, i)
      local tv = type(v)
      if tv == "string" then                     -- the common cases inline
        local len = #v
        buf[n + 1] = len < 32 and FIXSTR[len] or strhead(len)
        buf[n + 2] = v
        n = n + 2
      elseif tv == "number" then
        n = n + 1
        buf[n] = num(v)
      else
        n = emit(v, buf, n)
      end
    end
  else
    buf[n] = maphead(-1 - code)
    for k, v in next, t do
      if type(k) == "string" then
        local len = #k
        buf[n + 1] = len < 32 and FIXSTR[len] or strhead(len)
        buf[n + 2] = k
        n = n + 2
      else
        n = emit(k, buf, n)
      end
      local tv = type(v)
      if tv == "string" then
        local len = #v
        buf[n + 1] = len < 32 and FIXSTR[len] or strhead(len)
        buf[n + 2] = v
        n = n + 2
      elseif tv == "number" then
        n = n + 1
        buf[n] = num(v)
      else
        n = emit(v, buf, n)
      end
    end
  end
  return n
end

local function func(f, buf, n)
  local wrap
  if SHARED and SHARED[f] then
    wrap, n = share(f, buf, n)
    if not wrap then return n end
  end
  local hdr = n + 1
  local bc = dump(f)
  buf[hdr + 1] = strhead(#FN)
  buf[hdr + 2] = FN
  buf[hdr + 3] = strhead(#bc)
  buf[hdr + 4] = bc
  local nups = getinfo(f, "u").nups
  buf[hdr + 5] = arrayhead(nups)
  n = hdr + 5
  for i = 1, nups do
    local _, u = getupvalue(f, i)
    if rawequal(u, G) then
      n = n + 1
      buf[n] = "\199\0\5"                        -- ext 5: the global table
    else
      n = emit(u, buf, n)
    end
  end
  close(buf, hdr, n, 3)
  if wrap then close(buf, wrap, n, 1) end
  return n
end

function emit(v, buf, n)
  local tv = type(v)
  if tv == "string" then
    buf[n + 1] = strhead(#v)
    buf[n + 2] = v
    return n + 2
  elseif tv == "number" then
    buf[n + 1] = num(v)
    return n + 1
  elseif tv == "boolean" then
    buf[n + 1] = v and "\195" or "\194"
    return n + 1
  elseif v == nil then
    buf[n + 1] = "\192"
    return n + 1
  end
  local names = NAMES
  local name = names and names[v]
  if name then
    buf[n + 1] = exthead(#name, 4)
    buf[n + 2] = name
    return n + 2
  end
  if tv == "function" then return func(v, buf, n) end
  -- a table (scan let nothing else through)
  local seen = SEEN
  local code = seen and seen[v] or TOPCODE
  if SHARED and SHARED[v] then
    local wrap
    wrap, n = share(v, buf, n)
    if not wrap then return n end
    n = container(v, code, buf, n)
    close(buf, wrap, n, 1)
    return n
  end
  return container(v, code, buf, n)
end

-- -- encoding: the one pass of plain values ----------------------------

-- Most values are plain: scalars and tables of them, no table met twice.
-- fast() checks and emits those in one pass, and gives nil at anything else
-- (a table met again, a function, a userdata, a table key, too deep, a
-- metatable when opts.ref is given): encode then starts over with the two
-- passes, which know what to do and where to say it is.  next() gives a
-- sequence's keys in order (1, 2, 3...: the array part comes first), so one
-- loop tells an array from a map; keys in another order, or a sequence
-- prefix then other keys, cost a second look at the scalars already written.
local fast

-- fast()'s buffer, kept between calls: growing a new table costs more than
-- the rest of a small encode.  fast() calls no code of the caller, so no
-- other encode can run while it fills the buffer.
local BUF = {}

local function nested(t, buf, n, d)             -- t: a table inside level d
  local seen = SEEN
  if not seen then seen = { [TOP] = true }; SEEN = seen end
  if seen[t] or (REF and getmeta(t) ~= nil) then return nil end
  seen[t] = true
  return fast(t, buf, n, d + 1)
end

-- Emits t[1..count] again, each after its key if `keyed`; nil at a value
-- that is no scalar (a table written twice would look shared).
local function again(t, count, buf, n, keyed)
  for i = 1, count do
    if keyed then
      n = n + 1
      buf[n] = num(i)
    end
    local v = rawget(t, i)
    local tv = type(v)
    if tv == "string" then
      buf[n + 1] = strhead(#v)
      buf[n + 2] = v
      n = n + 2
    elseif tv == "number" then
      n = n + 1
      buf[n] = num(v)
    elseif tv == "boolean" then
      n = n + 1
      buf[n] = v and "\195" or "\194"
    else
      return nil
    end
  end
  return n
end

function fast(t, buf, n, d)                     -- t: a table at level d
  if d > MAXDEPTH then return nil end
  local hdr = n + 1
  n = hdr
  local count = 0
  local array, seq, max = true, true, 0         -- array: the keys came as 1, 2...
  for k, v in next, t do
    count = count + 1
    if array and k ~= count then                -- a map from here on
      array, max = false, count - 1
      if max > 0 then                           -- write keys 1..max after all
        n = again(t, max, buf, hdr, true)
        if not n then return nil end
      end
    end
    if not array then
      local tk = type(k)
      if tk == "string" then
        local l = #k
        buf[n + 1] = l < 32 and FIXSTR[l] or strhead(l)
        buf[n + 2] = k
        n = n + 2
        seq = false
      elseif tk == "number" then
        n = n + 1
        buf[n] = num(k)
        if seq then                             -- still all keys in 1..max?
          if k < 1 or k % 1 ~= 0 then seq = false elseif k > max then max = k end
        end
      elseif tk == "boolean" then
        n = n + 1
        buf[n] = k and "\195" or "\194"
        seq = false
      else
        return nil
      end
    end
    local tv = type(v)
    if tv == "string" then
      local l = #v
      buf[n + 1] = l < 32 and FIXSTR[l] or strhead(l)
      buf[n + 2] = v
      n = n + 2
    elseif tv == "number" then
      n = n + 1
      local f = FIX[v]                          -- a fixint, but not 3.0 nor -0.0
      if f and (INTS and mtype(v) == "integer" or not INTS and v ~= 0) then
        buf[n] = f
      else
        buf[n] = num(v)
      end
    elseif tv == "table" then
      n = nested(v, buf, n, d)
      if not n then return nil end
    elseif tv == "boolean" then
      n = n + 1
      buf[n] = v and "\195" or "\194"
    else
      return nil
    end
  end
  if array then
    buf[hdr] = count == 0 and "\128" or (count < 16 and FIXARR[count] or arrayhead(count))
    return n
  end
  if seq and max == count then                  -- a sequence after all, out of order
    buf[hdr] = arrayhead(count)
    return again(t, count, buf, hdr, false)
  end
  buf[hdr] = count < 16 and FIXMAP[count] or maphead(count)
  return n
end

local function encode(v, opts)
  local tv = type(v)
  if opts == nil then
    if tv == "string" then
      local len = #v
      return (len < 32 and FIXSTR[len] or strhead(len)) .. v
    elseif tv == "number" then
      return num(v)
    elseif tv == "boolean" then
      return v and "\195" or "\194"
    elseif v == nil then
      return "\192"
    end
    REF, FN = nil, nil
  else
    if type(opts) ~= "table" then
      error("bad linda encode options: a table expected, got " .. type(opts), 0)
    end
    REF, FN = opts.ref, opts.engine
    if FN ~= nil and type(FN) ~= "string" then
      error("bad linda encode options: engine must be a string, got " .. type(FN), 0)
    end
  end
  local plain = tv == "table" and not (REF and getmeta(v) ~= nil)
  if plain then
    SEEN, TOP = nil, v
    local buf = BUF
    local n = fast(v, buf, 0, 1)
    if n then
      SEEN, TOP = nil, nil
      local s = concat(buf, "", 1, n)
      if n <= 256 then                          -- keep the slots, not the strings
        for i = 1, n do buf[i] = nil end
      else
        BUF = {}
      end
      return s
    end
    BUF = {}                                     -- not what fast() left in it
  end
  SEEN, SHARED, NAMES, TOP = nil, nil, nil, nil
  if plain then
    TOP = v
    local code = scan(v, 1)
    if SEEN then SEEN[v] = code else TOPCODE = code end
  elseif tv ~= "string" and tv ~= "number" and tv ~= "boolean" and tv ~= "nil" then
    SEEN = {}
    visit(v, tv, 0)
  end
  if SHARED then IDS, NEXTID = {}, 0 end
  local buf = {}
  local n = emit(v, buf, 0)
  clear()
  return concat(buf, "", 1, n)
end

-- -- decoding -------------------------------------------------------------

local DS, DL        -- the message and its length
local REFS, NREFS   -- id + 1 -> table or function; how many ids so far
local DOPTS         -- decode's opts

local function raise(msg)
  DS, REFS, DOPTS = nil, nil, nil
  error(msg, 0)
end
local function bad(msg) raise("malformed linda message: " .. msg) end
local function truncated() bad("truncated") end
local function deep() bad("nested deeper than " .. MAXDEPTH .. " levels") end

local function register(id, v)
  local refs = REFS
  if not refs then refs = {}; REFS = refs end
  refs[id + 1] = v
end

local dec, decc

-- Bytes [i, i + len) as a string, and the position after them.
local function str(i, len)
  local j = i + len - 1
  if j > DL then truncated() end
  return sub(DS, i, j), j + 1
end

-- Reads a big-endian unsigned integer of k bytes at i.
local function uint(i, k)
  if i + k - 1 > DL then truncated() end
  local a, b, c, d = byte(DS, i, i + k - 1)
  if k == 1 then return a end
  if k == 2 then return a * 256 + b end
  return ((a * 256 + b) * 256 + c) * 256 + d
end

-- NEWARRAY[n]() is a new table with room for n items: a constructor
-- {nil, nil...} sizes its array part, which Lua code cannot do otherwise,
-- and filling an empty table grows it log2(n) times.
local NEWARRAY = {}
do
  local compile = loadstring or load
  for n = 1, 16 do NEWARRAY[n] = compile("return {" .. ("nil,"):rep(n) .. "}") end
end

-- The loops below read fixints and short strings themselves (most keys and
-- many values), and hand the rest to decc with the byte they read.
local function array(n, i, d, id)    -- d: this array's level
  if d > MAXDEPTH then deep() end
  if n > DL - i + 1 then truncated() end   -- each element takes a byte at least
  local new = NEWARRAY[n]
  local t = new and new() or {}
  if id then register(id, t) end
  for k = 1, n do
    local c, v = byte(DS, i), nil
    if c and c < 0x80 then
      v, i = c, i + 1
    elseif c and c >= 0xa0 and c < 0xc0 then
      local j = i + c - 0xa0
      if j > DL then truncated() end
      v, i = sub(DS, i + 1, j), j + 1
    else
      v, i = decc(c, i, d)
    end
    t[k] = v
  end
  return t, i
end

local function map(n, i, d, id)
  if d > MAXDEPTH then deep() end
  if n + n > DL - i + 1 then truncated() end
  local t = {}
  if id then register(id, t) end
  for _ = 1, n do
    local c, k, v = byte(DS, i), nil, nil
    if c and c >= 0xa0 and c < 0xc0 then
      local j = i + c - 0xa0
      if j > DL then truncated() end
      k, i = sub(DS, i + 1, j), j + 1
    elseif c and c < 0x80 then
      k, i = c, i + 1
    else
      k, i = decc(c, i, d)
      local tk = type(k)
      if tk ~= "string" then
        if tk == "number" then
          if k ~= k then bad("a NaN map key") end
        elseif k == nil then
          bad("a nil map key")
        elseif tk ~= "boolean" then
          bad(kind(k) .. " as a map key")
        end
      end
    end
    c = byte(DS, i)
    if c and c < 0x80 then
      v, i = c, i + 1
    elseif c and c >= 0xa0 and c < 0xc0 then
      local j = i + c - 0xa0
      if j > DL then truncated() end
      v, i = sub(DS, i + 1, j), j + 1
    else
      v, i = decc(c, i, d)
    end
    t[k] = v
  end
  return t, i
end

-- Reads an ext header whose first byte c is at i: its type, length and the
-- position of its payload; nil if c starts no ext.
local FIXEXTLEN = { [0xd4] = 1, [0xd5] = 2, [0xd6] = 4, [0xd7] = 8, [0xd8] = 16 }
local function extat(c, i)
  local len, j = FIXEXTLEN[c], nil
  if len then
    j = i + 1
  elseif c == 0xc7 then
    len, j = uint(i + 1, 1), i + 2
  elseif c == 0xc8 then
    len, j = uint(i + 1, 2), i + 3
  elseif c == 0xc9 then
    len, j = uint(i + 1, 4), i + 5
  else
    return nil
  end
  local typ = byte(DS, j)
  if typ == nil then truncated() end
  if typ >= 128 then typ = typ - 256 end
  if j + len > DL then truncated() end
  return typ, len, j + 1
end

-- A Lua function (ext 3) whose payload is [i, e), at level d.
local function func_(i, e, d, id)
  if d > MAXDEPTH then deep() end
  local tag
  tag, i = dec(i, d)
  if type(tag) ~= "string" then bad("a function without its engine tag") end
  local mine = DOPTS and DOPTS.engine
  if mine == nil then
    raise("cannot receive a function from " .. tag .. ": decode was not given opts.engine")
  end
  if tag ~= mine then
    raise("function from " .. tag .. " cannot be loaded on " .. tostring(mine))
  end
  local bc
  bc, i = dec(i, d)
  if type(bc) ~= "string" or byte(bc, 1) ~= 27 then bad("a function without bytecode") end
  local f, err = loadbin(bc)
  if not f then bad("a function that does not load (" .. tostring(err) .. ")") end
  if id then register(id, f) end
  local c, n = byte(DS, i), nil
  if c == nil then truncated() end
  if c >= 0x90 and c < 0xa0 then n, i = c - 0x90, i + 1
  elseif c == 0xdc then n, i = uint(i + 1, 2), i + 3
  else bad("a function without its upvalues") end
  if n ~= getinfo(f, "u").nups then bad("a function with the wrong number of upvalues") end
  for k = 1, n do
    local u
    if sub(DS, i, i + 2) == "\199\0\5" then
      u, i = G, i + 3
    else
      u, i = dec(i, d)
    end
    setupvalue(f, k, u)
  end
  if i ~= e then bad("a function whose length does not match its content") end
  return f, e
end

-- What ext 1 wraps, at j: a table (array or map) or a function, made and
-- registered as `id` before its content is read (so cycles work).
local function wrapped(j, d, id)
  local c = byte(DS, j)
  if c == nil then truncated() end
  if c >= 0x80 and c < 0x90 then return map(c - 0x80, j + 1, d, id) end
  if c >= 0x90 and c < 0xa0 then return array(c - 0x90, j + 1, d, id) end
  if c == 0xdc then return array(uint(j + 1, 2), j + 3, d, id) end
  if c == 0xdd then return array(uint(j + 1, 4), j + 5, d, id) end
  if c == 0xde then return map(uint(j + 1, 2), j + 3, d, id) end
  if c == 0xdf then return map(uint(j + 1, 4), j + 5, d, id) end
  local typ, len, k = extat(c, j)
  if typ == 3 then return func_(k, k + len, d, id) end
  bad("ext 1 wraps no table")
end

-- An ext of type typ whose payload is [i, i + len), inside level d.
local function ext(typ, len, i, d)
  local e = i + len
  if typ == 2 then
    local id, j = dec(i, d)
    if j ~= e then bad("a back-reference whose length does not match its content") end
    local v = type(id) == "number" and REFS and REFS[id + 1]
    if not v then bad("a back-reference to an unknown id") end
    return v, e
  elseif typ == 1 then
    local id, j = dec(i, d)
    if id ~= NREFS then bad("a shared table with an id out of order") end
    NREFS = NREFS + 1
    local v
    v, j = wrapped(j, d + 1, id)
    if j ~= e then bad("a shared table whose length does not match its content") end
    return v, e
  elseif typ == 3 then
    return func_(i, e, d + 1, nil)
  elseif typ == 4 then
    local name = sub(DS, i, e - 1)
    local unref = DOPTS and DOPTS.unref
    if unref == nil then
      raise("cannot receive a linda reference (" .. name .. "): decode was not given opts.unref")
    end
    local ds, dl, refs, nrefs, dopts = DS, DL, REFS, NREFS, DOPTS
    local v = unref(name)
    DS, DL, REFS, NREFS, DOPTS = ds, dl, refs, nrefs, dopts
    return v, e
  elseif typ == 5 then
    bad("the global table marker outside a function")
  end
  bad("unknown ext type " .. typ)
end

-- Decoders of the bytes 0xc0 ... 0xdf, each (i, d) -> value, next i.
local H = {}
H[0xc0] = function(i) return nil, i + 1 end
H[0xc1] = function(i) bad(format("byte 0xc1 (never used) at offset %d", i - 1)) end
H[0xc2] = function(i) return false, i + 1 end
H[0xc3] = function(i) return true, i + 1 end
H[0xc4] = function(i) return str(i + 2, uint(i + 1, 1)) end
H[0xc5] = function(i) return str(i + 3, uint(i + 1, 2)) end
H[0xc6] = function(i) return str(i + 5, uint(i + 1, 4)) end
H[0xd9], H[0xda], H[0xdb] = H[0xc4], H[0xc5], H[0xc6]
local function exth(i, d)
  local typ, len, j = extat(byte(DS, i), i)
  return ext(typ, len, j, d)
end
for c = 0xc7, 0xc9 do H[c] = exth end
for c = 0xd4, 0xd8 do H[c] = exth end
H[0xcc] = function(i) return uint(i + 1, 1), i + 2 end
H[0xcd] = function(i) return uint(i + 1, 2), i + 3 end
H[0xce] = function(i) return uint(i + 1, 4), i + 5 end
H[0xd0] = function(i)
  local x = uint(i + 1, 1)
  return x >= 128 and x - 256 or x, i + 2
end
H[0xd1] = function(i)
  local x = uint(i + 1, 2)
  return x >= 32768 and x - 65536 or x, i + 3
end
H[0xd2] = function(i)
  local x = uint(i + 1, 4)
  return x >= 2147483648 and x - TWO32 or x, i + 5
end
if unpack then
  H[0xcf] = function(i)
    if i + 8 > DL then truncated() end
    local x = unpack(">i8", DS, i + 1)
    if x < 0 then                                 -- >= 2^63: beyond integers
      local hi, lo = unpack(">I4I4", DS, i + 1)
      x = hi * 4294967296.0 + lo
    end
    return x, i + 9
  end
  H[0xd3] = function(i)
    if i + 8 > DL then truncated() end
    return (unpack(">i8", DS, i + 1)), i + 9
  end
  H[0xca] = function(i)
    if i + 4 > DL then truncated() end
    return (unpack(">f", DS, i + 1)), i + 5
  end
  H[0xcb] = function(i)
    if i + 8 > DL then truncated() end
    return (unpack(">d", DS, i + 1)), i + 9
  end
else
  local NAN = 0 / 0
  H[0xcf] = function(i) return uint(i + 1, 4) * TWO32 + uint(i + 5, 4), i + 9 end
  H[0xd3] = function(i)
    local hi = uint(i + 1, 4)
    if hi >= 2147483648 then hi = hi - TWO32 end
    return hi * TWO32 + uint(i + 5, 4), i + 9
  end
  H[0xca] = function(i)
    local x = uint(i + 1, 4)
    local sign = x >= 2147483648
    if sign then x = x - 2147483648 end
    local E, f = floor(x / 8388608), x % 8388608
    if E == 255 then x = f == 0 and huge or NAN
    elseif E == 0 then x = ldexp(f, -149)
    else x = ldexp(f + 8388608, E - 150) end
    return sign and -x or x, i + 5
  end
  H[0xcb] = function(i)
    if i + 8 > DL then truncated() end
    local b1, b2, b3, b4, b5, b6, b7, b8 = byte(DS, i + 1, i + 8)
    local E = (b1 % 128) * 16 + floor(b2 / 16)
    local f = ((((((b2 % 16) * 256 + b3) * 256 + b4) * 256 + b5) * 256 + b6) * 256 + b7)
              * 256 + b8
    local x
    if E == 2047 then x = f == 0 and huge or NAN
    elseif E == 0 then x = ldexp(f, -1074)
    else x = ldexp(f + TWO52, E - 1075) end
    if b1 >= 128 then x = -x end
    return x, i + 9
  end
end
H[0xdc] = function(i, d) return array(uint(i + 1, 2), i + 3, d + 1) end
H[0xdd] = function(i, d) return array(uint(i + 1, 4), i + 5, d + 1) end
H[0xde] = function(i, d) return map(uint(i + 1, 2), i + 3, d + 1) end
H[0xdf] = function(i, d) return map(uint(i + 1, 4), i + 5, d + 1) end

-- The value at i, whose first byte is c (nil past the end), inside level d
-- (the top value is inside level 0).
function decc(c, i, d)
  if c == nil then truncated() end
  if c < 0x80 then return c, i + 1 end
  if c >= 0xe0 then return c - 256, i + 1 end
  if c >= 0xa0 then
    if c < 0xc0 then
      local j = i + c - 0xa0
      if j > DL then truncated() end
      return sub(DS, i + 1, j), j + 1
    end
    return H[c](i, d)
  end
  if c < 0x90 then return map(c - 0x80, i + 1, d + 1) end
  return array(c - 0x90, i + 1, d + 1)
end

function dec(i, d) return decc(byte(DS, i), i, d) end

local function decode(s, opts)
  if type(s) ~= "string" then
    error("malformed linda message: a string expected, got " .. type(s), 0)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("bad linda decode options: a table expected, got " .. type(opts), 0)
  end
  DS, DL, REFS, NREFS, DOPTS = s, #s, nil, 0, opts
  local v, i = dec(1, 0)
  if i <= DL then
    local extra = DL - i + 1
    bad(extra == 1 and "1 byte after the value" or extra .. " bytes after the value")
  end
  DS, REFS, DOPTS = nil, nil, nil
  return v
end

return { encode = encode, decode = decode, engine = ENGINE, maxdepth = MAXDEPTH }
