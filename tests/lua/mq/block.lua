-- block.lua NAME receive|send [TIMEOUT]: one call that may block; print
-- what it returned.  The parent makes the queue empty (receive) or full (send).
local mq = require "ipc.mq"
local q = assert(mq.open(arg[1]))
local t = arg[3] and tonumber(arg[3])
io.stdout:write("ready\n"); io.stdout:flush()
if arg[2] == "receive" then
  local msg, prio = q:receive(t)
  print("receive", tostring(msg), tostring(prio))
else
  print("send", tostring(q:send("late", t, 1)))
end
