-- usage: wait.lua NAME [TIMEOUT]: open NAME, say "ready", dec, print the result
local sem = require "ipc.sem"
local s = assert(sem.open(arg[1]))
io.stdout:write("ready\n"); io.stdout:flush()
local ok, msg, code = s:dec(tonumber(arg[2]))
print("dec", tostring(ok), tostring(msg), tostring(code))
s:close()
