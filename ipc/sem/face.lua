-- ipc.sem: named POSIX semaphores, as LuaIPC's sem module.
--   sem.open(name [, n]) -> handle | nil, msg, errno
--   h:inc() -> true;  h:dec([timeout]) -> true/false;  h:close() -> true
-- inc() and a blocking dec() call posix_ipc's bound methods directly (one
-- crossing into Python, no wrapper); everything else goes through core.
local S, core = ...
local pcall, type, setmetatable = pcall, type, setmetatable
local call = S.call
-- Bound once, at load (core is a Lua table: see support.lua's rule).
local core_open, core_dec, core_failed, core_close, core_pointer =
      core.open, core.dec, core.failed, core.close, core.pointer

local INVALID = "attempt to use invalid semaphore object"

-- Per-handle state, weak so that collecting a handle drops its Python
-- object (whose finalizer closes, and for the creator unlinks).
local OBJ = setmetatable({}, { __mode = "k" })
local REL = setmetatable({}, { __mode = "k" })
local ACQ = setmetatable({}, { __mode = "k" })
local PTR = setmetatable({}, { __mode = "k" })   -- LuaJIT: sem_t* for the FFI

-- LuaJIT: sem_post/sem_trywait straight from Lua, no Python on the way.
local C, cast
do
  local ok, ffi = pcall(require, "ffi")
  if ok and type(ffi) == "table" and jit then
    pcall(ffi.cdef, "int sem_post(void *); int sem_trywait(void *);")
    local okc = pcall(function() return ffi.C.sem_post and ffi.C.sem_trywait end)
    if okc then C, cast = ffi.C, ffi.cast end
  end
end

local methods = {}

function methods.inc(self)
  local p = PTR[self]
  if p ~= nil and C.sem_post(p) == 0 then return true end
  local rel = REL[self]
  if rel == nil then S.error(INVALID) end
  local ok, err = pcall(rel)
  if ok then return true end
  return call(core_failed, OBJ[self], err, false)
end

function methods.dec(self, timeout)
  local acq = ACQ[self]
  if acq == nil then S.error(INVALID) end
  if timeout ~= nil then
    local t = timeout
    if type(t) ~= "number" then t = S.checknumber(timeout, 1, "dec") end
    if t >= 0 then return call(core_dec, OBJ[self], t) end
  end
  local p = PTR[self]
  if p ~= nil and C.sem_trywait(p) == 0 then return true end
  local ok, err = pcall(acq)
  if ok then return true end
  return call(core_failed, OBJ[self], err, true)
end

function methods.close(self)
  local obj = OBJ[self]
  if obj == nil then S.error(INVALID) end
  OBJ[self], REL[self], ACQ[self], PTR[self] = nil, nil, nil, nil
  return call(core_close, obj)
end

local function state(self)
  if OBJ[self] == nil then return "closed" end
end

local mt = S.class("ipc.sem", methods, state)
-- A to-be-closed handle that was closed by hand is left alone.
mt.__close = function(self) if OBJ[self] ~= nil then methods.close(self) end end

local M = {}

function M.open(...)
  local name, n = ...
  name = S.checkstring(name, 1, "open", select("#", ...) < 1)
  n = S.optinteger(n, 2, "open", 0)
  local obj, rel, acq = call(core_open, name, n)
  if obj == nil then return nil, rel, acq end
  local h = S.new(mt)
  OBJ[h], REL[h], ACQ[h] = obj, rel, acq
  if C then
    local addr = core_pointer(obj)
    if addr then PTR[h] = cast("void *", addr) end
  end
  return h
end

return M
