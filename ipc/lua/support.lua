-- Shared helpers of the Lua faces: argument checks with Lua's own messages,
-- and the translation of Python exceptions (see support.py).
--
-- The rule for every face and core (the why is in ipc/lua/crossing.py): Lua
-- receives each Python object at most once, because lupa 2.8 can answer a
-- second push of an object with another object's wrapper.  So the bridge
-- sends each runtime its own copies of the core functions, once, in a Lua
-- table (`core`), and faces bind them to locals at load; core functions
-- return plain values or objects they just made; an exception is never
-- raised into Lua twice (`anew` in support.py).  Lua never indexes a
-- Python object either: each lookup would push its answer again.
-- LUAIPC_CHECK_CROSSINGS=1 (on in the tests) checks all of this at run time.
--
-- Every face chunk gets this table as its first argument.  Errors are
-- reported at the first stack frame outside the faces, as luaL_error does
-- for a C function, so a message reads "script.lua:3: bad argument #1 to
-- 'create' (string expected, got nil)" whatever the face's own nesting.
local core = ...
local classify = core.classify
local pcall, error, type, select, tostring, tonumber, setmetatable =
      pcall, error, type, select, tostring, tonumber, setmetatable
local getinfo, sfind, format, huge = debug.getinfo, string.find, string.format, math.huge

local S = {}

-- "=[ipc.shm]" and the like are the chunk names of our own code.
local function ours(source) return sfind(source, "^=%[ipc[%.%]]") ~= nil end

-- The position luaL_where(L, 1) would give if the face were a C function.
local function where()
  local level = 3                                  -- 1 = where, 2 = S.error
  while true do
    local info = getinfo(level, "Sl")
    if not info then return "" end
    if info.what ~= "tail" and not ours(info.source) then
      if info.currentline and info.currentline > 0 then
        return info.short_src .. ":" .. info.currentline .. ": "
      end
      return ""                                    -- called from C (pcall...)
    end
    level = level + 1
  end
end

function S.error(msg) error(where() .. msg, 0) end

function S.argerror(n, fname, msg)
  S.error(format("bad argument #%d to '%s' (%s)", n, fname, msg))
end

-- Pass `absent` = true when the argument was not given at all.
function S.typeerror(n, fname, expected, value, absent)
  local got = absent and "no value" or type(value)
  S.argerror(n, fname, expected .. " expected, got " .. got)
end

function S.checkstring(v, n, fname, absent)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end     -- as lua_tolstring does
  S.typeerror(n, fname, "string", v, absent)
end

function S.checknumber(v, n, fname, absent)
  local x = tonumber(v)
  if x == nil or (type(v) ~= "number" and type(v) ~= "string") then
    S.typeerror(n, fname, "number", v, absent)
  end
  return x
end

-- Strict on every engine: 1.5, NaN and infinities are refused (5.3+ rule).
function S.checkinteger(v, n, fname, absent)
  local x = S.checknumber(v, n, fname, absent)
  if x ~= x or x == huge or x == -huge or x % 1 ~= 0 then
    S.argerror(n, fname, "number has no integer representation")
  end
  return x
end

function S.optinteger(v, n, fname, default)
  if v == nil then return default end
  return S.checkinteger(v, n, fname)
end

function S.optnumber(v, n, fname, default)
  if v == nil then return default end
  return S.checknumber(v, n, fname)
end

-- luaL_checkoption: `list` is a set {name = true}.
function S.checkoption(v, n, fname, default, list)
  if v == nil and default ~= nil then v = default end
  local s = S.checkstring(v, n, fname)
  if not list[s] then S.argerror(n, fname, format("invalid option '%s'", s)) end
  return s
end

-- Call a Python function; an OSError comes back as nil, message, errno and
-- any other exception (KeyboardInterrupt: "interrupted!") as a Lua error.
local function finish(ok, ...)
  if ok then return ... end
  local kind, msg, code = classify((...))
  if kind == "os" then return nil, msg, code end
  S.error(msg)
end

function S.wrap(f)
  return function(...) return finish(pcall(f, ...)) end
end

function S.call(f, ...) return finish(pcall(f, ...)) end

-- Handles are tables with a per-kind metatable: io.type(h) is nil, as in
-- LuaIPC.  Closing on collection needs no __gc: the handle's Python object
-- is released with the table, and its own finalizer frees the resource.
local addresses = setmetatable({}, { __mode = "k" })

-- `methods.close`, when present, also serves a to-be-closed variable (5.4+).
-- `state(h)`, if given, says what tostring(h) shows instead of the address
-- ("closed", "pid 42"); it is not a method, so scripts cannot call it.
function S.class(typename, methods, state)
  local mt = { __index = methods, __name = typename, __metatable = false }
  mt.__tostring = function(self)
    local shown = state and state(self)
    return format("%s (%s)", typename, shown or addresses[self] or "?")
  end
  if methods.close then mt.__close = function(self) methods.close(self) end end
  return mt
end

function S.new(mt, h)
  h = h or {}
  addresses[h] = (tostring(h):gsub("^table: ", ""))
  return setmetatable(h, mt)
end

return S
