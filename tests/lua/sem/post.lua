-- usage: post.lua NAME [COUNT]: open NAME and inc it COUNT times
local sem = require "ipc.sem"
local s = assert(sem.open(arg[1]))
for _ = 1, tonumber(arg[2] or 1) do assert(s:inc()) end
print("posted")
s:close()
