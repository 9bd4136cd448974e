-- ipc.linda: Lanes' lindas between processes (see ipc/linda/__init__.py).
--
--   linda.new([name | opts])      ==> l   open `name`, or create it; no name:
--                                         an anonymous linda (opts.name,
--                                         opts.capacity in bytes)
--   linda.open(name)              ==> l   an existing one
--   linda.create([name [, opts]]) ==> l   a new one (nil, msg, errno if taken)
--   l:send([timeout,] key, v...)  ==> true / nil, "timeout"
--   l:receive([timeout,] key...)  ==> key, v / nil, "timeout"
--   l:receive_batched([timeout,] key, min [, max]) ==> key, v... / nil, "timeout"
--   l:set(key [, v...])           ==> room, status   (Lanes' results)
--   l:get(key [, n])              ==> v...           (up to n, default 1)
--   l:limit(key [, n | "unlimited"]) ==> room, status / limit, status
--   l:count([key...])             ==> n / {key = n}
--   l:close()                     ==> true
--   l:name()                      ==> the name (others open it by this)
--
-- As in Lanes, the timeout is the first argument when it is a number or
-- nil, so a number key needs a timeout (nil) before it.  The timeout rule
-- is ipc.sem's.  Keys and values are encoded here, in Lua (wire.lua); only
-- their bytes cross into Python.  Inside an ipc.loop task, a send or
-- receive that must wait suspends only its task (S.suspend).
local S, core, part = ...
local wire = part("wire")
local encode, decode = wire.encode, wire.decode
local type, select, pcall, error, tostring = type, select, pcall, error, tostring
local format = string.format
local floor = math.floor
local mtype = math.type
local toint = math.tointeger
local unpack = table.unpack or unpack

local function pack(...) return { n = select("#", ...), ... } end

local py_open, py_send, py_receive, py_set, py_get, py_limit, py_count, py_close =
  core.open, core.send, core.receive, core.set, core.get, core.limit, core.count, core.close
local FOREVER = core.FOREVER
local MIN_CAPACITY = core.MIN_CAPACITY

local M = {}
local methods = {}
local new, STATE

local function check(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.linda", self) end
  if st.closed then S.error("attempt to use a closed linda") end
  return st
end

-- A key's bytes: what ipc/linda/__init__.py's _key makes of the same value
-- (an integral float is its integer on 5.3+, as t[1.0] is t[1]).
local function key(k, n)
  local tk = type(k)
  if tk == "string" or tk == "boolean" then return encode(k) end
  if tk == "number" then
    if k ~= k then S.argerror(n, "key is NaN") end
    if toint and mtype(k) == "float" and floor(k) == k then k = toint(k) or k end
    return encode(k)
  end
  S.argerror(n, format("key must be a string, a number or a boolean, not %s",
                       tk == "nil" and "nil" or tk))
end

-- Values encoded one by one; the error of one that cannot cross names it.
local function values(n0, ...)
  local out, n = {}, select("#", ...)
  for i = 1, n do
    local ok, blob = pcall(encode, (select(i, ...)))
    if not ok then S.argerror(n0 + i - 1, tostring(blob)) end
    out[i] = blob
  end
  return out, n
end

-- The optional leading timeout (Lanes: a number, or nil, comes first).
local function split(n, ...)
  local t = ...
  if t == nil or type(t) == "number" then
    if select("#", ...) == 0 then return nil, 1 end
    return S.timeout(t, n, FOREVER), 2
  end
  return nil, 1
end

local function checkcapacity(c, n)
  c = S.optinteger(c, n)
  if c and c < MIN_CAPACITY then
    S.argerror(n, format("capacity must be at least %d bytes", MIN_CAPACITY))
  end
  return c
end

local function opened(h, name, capacity)
  if not h then return nil, name, capacity end            -- nil, message, errno
  return new { h = h, name = name, capacity = capacity, closed = false }
end

function M.new(opts)
  local name, capacity
  if type(opts) == "table" then
    name = opts.name
    if name ~= nil then name = S.checkstring(name, 1) end
    capacity = checkcapacity(opts.capacity, 1)
  elseif opts ~= nil then
    name = S.checkstring(opts, 1)
  end
  return opened(S.call(py_open, name, name and "new" or "create", capacity))
end

function M.open(...)
  local name = ...
  name = S.checkstring(name, 1, select("#", ...) < 1)
  return opened(S.call(py_open, name, "open", nil))
end

function M.create(name, opts)
  if name ~= nil then name = S.checkstring(name, 1) end
  local capacity
  if opts ~= nil then
    if type(opts) ~= "table" then S.typeerror(2, "table", opts) end
    capacity = checkcapacity(opts.capacity, 2)
  end
  return opened(S.call(py_open, name, "create", capacity))
end

function methods.send(self, ...)
  local st = check(self)
  local t, i = split(2, ...)
  local k = select(i, ...)
  if select("#", ...) < i then S.argerror(i + 1, "key expected") end
  k = key(k, i + 1)
  if select("#", ...) <= i then S.argerror(i + 2, "send needs a value after the key") end
  local vs, n = values(i + 2, select(i + 1, ...))
  local h, ok, msg, code = st.h, nil, nil, nil
  local sus = t ~= 0 and S.suspend                   -- set by ipc.loop (its face)
  local handled = false
  if sus then
    handled, ok, msg, code = sus("linda", h, t,
                                 function() return S.call(py_send, h, 0, k, unpack(vs, 1, n)) end,
                                 true, n, k)
  end
  if not handled then ok, msg, code = S.call(py_send, h, t, k, unpack(vs, 1, n)) end
  if ok then return true end
  if ok == false then return nil, "timeout" end
  return nil, msg, code
end

local function received(k, ...)
  if k == false then return nil, "timeout" end
  if k == nil then return nil, ... end                    -- nil, message, errno
  local n = select("#", ...)
  if n == 1 then return decode(k), decode((...)) end
  local out = {}
  for i = 1, n do out[i] = decode((select(i, ...))) end
  return decode(k), unpack(out, 1, n)
end

-- py_receive(h, t, least, most, keys...), or inside a loop task, the same
-- tried without waiting and waited for by the loop (ipc/loop/face.lua).
local function receive(h, t, least, most, ...)
  local sus = t ~= 0 and S.suspend                   -- set by ipc.loop (its face)
  if sus then
    local keys = pack(...)
    local function try() return S.call(py_receive, h, 0, least, most, unpack(keys, 1, keys.n)) end
    local r = pack(sus("linda", h, t, try, false, least, ...))
    if r[1] then return unpack(r, 2, r.n) end
  end
  return S.call(py_receive, h, t, least, most, ...)
end

function methods.receive(self, ...)
  local st = check(self)
  local t, i = split(2, ...)
  local n = select("#", ...)
  if n < i then S.argerror(i + 1, "key expected") end
  if n == i then
    return received(receive(st.h, t, 1, 1, key((select(i, ...)), i + 1)))
  end
  local keys = {}
  for j = i, n do keys[#keys + 1] = key((select(j, ...)), j + 1) end
  return received(receive(st.h, t, 1, 1, unpack(keys)))
end

function methods.receive_batched(self, ...)
  local st = check(self)
  local t, i = split(2, ...)
  local k, least, most = select(i, ...)
  k = key(k, i + 1)
  least = S.checkinteger(least, i + 2)
  most = S.optinteger(most, i + 3, least)
  if least < 1 or most < least then
    S.argerror(i + 2, format("need 1 <= min <= max, not %s and %s", least, most))
  end
  return received(receive(st.h, t, toint and toint(least) or least,
                          toint and toint(most) or most, k))
end

function methods.set(self, k, ...)
  local st = check(self)
  k = key(k, 2)
  local vs, n = values(3, ...)
  return S.call(py_set, st.h, k, unpack(vs, 1, n))
end

local function decoded(first, ...)
  if first == nil and select("#", ...) > 0 then return nil, ... end  -- an error
  local n = select("#", ...) + (first == nil and 0 or 1)
  if n == 0 then return end
  local out = { first, ... }
  for i = 1, n do out[i] = decode(out[i]) end
  return unpack(out, 1, n)
end

function methods.get(self, k, n)
  local st = check(self)
  k = key(k, 2)
  n = S.optinteger(n, 3, 1)
  if n < 1 then S.argerror(3, "count must be positive") end
  return decoded(S.call(py_get, st.h, k, toint and toint(n) or n))
end

function methods.limit(self, k, ...)
  local st = check(self)
  k = key(k, 2)
  if select("#", ...) == 0 then return S.call(py_limit, st.h, k, nil, true) end
  local n = ...
  if n == "unlimited" then return S.call(py_limit, st.h, k, nil, false) end
  n = S.checkinteger(n, 3)
  if n < 0 then S.argerror(3, "limit must be >= 0 or \"unlimited\"") end
  -- (the limit is stored as a msgpack integer: a float of 2^64 or more,
  -- which checkinteger lets through, used to fail there with Python's
  -- OverflowError; 5.3's own rule for such a float is this message)
  if n >= 2^63 then S.argerror(3, "number has no integer representation") end
  return S.call(py_limit, st.h, k, toint and toint(n) or n, false)
end

local function counted(...)
  local n = select("#", ...)
  if n == 0 then return nil end
  local t = {}
  for i = 1, n, 2 do
    local k, c = select(i, ...)
    t[decode(k)] = c
  end
  return t
end

function methods.count(self, ...)
  local st = check(self)
  local n = select("#", ...)
  local keys = {}
  for i = 1, n do keys[i] = key((select(i, ...)), i + 1) end
  if n == 1 then
    local _, c = S.call(py_count, st.h, keys[1])
    return c                                              -- nil: unknown key
  end
  return counted(S.call(py_count, st.h, unpack(keys, 1, n)))
end

function methods.name(self)
  return check(self).name
end

function methods.close(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.linda", self) end
  if not st.closed then
    local h = st.h
    st.closed, st.h = true, nil
    S.call(py_close, h)                 -- the creator's close removes the name
  end
  return true
end

new, STATE = S.class("ipc.linda", methods, function(st) return st.name end)

-- For the wire codec of lanes (a linda crosses as its name, ext 4): the
-- name of a linda handle, or nil for anything else; and a handle to the
-- linda of a name that came across.
function M._ref(x)
  local st = STATE[x]
  if st ~= nil and not st.closed then return st.name end
  return nil
end

function M._unref(name)
  local l, msg = M.open(name)
  if not l then error(format("linda %q is gone (%s)", name, tostring(msg)), 0) end
  return l
end

return S.module(M)
