-- sender.lua NAME PRIO:MSG ...: send each message with its priority, exit.
local mq = require "ipc.mq"
local q = assert(mq.open(arg[1]))
for i = 2, #arg do
  local prio, msg = arg[i]:match("^(%d+):(.*)$")
  assert(q:send(msg, 0, tonumber(prio)) == true)
end
print("sent " .. (#arg - 1))
