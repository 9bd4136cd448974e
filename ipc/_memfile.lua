-- The file methods of ipc.shm, ipc.mmap and ipc.strfile handles: the one
-- Lua implementation of LuaIPC's memfile.c, loaded by all three faces.
--
-- A handle is a userdata of its module's class (support.lua: S.class); its
-- state (the position `p`, the size `n`, the access flags) is a table `st`
-- in STATE, shared by the three classes, so a script can neither forge nor
-- corrupt it.  Argument numbers count `self`, as memfile.c's do.  Every
-- check that can be done here is done here, before any call, so the hot
-- paths need no pcall.
--
-- Where the bytes come from:
-- * strfile: the Lua string itself (st.text); no Python but for addr().
-- * shm and mmap on PUC-Lua: the Python mmap (st.mem), by item access with
--   slices made once per (position, length) and kept (st.sl): `mem[slice]`
--   skips most of what lupa does for a call (no argument tuple), so a small
--   read or write is one cheap crossing; st.get(p, q), st.line(p, q) and
--   st.put(p, s) (Python closures, ipc/_memfile.py: lua_file) do the rest.
-- * shm and mmap on LuaJIT: the mapping itself, through the FFI (use_ffi).
-- * copies of BIG bytes or more on PUC-Lua 5.2+ (writes) and 5.4+ (reads):
--   the Lua string itself, through Lua's C API (ipc/lua/capi.py, which says
--   why that is safe), one copy each way instead of lupa's two.
--
-- Line reads (read "l"/"L", lines) read ahead: a block of up to BLOCK bytes
-- is taken at once (st.blk, which starts at region position st.b0) and the
-- lines are cut from it in Lua.  So a run of line reads sees each block as
-- it was when the block was taken, as a C FILE* sees a file another
-- process writes; any other call on the handle (a read of a count or of
-- "a"/"n", write, seek, truncate) drops the block, so what it does and
-- everything after it sees the memory itself.  strfile's block is its whole
-- text, for good; LuaJIT's FFI needs no block (memchr on the mapping).
local S, _, _, base = ...

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

-- -- big copies through the C API (see the top) -----------------------------

local BIG = 65536          -- from here on, fewer copies pay for the C calls (bench: shm)
local match, tostring = base.match, base.tostring
local REG = not jit and base.getregistry and base.getregistry()
local VNUM = 0             -- 504 for Lua 5.4; 0: no big copies here
if type(REG) == "table" and base.getmetatable then
  local major, minor = match(base.version, "^Lua (%d+)%.(%d+)$")
  VNUM = major and (tonumber(major) * 100 + tonumber(minor)) or 0
  if VNUM < 502 then VNUM = 0 end
end
local BOX = "ipc.memfile.box"   -- capi.BOX: kept false between copies, so
if VNUM > 0 then REG[BOX] = false end   -- that storing into it never allocates

-- The running thread's address as "0x...", for the C API (false: none
-- that can be trusted, when threads have a metatable on 5.2 and 5.3).
local running, fmt, getmt = base.running, base.format, base.getmetatable
local THREADS = setmetatable({}, { __mode = "k" })
local function here()
  local co = running()
  local a = THREADS[co]
  if a == nil then
    if VNUM >= 504 then a = fmt("%p", co)          -- no metamethod involved
    elseif getmt(co) == nil then a = match(tostring(co), "0x%x+") or false
    else a = false end
    THREADS[co] = a
  end
  return a
end

-- st.pull and st.push, asked for at a handle's first big copy (false: none).
local function copiers(st)
  local copier = st.copier
  st.copier, st.pull, st.push = nil, false, false
  if copier and VNUM > 0 then
    local pull, push = copier(VNUM)
    st.pull, st.push = pull or false, push or false
  end
end

-- Bytes [p, p + c) as one copy from the mapping, or nil (then lupa's path).
local function pull(st, p, c)
  if st.pull == nil then copiers(st) end
  local f = st.pull
  if f then
    local a = here()
    if a and f(a, p, c) then
      local s = REG[BOX]
      REG[BOX] = false
      return s
    end
  end
end

-- Store s at p as one copy into the mapping: true, or nil (lupa's path).
local function push(st, p, s)
  if st.push == nil then copiers(st) end
  local f = st.push
  if f then
    local a = here()
    if a then
      REG[BOX] = s
      local ok = f(a, p)
      REG[BOX] = false
      return ok
    end
  end
end

-- -- reading -------------------------------------------------------------

-- A line from position p (< n) as the Python side or the FFI finds it, for
-- a line the block cannot give: s, the line with its "\n" if it has one.
local function line_through(st, keep, p, n)
  local s = st.line(p, n)
  st.p = p + #s
  if not keep and byte(s, -1) == 10 then          -- "l": drop "\n" and a "\r"
    s = sub(s, 1, byte(s, -2) == 13 and -3 or -2)  -- right before it
  end
  return s
end

-- One line ("l": without its "\n", nor a "\r" right before it; "L", keep
-- = true: as it is), cut from the read-ahead block (see the top).
local BLOCK = 16384
local function read_line(st, keep)
  local p, n = st.p, st.n
  if p >= n then return nil end
  local blk, b0 = st.blk, st.b0
  if blk == nil or p < b0 or p >= b0 + #blk then
    if not st.ahead then return line_through(st, keep, p, n) end   -- the FFI
    local q = p + BLOCK
    if q > n then q = n end
    blk, b0 = st.get(p, q), p
    st.blk, st.b0, st.cr = blk, b0, nil
  end
  if st.cr == nil then st.cr = find(blk, "\r", 1, true) ~= nil end   -- see lines
  local a = p - b0 + 1                             -- p, as an index into blk
  local i = find(blk, "\n", a, true)
  if i == nil or b0 + i > n then                   -- no "\n" before the end:
    local e = b0 + #blk                            -- of the region, or of the
    if e < n then                                  -- block (a line longer than
      st.blk = st.text                             -- it: ask for all of it)
      return line_through(st, keep, p, n)
    end
    st.p = n                                       -- the last line, unended
    return sub(blk, a, n - b0)
  end
  st.p = b0 + i
  if keep then return sub(blk, a, i) end
  if i > a and byte(blk, i - 1) == 13 then return sub(blk, a, i - 2) end
  return sub(blk, a, i - 1)
end

local function read_all(st)
  local p, n = st.p, st.n
  if p >= n then return "" end
  st.p = n
  local t = st.text
  if t then return sub(t, p + 1, n) end
  if st.sl and n - p >= BIG then return pull(st, p, n - p) or st.get(p, n) end
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

-- The slice [p, p + c) of st.mem, for item access (see the top); nil the
-- first time (p, c) is asked for, which is only marked (false): a slice
-- costs a call to make, which pays where a position comes back (a small
-- record read again and again) and not where it does not (a stream of
-- writes, each further on).  A handle keeps at most MAXSLICES entries,
-- then starts over (the dropped slices go with their Lua wrappers).  Each
-- slice is a new Python object, handed to Lua once (ipc/lua/crossing.py).
local MAXSLICES = 512
local function slice(st, p, c)
  local sl = st.sl
  local byc = sl[c]
  if byc and byc[p] == false then
    local s = st.span(p, p + c)
    byc[p] = s
    return s
  end
  local k = st.nsl + 1
  if k > MAXSLICES then sl, k = {}, 1; st.sl = sl end
  st.nsl = k
  byc = sl[c]
  if byc == nil then byc = { n = c }; sl[c] = byc end   -- n: c as an integer
  byc[p] = false
  return nil
end

-- Bytes [p, p + c) (c >= 1, within the region).
local function getn(st, p, c)
  local sl = st.sl
  if sl then                                       -- PUC-Lua: shm, mmap
    if c >= BIG then return pull(st, p, c) or st.get(p, p + c) end
    local byc = sl[c]
    local s = byc and byc[p] or slice(st, p, c)
    if s then return st.mem[s] end
    return st.get(p, p + c)
  end
  local t = st.text                                -- strfile
  if t then return sub(t, p + 1, p + c) end
  return st.get(p, p + c)                          -- LuaJIT's FFI
end

-- One format of read (argument k) or of lines (k = nil: reported without
-- a number, as LuaIPC's lines iterator does).
local function read1(st, f, k)
  if type(f) == "number" then
    local c = count(f)
    if c then
      st.blk = st.text                             -- not a line: see the top
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
    elseif b == 97 then st.blk = st.text; return read_all(st)       -- "a"
    elseif b == 110 then st.blk = st.text; return read_number(st)   -- "n"
    end
  end
  if k then S.argerror(k, "invalid format") end
  S.error("invalid format")
end

local M = {}

function M.read(self, ...)
  local st = STATE[self]
  -- The hot path, read(c) at a position whose slice is kept (shm and mmap
  -- on PUC-Lua): one item access.  byc is nil for anything but a count
  -- that was read or written there before (a float c finds the integer's
  -- entry, whose n is the integer).  Closing sets st.r false.
  local c = ...
  local byc = st and st.r and st.sl and st.sl[c]
  if byc and select("#", ...) == 1 then
    local p = st.p
    local s = byc[p]
    c = byc.n
    if s and c <= st.n - p then
      st.p = p + c
      st.blk = nil                                 -- not a line: see the top
      return st.mem[s]
    end
  end
  if not st or st.closed then badself(self) end
  if not st.r then return nil, PERM end
  local nf = select("#", ...)
  if nf == 1 then
    local f = ...
    -- read(n) at a position not kept yet: one C call to check n (5.3+).
    if mtype and mtype(f) == "integer" and f > 0 then
      local p, n = st.p, st.n
      if p >= n then return nil end
      if f > n - p then f = n - p end
      st.p = p + f
      st.blk = st.text                             -- not a line: see the top
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

-- The formats of lines that mean one "l" line at a time, as no format does.
local LINE = { l = true, ["*l"] = true }

function M.lines(self, ...)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  if not st.r then S.error(PERM) end
  local nf = select("#", ...)
  if nf == 0 or (nf == 1 and LINE[...]) then
    -- The hot path: read_line(st, false) cut short for a line that ends in
    -- the block, when the block has no "\r" at all (st.cr false: so no
    -- line has one to drop).  A closed handle has no block.
    return function()
      local blk = st.blk
      if blk and st.cr == false then
        local b0, p = st.b0, st.p
        local a = p - b0 + 1
        local i = a > 0 and find(blk, "\n", a, true)
        if i and b0 + i <= st.n then
          st.p = b0 + i
          return sub(blk, a, i - 1)
        end
      end
      if st.closed then S.error(CLOSED) end
      return (read_line(st, false))
    end
  end
  local fmts = { ... }
  return function()
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

-- Store s (len >= 1 bytes) at p: by item access on the mapping where a
-- slice for [p, p + len) is kept (see slice), else through put.
local function putn(st, p, s, len)
  local sl = st.sl
  if sl then
    if len >= BIG and push(st, p, s) then return end
    local byc = sl[len]
    local sp = byc and byc[p] or slice(st, p, len)
    if sp then st.mem[sp] = s; return end
  end
  return st.put(p, s)
end

local function tostr(v, k)
  if type(v) == "string" then return v end
  return (S.checkstring(v, k))                     -- numbers as lua_tolstring
end

function M.write(self, ...)
  local st = STATE[self]
  -- The hot path, write(s) that fits, at a position whose slice is kept
  -- (see read).  Closing sets st.w false.
  local s = ...
  local byc = type(s) == "string" and st and st.w and st.sl and st.sl[#s]
  if byc and select("#", ...) == 1 then
    local p = st.p
    local sp = byc[p]
    local len = #s
    if sp and len <= st.n - p then
      st.mem[sp] = s
      st.p = p + len
      st.blk = nil                                 -- not a line: see the top
      return self
    end
  end
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
  st.blk = st.text                                 -- not a line: see the top
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
  -- The hot path, seek("set", at) to the position the last seek gave (a
  -- record read again and again): its checks are done.  A float equal to
  -- it is the same position, as an integer; st.at is 0/0 once closed.
  if whence == "set" and st and offset == st.at then
    offset = st.at
    st.p = offset
    st.blk = st.text                               -- not a line: see the top
    return offset
  end
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
  st.p, st.at = p, p
  st.blk = st.text                                 -- not a line: see the top
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
  if st.at > size then st.at = 0 end
  st.blk = st.text                                 -- not a line: see the top
  return true
end

function M.close(self)
  local st = STATE[self]
  if not st or st.closed then badself(self) end
  st.closed, st.r, st.w, st.at = true, false, false, 0 / 0   -- (the hot paths)
  local close = st.close
  -- Drop the Python side at once: its finalizer frees the memory even if
  -- the close function below is never reached.
  st.get, st.line, st.put, st.flush, st.addr, st.close, st.obj = nil
  st.mem, st.span, st.sl, st.blk, st.text = nil
  st.copier, st.pull, st.push = nil, false, false
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
-- close, flush and addr functions, the mapping and span (which makes its
-- slices).  On an OS failure the Python function has given nil, message,
-- errno instead.
local function build(new, obj, get, line, put, n, close, flush, addr, mem, span, copier)
  if obj == nil then return nil, get, line end
  return new { p = 0, n = n, r = get ~= nil, w = put ~= nil, get = get,
               line = line, put = put, close = close, flush = flush,
               addr = addr, obj = obj, closed = false, ahead = true, at = 0,
               mem = mem, span = span, sl = mem and {}, nsl = 0, copier = copier }
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
  st.mem, st.span, st.sl, st.ahead = nil               -- (memchr: no read-ahead)
end

function MF.open(new, pyopen, ...)
  local h, msg, code = build(new, S.call(pyopen, ...))
  if h and ffi then use_ffi(STATE[h]) end
  return h, msg, code
end

-- A read-only handle over a Lua string, without any Python call; `addr`
-- is the function that gives the address of the bytes.  Its read-ahead
-- block is the whole string, for good (st.text: see the top).
function MF.string(new, s, addr)
  local function get(p, q) return sub(s, p + 1, q) end
  local function line(p, q)
    local i = find(s, "\n", p + 1, true)
    if not i or i > q then i = q end
    return sub(s, p + 1, i)
  end
  local h = build(new, s, get, line, nil, #s, nil, nil, function() return addr(s) end)
  local st = STATE[h]
  st.text, st.blk, st.b0 = s, s, 0
  return h
end

return MF
