-- ipc.shm: named shared memory (LuaIPC's shm.c) on the common file core.
local S, core, part = ...
local MF = part("memfile")   -- compiled once per runtime, shared by the faces
local new = MF.class("ipc.shm")
local pycreate, pyattach = core.create, core.attach

local M = {}

function M.create(...)
  local name, size = ...
  name = S.checkstring(name, 1, select("#", ...) < 1)
  size = S.checkinteger(size, 2, select("#", ...) < 2)
  return MF.open(new, pycreate, name, size)
end

function M.attach(...)
  local name = S.checkstring((...), 1, select("#", ...) < 1)
  return MF.open(new, pyattach, name)
end

return S.module(M)
