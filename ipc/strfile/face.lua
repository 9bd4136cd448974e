-- ipc.strfile: a read-only file over a Lua string (LuaIPC's strfile.c).
-- Reads never leave Lua: the common file core reads the string itself.
local S, core, part = ...
local MF = part("memfile")   -- compiled once per runtime, shared by the faces
local new = MF.class("ipc.strfile")
local pin = core.pin

local M = {}

function M.open(...)
  local s = S.checkstring((...), 1, select("#", ...) < 1)
  local pinned, addr                 -- made on the first addr() only
  return MF.string(new, s, function()
    if not pinned then pinned, addr = pin(s) end
    return addr
  end)
end

return S.module(M)
