-- ipc.mmap: memory-mapped files (LuaIPC's mmap.c) on the common file core.
local S, core, part = ...
local MF = part("memfile")   -- compiled once per runtime, shared by the faces
local new = MF.class("ipc.mmap")
local pyopen = core.open
local MODES = { r = true, w = true, rw = true }

local M = { pagesize = core.PAGESIZE }

function M.open(...)
  local path, mode, offset, size = ...
  path = S.checkstring(path, 1, select("#", ...) < 1)
  if path:find("\0", 1, true) then  -- open(2) would only see the part before it
    S.argerror(1, "path contains a zero byte")
  end
  mode = S.checkoption(mode, 2, "r", MODES)
  offset = S.optinteger(offset, 3, 0)
  size = S.optinteger(size, 4, 0)
  return MF.open(new, pyopen, path, mode, offset, size)
end

return S.module(M)
