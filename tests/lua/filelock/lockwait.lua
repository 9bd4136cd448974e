-- usage: lockwait.lua FILE MODE: say "ready", then lock (blocking) and report
local fl = require "ipc.filelock"
local f = assert(io.open(arg[1], "r+"))
io.stdout:write("ready\n"); io.stdout:flush()
print("lock", fl.lock(f, arg[2]))
print("content", f:read("*a"))
