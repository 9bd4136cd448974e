-- ipc.filelock: POSIX byte-range locks on Lua files, as LuaIPC's flock.
--   filelock.lock(file, mode [, offset [, nbytes]])    -> true | nil, msg, errno
--   filelock.trylock(file, mode [, offset [, nbytes]]) -> true/false
--   filelock.unlock(file [, offset [, nbytes]])        -> true
--   filelock.scope(file, mode, fn, ...)                -> fn's results
-- As LuaIPC: the file's buffered output is flushed before unlocking, and
-- its read buffer dropped after locking (flush + seek("cur", 0)), so what
-- one holder wrote is what the next one reads.
local S, core = ...
local io_type, tostring, select, setmetatable, type, pcall =
      io.type, tostring, select, setmetatable, type, pcall
local call = S.call
-- Bound once, at load (core is a Lua table: see support.lua's rule).
local core_fileno, core_lock, core_trylock, core_unlock, core_whole =
      core.fileno, core.lock, core.trylock, core.unlock, core.whole
local F_SETLK, F_RDLCK, F_WRLCK, F_UNLCK = core.F_SETLK, core.F_RDLCK, core.F_WRLCK, core.F_UNLCK

-- file -> descriptor (a file object never reopens, so this cannot go stale)
local FD = setmetatable({}, { __mode = "k" })
-- file -> { lock exclusive, lock shared, unlock } of the whole file: Python
-- callables without arguments (core.whole), made once per file.
local WHOLE = setmetatable({}, { __mode = "k" })

local function whole(f, fd)
  local w = WHOLE[f]
  if w == nil then
    w = { call(core_whole, fd) }
    WHOLE[f] = w
  end
  return w
end

-- LuaJIT: setlk(fd, type, offset, nbytes) tries fcntl(F_SETLK) through the
-- FFI (the same call as fcntl.lockf's) and says whether it got the lock.
-- On any failure (a lock another process holds, a bad range) the caller
-- asks Python, which waits interruptibly (Ctrl-C: "interrupted!") or
-- reports what went wrong.  struct flock as Linux lays it out on 64-bit
-- ABIs; elsewhere there is no setlk.
local setlk
do
  local ok, ffi = pcall(require, "ffi")
  if ok and jit and type(ffi) == "table" and ffi.os == "Linux" and ffi.abi("64bit") then
    pcall(ffi.cdef, [[
      struct luaipc_flock { short l_type; short l_whence; int64_t l_start;
                            int64_t l_len; int l_pid; };
      int fcntl(int fd, int cmd, ...);
    ]])
    local okc, fcntl = pcall(function() return ffi.C.fcntl end)
    local okf, fl = pcall(ffi.new, "struct luaipc_flock[1]")
    if okc and okf then
      local LIMIT = 2 ^ 53                          -- exact in a double and an off_t
      setlk = function(fd, kind, offset, nbytes)
        if offset < 0 or offset >= LIMIT or nbytes < 0 or nbytes >= LIMIT then
          return false
        end
        local l = fl[0]
        l.l_type, l.l_whence, l.l_start, l.l_len = kind, 0, offset, nbytes
        return fcntl(fd, F_SETLK, fl) == 0
      end
    end
  end
end

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

-- PUC-Lua's common case, the whole of a file already locked once
-- (WHOLE[f] made): straight to its call, skipping the argument work
-- (lock+unlock 2.55 -> 2.41 us on lua5.4; the two fcntl calls are ~1.1 us
-- of that).  Not inside an ipc.loop task (S.suspend).
local function fast(f, offset, nbytes)
  if setlk == nil and offset == nil and nbytes == nil and S.suspend == nil then
    local w = WHOLE[f]
    if w and io_type(f) == "file" then return w end
  end
end

local function locker(corefn)
  local whole_fast = corefn == core_lock
  return function(...)
    local f, mode, offset, nbytes = ...
    local w = whole_fast and fast(f, offset, nbytes)
    if w then
      local fn = (mode == "w" or mode == "rw") and w[1] or mode == "r" and w[2]
      if fn then
        local _, msg, code = call(fn)
        if msg == nil then refresh(f); return true end
        return nil, msg, code
      end
    end
    local fd, msg, code = checkfile(f, select("#", ...) < 1)
    if fd == nil then return nil, msg, code end
    if not MODES[mode] then mode = S.checkoption(mode, 2, "rw", MODES) end
    if offset == nil then offset = 0 else offset = S.checkinteger(offset, 3) end
    if nbytes == nil then nbytes = 0 else nbytes = S.checkinteger(nbytes, 4) end
    local ok, handled
    local sus = corefn == core_lock and S.suspend    -- set by ipc.loop (its face)
    if sus then handled, ok, msg, code = sus("lock", fd, mode == "r", offset, nbytes) end
    if handled then                                  -- (the loop's answer)
    elseif setlk and setlk(fd, mode == "r" and F_RDLCK or F_WRLCK, offset, nbytes) then
      ok = true                                      -- LuaJIT, not held elsewhere
    elseif corefn == core_lock and offset == 0 and nbytes == 0 then
      local w = whole(f, fd)                         -- PUC-Lua: a call without
      local _                                        -- arguments (nil: locked)
      _, msg, code = call(mode == "r" and w[2] or w[1])
      if msg == nil then ok = true end
    else
      ok, msg, code = call(corefn, fd, mode == "r", offset, nbytes)
    end
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
  local w = fast(f, offset, nbytes)
  if w then
    f:flush()
    local _, msg, code = call(w[3])
    if msg == nil then return true end
    return nil, msg, code
  end
  local fd, msg, code = checkfile(f, select("#", ...) < 1)
  if fd == nil then return nil, msg, code end
  offset = S.optinteger(offset, 2, 0)
  nbytes = S.optinteger(nbytes, 3, 0)
  f:flush()                                         -- before anyone else reads
  if setlk and setlk(fd, F_UNLCK, offset, nbytes) then return true end   -- LuaJIT
  if offset == 0 and nbytes == 0 then                -- PUC-Lua: see locker
    local _
    _, msg, code = call(whole(f, fd)[3])
    if msg == nil then return true end
    return nil, msg, code
  end
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
