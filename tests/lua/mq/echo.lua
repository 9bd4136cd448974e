-- echo.lua IN OUT: send every message of queue IN back on queue OUT with the
-- same priority, until the message "STOP"; then print the count.
local mq = require "ipc.mq"
local inq = assert(mq.open(arg[1]))
local outq = assert(mq.open(arg[2]))
io.stdout:write("ready\n"); io.stdout:flush()
local n = 0
while true do
  local msg, prio = inq:receive()
  assert(msg, prio)
  if msg == "STOP" then break end
  assert(outq:send(msg, nil, prio) == true)
  n = n + 1
end
print("done " .. n)
