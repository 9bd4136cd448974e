-- usage: append.lua FILE TEXT: under an exclusive lock, read the file and
-- write TEXT after it through the buffered Lua file, unlock (which must
-- flush it), then keep the file open for 30 s
local fl = require "ipc.filelock"
local f = assert(io.open(arg[1], "r+"))
assert(fl.lock(f, "w"))
local old = f:read("*a")
f:write(arg[2])
assert(fl.unlock(f))
print("read " .. old)
io.stdout:flush()
os.execute("exec sleep 30")
