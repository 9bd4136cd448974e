-- The file methods of ipc.shm, ipc.mmap and ipc.strfile handles: the one
-- Lua implementation of LuaIPC's memfile.c, loaded by all three faces.
--
-- A handle is a userdata of its module's class (support.lua: S.class); its
-- state (the position `p`, the size `n`, the access flags) is a table `st`
-- in STATE, shared by the three classes, so a script can neither forge nor
-- corrupt it.  Argument numbers count `self`, as memfile.c's do.  The
-- bytes themselves are reached through three primitives: st.get(p, q)
-- gives bytes [p, q), st.line(p, q) the bytes from p through the first
-- "\n" before q, and st.put(p, s) stores s at p.  For shm and mmap they are
-- Python closures over the mapping (ipc/_memfile.py: lua_file), so a read
-- or a write costs one Lua->Python call and seek costs none; for strfile
-- they are Lua closures over the string.  Every check that can be done
-- here is done here, before any call, so the hot path needs no pcall.
local S = ...

local type, select, tonumber, setmetatable = type, select, tonumber, setmetatable
local sub, find, byte, concat = string.sub, string.find, string.byte, table.concat
local unpack = table.unpack or unpack
local tointeger = math.tointeger        -- 5.3+: keep positions integers
local mtype = math.type                 -- 5.3+
local TWO63 = 2^63

local MF = {}
local STATE = setmetatable({}, { __mode = "k" })
local CLOSED = "attempt to use closed in-memory file"
local PERM = "permission denied"

-- A closed handle, or something that is no handle at all.
local function badself(self)
  if STATE[self] then S.error(CLOSED) end
  S.typeerror(1, "in-memory file", self)
end

-- A byte count as LuaIPC accepts it (a non-negative integral number), as
-- an integer on 5.3+; nil if it is not one.
local function count(c)
  if tointeger then
    c = tointeger(c)
    if c == nil or c < 0 then return nil end
    return c
  end
  if c ~= c or c < 0 or c >= TWO63 or c % 1 ~= 0 then return nil end
  return c
end

-- Integer arguments (seek offset, truncate size) as luaL_checkinteger.
local function checkint(v, n)
  local x = type(v) == "number" and count(v >= 0 and v or -v)
  if x then return v >= 0 and x or -x end
  v = S.checkinteger(v, n)
  return tointeger and tointeger(v) or v
end

-- -- reading -------------------------------------------------------------

local function read_line(st, keep)
  local p, n = st.p, st.n
  if p >= n then return nil end
  local s = st.line(p, n)
  st.p = p + #s
  if not keep and byte(s, -1) == 10 then          -- "l": drop "\n" and a "\r"
    s = sub(s, 1, byte(s, -2) == 13 and -3 or -2)  -- right before it
  end
  return s
end

local function read_all(st)
  local p, n = st.p, st.n
  if p >= n then return "" end
  st.p = n
  return st.get(p, n)
end

-- Lua 5.4's read_number (liolib.c): skip white space, then take the longest
-- prefix that looks like a numeral (at most 200 characters), leave the
-- first character that does not fit unread, and convert what was taken.
-- On failure the characters taken stay consumed and the result is nil.
local MAXLEN = 200
local SPACE = "[^ \t\n\v\f\r]"
local function isdigit(c) return c and c >= 48 and c <= 57 end
local function isxdigit(c)
  return c and ((c >= 48 and c <= 57) or (c >= 97 and c <= 102) or (c >= 65 and c <= 70))
end

local function read_number(st)
  local p, n, get = st.p, st.n, st.get
  while true do                                    -- skip white space
    if p >= n then st.p = n; return nil end
    local q = p + 256
    if q > n then q = n end
    local chunk = get(p, q)
    local i = find(chunk, SPACE)
    if i then p = p + i - 1; break end
    p = q
  end
  local q = p + MAXLEN + 1
  if q > n then q = n end
  local s = get(p, q)
  local i, ok = 1, true                            -- s[i] is the look-ahead
  local c = byte(s, 1)
  local function nextc()
    if i > MAXLEN then ok = false; return false end  -- numeral too long
    i = i + 1
    c = byte(s, i)
    return true
  end
  local function test2(a, b)
    if c == a or c == b then return nextc() end
    return false
  end
  local function readdigits(hex)
    local k = 0
    while (hex and isxdigit(c) or (not hex and isdigit(c))) and nextc() do k = k + 1 end
    return k
  end
  local cnt, hex = 0, false
  test2(45, 43)                                    -- "-" "+"
  if test2(48, 48) then                            -- "0"
    if test2(120, 88) then hex = true else cnt = 1 end   -- "x" "X"
  end
  cnt = cnt + readdigits(hex)
  if test2(46, 46) then cnt = cnt + readdigits(hex) end  -- "."
  if cnt > 0 and (hex and test2(112, 80) or (not hex and test2(101, 69))) then
    test2(45, 43)
    readdigits(false)
  end
  st.p = p + i - 1
  if not ok then return nil end
  return tonumber(sub(s, 1, i - 1))
end

-- Bytes [p, p + c) (c >= 1, within the region).  Small sizes go through a
-- per-size Python callable made once (struct.unpack_from bound to the
-- mapping: no Python frame, one argument), larger ones through get.
local SMALL = 256
local function getn(st, p, c)
  local rd = st.rd
  if rd and c <= SMALL then
    local g = rd[c]
    if not g then g = st.getter(c); rd[c] = g end
    return g(p)
  end
  return st.get(p, p + c)
end

-- One format of read (argument k) or of lines (k = nil: reported without
-- a number, as LuaIPC's lines iterator does).
local function read1(st, f, k)
  if type(f) == "number" then
    local c = count(f)
    if c then
      local p, n = st.p, st.n
      if p >= n then return nil end
      if c == 0 then return "" end
      if c > n - p then c = n - p end
      st.p = p + c
      return getn(st, p, c)
    end
  elseif type(f) == "string" then
    local b = byte(f, 1)
    if b == 42 then b = byte(f, 2) end             -- the "*" is optional
    if b == 108 then return read_line(st, false)   -- "l"
    elseif b == 76 then return read_line(st, true) -- "L"
    elseif b == 97 then return read_all(st)        -- "a"
    elseif b == 110 then return read_number(st)    -- "n"
    end
  end
  if k then S.argerror(k, "invalid format") end
  S.error("invalid format")
end

local M = {}

function M.read(self, ...)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  if not st.r then return nil, PERM end
  local nf = select("#", ...)
  if nf == 1 then
    local f = ...
    -- The hot path, read(n): one C call to check n, one call to Python.
    if mtype and mtype(f) == "integer" and f > 0 then
      local p, n = st.p, st.n
      if p >= n then return nil end
      if f > n - p then f = n - p end
      st.p = p + f
      return getn(st, p, f)
    end
    return (read1(st, f, 2))                       -- no tail call: support.lua
  elseif nf == 0 then
    return read_line(st, false)
  end
  local out = {}
  for k = 1, nf do
    local v = read1(st, (select(k, ...)), k + 1)
    out[k] = v
    if v == nil then return unpack(out, 1, k) end
  end
  return unpack(out, 1, nf)
end

function M.lines(self, ...)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  if not st.r then S.error(PERM) end
  local nf = select("#", ...)
  local fmts = { ... }
  if nf == 0 then fmts, nf = { "l" }, 1 end
  return function()
    local st = STATE[self]
    if st.closed then S.error(CLOSED) end
    local out = {}
    for k = 1, nf do
      local v = read1(st, fmts[k], nil)
      out[k] = v
      if v == nil then return unpack(out, 1, k) end
    end
    return unpack(out, 1, nf)
  end
end

-- -- writing -------------------------------------------------------------

-- Store s (len >= 1 bytes) at p, through a per-size callable for small
-- sizes (struct.pack_into bound to the mapping), else through put.
local function putn(st, p, s, len)
  local wr = st.wr
  if wr and len <= SMALL then
    local w = wr[len]
    if not w then w = st.putter(len); wr[len] = w end
    return w(p, s)
  end
  return st.put(p, s)
end

local function tostr(v, k)
  if type(v) == "string" then return v end
  return (S.checkstring(v, k))                     -- numbers as lua_tolstring
end

function M.write(self, ...)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  if not st.w then return nil, PERM end
  local nf = select("#", ...)
  local s
  if nf == 1 then
    s = ...
    if type(s) ~= "string" then s = tostr(s, 2) end
  elseif nf == 0 then
    return self
  else                                             -- check all, then write
    local parts = { ... }
    for k = 1, nf do parts[k] = tostr(parts[k], k + 1) end
    s = concat(parts, "", 1, nf)
  end
  local p, n = st.p, st.n
  local len = #s
  if len > n - p then                              -- write what fits, as
    len = n - p                                    -- LuaIPC, and say so
    if len > 0 then putn(st, p, sub(s, 1, len), len) end
    st.p = n
    return nil, "not enough space"
  end
  if len > 0 then putn(st, p, s, len) end
  st.p = p + len
  return self
end

function M.flush(self)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  if not st.w then return nil, PERM end
  if st.flush then return S.call(st.flush) end
  return true
end

local WHENCE = { set = true, cur = true, ["end"] = true }

function M.seek(self, whence, offset)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  if whence == nil then whence = "cur"
  elseif not WHENCE[whence] then whence = S.checkoption(whence, 2, "cur", WHENCE) end
  if offset == nil then offset = 0
  elseif mtype then
    if mtype(offset) ~= "integer" then
      offset = tointeger(offset) or checkint(offset, 3)
    end
  elseif type(offset) ~= "number" or offset % 1 ~= 0 then
    offset = checkint(offset, 3)
  end
  local n = st.n
  local p
  if whence == "set" then p = offset
  elseif whence == "cur" then p = st.p + offset
  else p = n + offset end
  if p < 0 or p > n then return nil, "invalid offset" end
  st.p = p
  return p
end

local VBUF = { no = true, full = true, line = true }

function M.setvbuf(self, ...)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  local mode, size = ...
  if mode == nil then S.typeerror(2, "string", nil, select("#", ...) < 1) end
  S.checkoption(mode, 2, nil, VBUF)
  S.optinteger(size, 3, 0)
  return true                                      -- memory has no buffer
end

-- -- the region ------------------------------------------------------------

function M.size(self)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  return st.n
end

function M.addr(self)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  return st.addr()
end

function M.truncate(self, size)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  size = checkint(size, 2)
  if size < 0 or size > st.n then return nil, "new size too large" end
  st.n = size
  if st.p > size then st.p = size end
  return true
end

function M.close(self)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  st.closed = true
  local close = st.close
  -- Drop the Python side at once: its finalizer frees the memory even if
  -- the close function below is never reached.
  st.get, st.line, st.put, st.flush, st.addr, st.close, st.obj = nil
  st.getter, st.rd, st.putter, st.wr = nil
  if close then
    local ok, msg, code = S.call(close)
    if ok == nil and msg ~= nil then return nil, msg, code end
  end
  return true
end

-- The class of one module's handles (`typename`: "ipc.shm"...): its
-- constructor, which MF.open and MF.string take.  A to-be-closed variable
-- (5.4+) after an explicit close is no error, as for Lua's own files.
function MF.class(typename)
  return (S.class(typename, M, nil, STATE))
end

-- A handle from the values a Python `open` function returns (the fields of
-- ipc/_memfile.py's LuaFile, in its order): the object that owns the
-- memory, get, line, put (nil if not readable / writable), the size, the
-- close, flush and addr functions, getter and putter.  On an OS failure the
-- Python function has given nil, message, errno instead.
local function build(new, obj, get, line, put, n, close, flush, addr, getter, putter)
  if obj == nil then return nil, get, line end
  return new { p = 0, n = n, r = get ~= nil, w = put ~= nil, get = get,
               line = line, put = put, close = close, flush = flush,
               addr = addr, obj = obj, closed = false,
               getter = getter, rd = getter and {}, putter = putter, wr = putter and {} }
end

-- LuaJIT: reach the mapping through the FFI instead of Python (same bytes,
-- same checks above, no Lua->Python call per read or write).  The mapping
-- lives as long as st.obj, and every method checks st.closed first.
local ffi = jit and package.loaded.ffi
if ffi == nil and jit then
  local ok, mod = pcall(require, "ffi")
  ffi = ok and mod or nil
end
local memchr
if ffi then
  pcall(ffi.cdef, "void *memchr(const void *s, int c, size_t n);")
  local ok, f = pcall(function() return ffi.C.memchr end)
  memchr = ok and f or nil
  if not memchr then ffi = nil end
end

local function use_ffi(st)
  local base = ffi.cast("uint8_t *", st.addr())
  local fstring, fcopy, cast = ffi.string, ffi.copy, ffi.cast
  if st.r then
    st.get = function(p, q) return fstring(base + p, q - p) end
    st.line = function(p, q)
      local e = memchr(base + p, 10, q - p)
      if e == nil then return fstring(base + p, q - p) end
      return fstring(base + p, cast("uint8_t *", e) - (base + p) + 1)
    end
  end
  if st.w then st.put = function(p, s) fcopy(base + p, s, #s) end end
  st.getter, st.rd, st.putter, st.wr = nil
end

function MF.open(new, pyopen, ...)
  local h, msg, code = build(new, S.call(pyopen, ...))
  if h and ffi then use_ffi(STATE[h]) end
  return h, msg, code
end

-- A read-only handle over a Lua string, without any Python call; `addr`
-- is the function that gives the address of the bytes.
function MF.string(new, s, addr)
  local function get(p, q) return sub(s, p + 1, q) end
  local function line(p, q)
    local i = find(s, "\n", p + 1, true)
    if not i or i > q then i = q end
    return sub(s, p + 1, i)
  end
  return build(new, s, get, line, nil, #s, nil, nil, function() return addr(s) end)
end

return MF
