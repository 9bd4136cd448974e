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
-- Every face chunk gets this table as its first argument.  Misuse is
-- reported as lauxlib reports it for a C function (see `S.argerror`), at the
-- first stack frame outside the faces, so a message reads "script.lua:3:
-- bad argument #1 to 'create' (string expected, got nil)" whatever the
-- face's own nesting.  A face function is in the place of LuaIPC's C
-- function: the outermost frame of ours on the stack.  Hence one rule for
-- the faces: a face function never tail-calls code that may raise a misuse
-- error (`return (check(...))`, not `return check(...)`), since a tail call
-- replaces its frame, and with it the name the script called it by.
local core = ...
local classify, token = core.classify, core.token
local pcall, error, type, tostring, tonumber, next, rawequal, rawget, setmetatable =
      pcall, error, type, tostring, tonumber, next, rawequal, rawget, setmetatable
local getinfo, getmeta, setmeta = debug.getinfo, debug.getmetatable, debug.setmetatable
local registry = debug.getregistry()
local sfind, sub, format, huge = string.find, string.sub, string.format, math.huge

local S = {}

-- What lauxlib does differs by engine (lauxlib.c, lj_err.c):
-- * a function the call site does not name (called by pcall, say) is looked
--   up by value: 5.2 in the global table, 5.3+ in package.loaded ("_G."
--   dropped), both two levels deep; 5.1 and LuaJIT say '?';
-- * 5.3+ name a value's type by its metatable's __name ("got FILE*");
-- * a tail call on PUC-Lua leaves a C function its name but not a Lua one,
--   so there the faces take the name they are usually called by (a handle's
--   method, a module's field); LuaJIT names neither, nor do we.
local V = tonumber((_VERSION:gsub("%D", "")))   -- 51 ... 55 (LuaJIT: 51)
local NAMES_BY_VALUE = V >= 52
local TYPE_BY_NAME = V >= 53
local NAME_OPTIONS = V >= 52 and "nft" or "nf"  -- "t": 5.2+ only

-- "=[ipc.shm]" and the like are the chunk names of our own code.
local function ours(source) return sfind(source, "^=%[ipc[%.%]]") ~= nil end

-- The name each face function is usually called by, and whether it is a
-- method (S.class, S.module): for a tail call on PUC-Lua.
local USUAL, METHOD = {}, {}

-- Where the face function the script called stands: the position that
-- luaL_where(L, 1) would give if it were a C function, and (`named`) the
-- name, namewhat ("method"...) and function that lua_getinfo gives it.
local function locate(named)
  local level, entry, tail, pos = 2, nil, false, ""   -- 1 = locate
  while true do
    local info = getinfo(level, "Sl")
    if not info then break end
    if info.what == "tail" then                      -- 5.1: a tail call's mark
      if entry == level - 1 then tail = true end
    elseif ours(info.source) then
      entry, tail = level, false
    else
      if info.currentline and info.currentline > 0 then
        pos = info.short_src .. ":" .. info.currentline .. ": "
      end                                            -- else called from C
      break
    end
    level = level + 1
  end
  if not named or not entry then return pos end
  local info = getinfo(entry, NAME_OPTIONS)
  local f = info.func
  if (tail or info.istailcall) and USUAL[f] then
    return pos, USUAL[f], METHOD[f] and "method" or "field", f
  end
  return pos, info.name, info.namewhat, f
end

-- lauxlib's findfield: `f`'s name in `t`, `level` tables deep, found in the
-- order lua_next (and so `next`) visits the keys.
local function findfield(t, f, level)
  for k, v in next, t do
    if type(k) == "string" then
      if rawequal(v, f) then return k end
      if level > 1 and type(v) == "table" then
        local name = findfield(v, f, level - 1)
        if name then return k .. "." .. name end
      end
    end
  end
end

-- lauxlib's pushglobalfuncname (5.2+).
local function globalname(f)
  if V == 52 then return findfield(registry[2], f, 2) end    -- LUA_RIDX_GLOBALS
  local name = findfield(registry._LOADED, f, 2)
  if name and sub(name, 1, 3) == "_G." then name = sub(name, 4) end
  return name
end

-- The type name luaL_typeerror shows for a value (light userdata cannot
-- reach Lua without C, so 5.3+'s "light userdata" never arises).
local function typename(v)
  if TYPE_BY_NAME then
    local mt = getmeta(v)
    local name = mt and rawget(mt, "__name")
    if type(name) == "string" then return name end
  end
  return type(v)
end

function S.error(msg) error(locate(false) .. msg, 0) end

-- luaL_argerror: `n` counts `self` (as the stack index a C function would
-- check); a method call with a known name does not count it, and names a
-- bad `self` as such.
function S.argerror(n, msg)
  local pos, name, namewhat, f = locate(true)
  if namewhat == "method" then
    n = n - 1
    if n == 0 then error(format("%scalling '%s' on bad self (%s)", pos, name, msg), 0) end
  end
  if name == nil then name = NAMES_BY_VALUE and f and globalname(f) or "?" end
  error(format("%sbad argument #%d to '%s' (%s)", pos, n, name, msg), 0)
end

-- Pass `absent` = true when the argument was not given at all.
function S.typeerror(n, expected, value, absent)
  S.argerror(n, expected .. " expected, got " .. (absent and "no value" or typename(value)))
end

function S.checkstring(v, n, absent)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end     -- as lua_tolstring does
  S.typeerror(n, "string", v, absent)
end

function S.checknumber(v, n, absent)
  local x = tonumber(v)
  if x == nil or (type(v) ~= "number" and type(v) ~= "string") then
    S.typeerror(n, "number", v, absent)
  end
  return x
end

-- Strict on every engine: 1.5, NaN and infinities are refused (5.3+ rule).
function S.checkinteger(v, n, absent)
  local x = S.checknumber(v, n, absent)
  if x ~= x or x == huge or x == -huge or x % 1 ~= 0 then
    S.argerror(n, "number has no integer representation")
  end
  return x
end

function S.optinteger(v, n, default)
  if v == nil then return default end
  return S.checkinteger(v, n)
end

function S.optnumber(v, n, default)
  if v == nil then return default end
  return S.checknumber(v, n)
end

-- The timeout rule (ipc/_timeout.py) for argument n: nil, negative or more
-- than `forever` waits forever (nil); 0 tries once; t waits at most t s.
function S.timeout(t, n, forever)
  if t == nil then return nil end
  if type(t) ~= "number" then t = S.checknumber(t, n) end
  if t ~= t then S.argerror(n, "timeout is NaN") end
  if t < 0 or t > forever then return nil end
  return t
end

-- luaL_checkoption: `list` is a set {name = true}.
function S.checkoption(v, n, default, list)
  if v == nil and default ~= nil then v = default end
  local s = S.checkstring(v, n)
  if not list[s] then S.argerror(n, format("invalid option '%s'", s)) end
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

function S.call(f, ...) return finish(pcall(f, ...)) end

-- -- scopes (sem:scope, filelock.scope) ----------------------------------------
--
-- What was taken is given back however fn ends: give(what) runs after fn
-- returns and after it raises (the LuaJIT thread library's mutex:scope
-- leaves the mutex taken then).  fn's error is raised again as it was
-- (level 0: a table stays a table); an error of give itself only when fn
-- succeeded, so the first failure is the one reported.  5.1 cannot yield
-- across pcall, so there a yield inside fn is an error; 5.2+ and LuaJIT can.
-- (Not `arg`: 5.1 declares a local of that name in every vararg function.)
local function release(give, what, ok, ...)
  local gave, gerr = pcall(give, what)
  if not ok then error((...), 0) end
  if not gave then error(gerr, 0) end
  return ...
end

function S.scope(give, what, fn, ...) return release(give, what, pcall(fn, ...)) end

-- fn for a scope: a function or a callable table (checked before taking).
-- Userdata are refused even with a __call: every Python object has one in
-- lupa, so a non-callable one would fail only after the unit was taken,
-- with a Python exception for an error value.
function S.checkcallable(v, n, absent)
  if type(v) == "function" then return v end
  local mt = type(v) == "table" and getmeta(v)
  if mt and mt.__call then return v end
  S.typeerror(n, "function", v, absent)
end

-- -- handles --------------------------------------------------------------
--
-- Handles are full userdata, as LuaIPC's: type(h) is "userdata", io.type(h)
-- nil, getmetatable(h) false, and `h.x = 1` an error.  What a handle holds
-- (its state, a Lua table) lives in its class's weak table `states`, out of
-- the script's reach: no pairs, no rawget, no field to forge.
--
-- 5.1 and LuaJIT make the userdata with newproxy.  PUC-Lua 5.2+ cannot
-- without C, but lupa can: each handle there is lupa's wrapper of a fresh
-- Python object (core.token, pushed once: see crossing.py), given our
-- metatable.  lupa then no longer takes it for one of its own (it compares
-- the metatable: unpack_userdata in _lupa.pyx), and our __gc gives lupa's
-- metatable back and calls lupa's __gc (py_object_gc), which drops the
-- Python object.  The userdata was marked for finalization when lupa set
-- its metatable (which has __gc), so ours is run.
local newproxy = rawget(_G, "newproxy")
local PYMT, pygc
if not newproxy then
  PYMT = getmeta(token())
  pygc = PYMT.__gc
end
local WEAK = { __mode = "k" }

-- The address tostring(h) shows, as "userdata: 0x..." would.
local function address(h, mt)
  setmeta(h, nil)
  local text = tostring(h)
  setmeta(h, mt)
  return (text:gsub("^userdata: ", ""))
end

-- A class of handles named `typename` ("ipc.shm") with `methods`; returns
-- new(state), which makes a handle, and `states` (handle -> state; pass
-- one to share it between classes).  A state's `closed` = true means
-- closed: tostring(h) says "ipc.shm (closed)", and a to-be-closed variable
-- (5.4+) skips `methods.close`; else tostring shows show(state), if that
-- gives a string ("pid 42"), or the address.  `index(h, k)`, if given,
-- answers the keys that are not methods (a lane's h[1] and h.status).
function S.class(typename, methods, show, states, index)
  states = states or setmetatable({}, WEAK)
  local mt = { __index = methods, __name = typename, __metatable = false }
  if index then
    mt.__index = function(h, k)
      local m = methods[k]
      if m ~= nil then return m end
      return index(h, k)
    end
  end
  mt.__tostring = function(h)                     -- "?": not a handle
    local st = states[h]
    local shown = st and (st.closed and "closed" or show and show(st) or address(h, mt))
    return format("%s (%s)", typename, shown or "?")
  end
  local close = methods.close
  if close then
    mt.__close = function(h)
      local st = states[h]
      if st and not st.closed then close(h) end
    end
  end
  if not newproxy then
    mt.__gc = function(h)
      -- (What the state holds from Python is finalized in this same cycle,
      -- as everything unreachable; the state itself goes now, else with
      -- the handle, which lupa's metatable marks for one more finalizer.)
      states[h] = nil
      setmeta(h, PYMT)
      pygc(h)
    end
  end
  for k, f in next, methods do USUAL[f], METHOD[f] = k, true end
  local function new(st)
    local h = newproxy and newproxy() or token()
    setmeta(h, mt)
    states[h] = st
    return h
  end
  return new, states
end

-- A face's module table, its functions noted by name (see `locate`).
function S.module(M)
  for k, f in next, M do
    if type(f) == "function" then USUAL[f] = k end
  end
  return M
end

return S
