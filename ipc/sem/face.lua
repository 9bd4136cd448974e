-- ipc.sem: named POSIX semaphores, as LuaIPC's sem module.
--   sem.open(name [, n]) -> handle | nil, msg, errno
--   h:inc() -> true;  h:dec([timeout]) -> true/false;  h:close() -> true
--   h:scope(fn, ...) -> fn's results, the unit given back however fn ends
-- inc() and a blocking dec() call posix_ipc's bound methods directly (one
-- crossing into Python, no wrapper); everything else goes through core.
local S, core = ...
local pcall, type, select = pcall, type, select
local call = S.call
-- Bound once, at load (core is a Lua table: see support.lua's rule).
local core_open, core_dec, core_failed, core_close, core_pointer =
      core.open, core.dec, core.failed, core.close, core.pointer
-- A longer timeout waits forever (ipc/_timeout.py), as a negative one does.
local FOREVER = core.FOREVER

local INVALID = "attempt to use invalid semaphore object"

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

-- A handle's state: the Python Semaphore (whose finalizer closes it, and
-- for the creator unlinks), its bound release and acquire, and on LuaJIT
-- the sem_t* for the FFI.  Closing empties it.
local methods = {}
local new, STATE     -- S.class, below the methods (it reads them)

-- The state of an open handle; a Lua error for anything else.
local function check(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.sem", self) end
  if st.closed then S.error(INVALID) end
  return st
end

function methods.inc(self)
  local st = STATE[self] or check(self)
  if C then
    local p = st.ptr
    if p ~= nil and C.sem_post(p) == 0 then return true end
  end
  -- The hot path on PUC-Lua: one pcall of posix_ipc's bound method.  Once
  -- closed, st.rel is nil: pcall fails and check() says why.
  local ok, err = pcall(st.rel)
  if ok then return true end
  if st.closed then check(self) end
  return call(core_failed, st.obj, err, false)
end

function methods.dec(self, timeout)
  local st = STATE[self] or check(self)
  -- The hot path on PUC-Lua, a blocking dec() outside ipc.loop: one pcall
  -- (see inc).
  if timeout == nil and not C and not S.suspend then
    local ok, err = pcall(st.acq)
    if ok then return true end
    if st.closed then check(self) end
    return call(core_failed, st.obj, err, true)
  end
  local acq = st.acq
  if acq == nil then check(self) end               -- closed
  local sus = S.suspend                            -- set by ipc.loop (its face)
  if sus then
    local handled, ok, msg, code = sus("sem", st.obj, timeout)
    if handled then return ok, msg, code end
  end
  if timeout ~= nil then
    local t = timeout
    if type(t) ~= "number" then t = S.checknumber(timeout, 2) end
    if t >= 0 and t <= FOREVER then return call(core_dec, st.obj, t) end
  end
  if C then
    local p = st.ptr
    if p ~= nil and C.sem_trywait(p) == 0 then return true end
  end
  local ok, err = pcall(acq)
  if ok then return true end
  return call(core_failed, st.obj, err, true)
end

function methods.close(self)
  local st = check(self)
  local obj = st.obj
  st.closed, st.obj, st.rel, st.acq, st.ptr = true, nil, nil, nil, nil
  return call(core_close, obj)
end

-- h:scope(fn, ...) -- dec(), fn(...), inc() even when fn raises; fn's
-- results (nil, msg, errno from dec: fn is not called).
function methods.scope(self, ...)
  check(self)
  local fn = S.checkcallable((...), 2, select("#", ...) < 1)
  local ok, msg, code = methods.dec(self)
  if not ok then return nil, msg, code end
  return S.scope(methods.inc, self, fn, select(2, ...))
end

new, STATE = S.class("ipc.sem", methods)

local M = {}

function M.open(...)
  local name, n = ...
  name = S.checkstring(name, 1, select("#", ...) < 1)
  n = S.optinteger(n, 2, 0)
  local obj, rel, acq = call(core_open, name, n)
  if obj == nil then return nil, rel, acq end
  local st = { obj = obj, rel = rel, acq = acq, closed = false }
  if C then
    local addr = core_pointer(obj)
    if addr then st.ptr = cast("void *", addr) end
  end
  return new(st)
end

return S.module(M)
