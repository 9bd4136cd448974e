-- ipc.filelock: POSIX byte-range locks on Lua files, as LuaIPC's flock.
--   filelock.lock(file, mode [, offset [, nbytes]])    -> true | nil, msg, errno
--   filelock.trylock(file, mode [, offset [, nbytes]]) -> true/false
--   filelock.unlock(file [, offset [, nbytes]])        -> true
--   filelock.scope(file, mode, fn, ...)                -> fn's results
-- As LuaIPC: the file's buffered output is flushed before unlocking, and
-- its read buffer dropped after locking (flush + seek("cur", 0)), so what
-- one holder wrote is what the next one reads.
local S, core = ...
local io_type, tostring, select, setmetatable = io.type, tostring, select, setmetatable
local call = S.call
-- Bound once, at load (core is a Lua table: see support.lua's rule).
local core_fileno, core_lock, core_trylock, core_unlock =
      core.fileno, core.lock, core.trylock, core.unlock

-- file -> descriptor (a file object never reopens, so this cannot go stale)
local FD = setmetatable({}, { __mode = "k" })

local MODES = { r = true, w = true, rw = true }

local function checkfile(f, absent)
  local kind = io_type(f)
  if kind == "file" then
    local fd = FD[f]
    if fd == nil then
      local msg, code
      fd, msg, code = call(core_fileno, tostring(f))
      if fd == nil then return nil, msg, code end
      FD[f] = fd
    end
    return fd
  elseif kind == "closed file" then
    S.error("attempt to use closed file")
  end
  S.typeerror(1, "FILE*", f, absent)
end

local function refresh(f)
  -- LuaIPC's invalidate_input_buffer: fflush, then fseek(f, 0, SEEK_CUR)
  f:flush()
  f:seek("cur", 0)
end

local function locker(corefn)
  return function(...)
    local f, mode, offset, nbytes = ...
    local fd, msg, code = checkfile(f, select("#", ...) < 1)
    if fd == nil then return nil, msg, code end
    mode = S.checkoption(mode, 2, "rw", MODES)
    offset = S.optinteger(offset, 3, 0)
    nbytes = S.optinteger(nbytes, 4, 0)
    local ok, handled
    local sus = corefn == core_lock and S.suspend    -- set by ipc.loop (its face)
    if sus then handled, ok, msg, code = sus("lock", fd, mode == "r", offset, nbytes) end
    if not handled then ok, msg, code = call(corefn, fd, mode == "r", offset, nbytes) end
    if ok then refresh(f); return true end
    if ok == false then return false end
    return nil, msg, code
  end
end

local M = {}

M.lock = locker(core_lock)
M.trylock = locker(core_trylock)

function M.unlock(...)
  local f, offset, nbytes = ...
  local fd, msg, code = checkfile(f, select("#", ...) < 1)
  if fd == nil then return nil, msg, code end
  offset = S.optinteger(offset, 2, 0)
  nbytes = S.optinteger(nbytes, 3, 0)
  f:flush()                                         -- before anyone else reads
  return call(core_unlock, fd, offset, nbytes)
end

-- filelock.scope(file, mode, fn, ...) -- lock the whole file, fn(...),
-- unlock even when fn raises; fn's results (lock's nil, msg, errno: fn is
-- not called).
function M.scope(...)
  local f, mode, fn = ...
  local fd, msg, code = checkfile(f, select("#", ...) < 1)
  if fd == nil then return nil, msg, code end
  S.checkoption(mode, 2, "rw", MODES)
  fn = S.checkcallable(fn, 3, select("#", ...) < 3)
  local ok
  ok, msg, code = M.lock(f, mode)
  if not ok then return nil, msg, code end
  return S.scope(M.unlock, f, fn, select(4, ...))
end

return S.module(M)
