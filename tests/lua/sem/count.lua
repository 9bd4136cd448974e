-- usage: count.lua sem|filelock NAME FILE N: add 1 to the number in FILE,
-- N times, each under the semaphore NAME or under an fcntl lock on FILE
local how, name, path, n = arg[1], arg[2], arg[3], tonumber(arg[4])
local f = assert(io.open(path, "r+"))
local s, fl
if how == "sem" then s = assert(require("ipc.sem").open(name))
else fl = require "ipc.filelock" end
local go = assert(require("ipc.sem").open(name .. "-go"))
io.stdout:write("ready\n"); io.stdout:flush()
assert(go:dec())                                   -- everybody starts together
for _ = 1, n do
  if s then assert(s:dec()) else assert(fl.lock(f, "w")) end
  f:seek("set", 0)
  local v = f:read("*n")
  f:seek("set", 0)
  f:write(string.format("%d\n", v + 1))
  if s then f:flush(); assert(s:inc()) else assert(fl.unlock(f)) end
end
print("done")
