-- usage: pingpong.lua PING PONG N: N times dec(PING) then inc(PONG)
local sem = require "ipc.sem"
local ping, pong = assert(sem.open(arg[1])), assert(sem.open(arg[2]))
for _ = 1, tonumber(arg[3]) do ping:dec(); pong:inc() end
print("done")
