-- usage: hold.lua FILE MODE: lock the whole file, say "ready", hold it for 30 s
local fl = require "ipc.filelock"
local f = assert(io.open(arg[1], "r+"))
assert(fl.lock(f, arg[2]))
io.stdout:write("ready\n"); io.stdout:flush()
os.execute("exec sleep 30")
