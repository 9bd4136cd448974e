-- ipc.sem: named POSIX semaphores, as LuaIPC's sem module.
--   sem.open(name [, n]) -> handle | nil, msg, errno
--   h:inc() -> true;  h:dec([timeout]) -> true/false;  h:close() -> true
-- inc() and a blocking dec() call posix_ipc's bound methods directly (one
-- crossing into Python, no wrapper); everything else goes through core.
local S, core = ...
local pcall, type, setmetatable = pcall, type, setmetatable
local call = S.call

local INVALID = "attempt to use invalid semaphore object"

-- Per-handle state, weak so that collecting a handle drops its Python
-- object (whose finalizer closes, and for the creator unlinks).
local OBJ = setmetatable({}, { __mode = "k" })
local REL = setmetatable({}, { __mode = "k" })
local ACQ = setmetatable({}, { __mode = "k" })

local methods = {}

function methods.inc(self)
  local rel = REL[self]
  if rel == nil then S.error(INVALID) end
  local ok, err = pcall(rel)
  if ok then return true end
  return call(core.failed, OBJ[self], err, false)
end

function methods.dec(self, timeout)
  local acq = ACQ[self]
  if acq == nil then S.error(INVALID) end
  if timeout ~= nil then
    local t = timeout
    if type(t) ~= "number" then t = S.checknumber(timeout, 1, "dec") end
    if t >= 0 then return call(core.dec, OBJ[self], t) end
  end
  local ok, err = pcall(acq)
  if ok then return true end
  return call(core.failed, OBJ[self], err, true)
end

function methods.close(self)
  local obj = OBJ[self]
  if obj == nil then S.error(INVALID) end
  OBJ[self], REL[self], ACQ[self] = nil, nil, nil
  return call(core.close, obj)
end

function methods.__state(self)
  if OBJ[self] == nil then return "closed" end
end

local mt = S.class("ipc.sem", methods)
-- A to-be-closed handle that was closed by hand is left alone.
mt.__close = function(self) if OBJ[self] ~= nil then methods.close(self) end end

local M = {}

function M.open(...)
  local name, n = ...
  name = S.checkstring(name, 1, "open", select("#", ...) < 1)
  n = S.optinteger(n, 2, "open", 0)
  local obj, rel, acq = call(core.open, name, n)
  if obj == nil then return nil, rel, acq end
  local h = S.new(mt)
  OBJ[h], REL[h], ACQ[h] = obj, rel, acq
  return h
end

return M
