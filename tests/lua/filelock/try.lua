-- usage: try.lua FILE MODE OFFSET NBYTES: print trylock's result
local fl = require "ipc.filelock"
local f = assert(io.open(arg[1], "r+"))
print(fl.trylock(f, arg[2], tonumber(arg[3]), tonumber(arg[4])))
