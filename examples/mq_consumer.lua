-- A consumer for examples/mq_producer.lua, in Lua.
--
--   luaipc examples/mq_consumer.lua [NAME [WHO]]
--
-- Takes jobs (numbers) from /NAME until "stop", sends "<n> <n*n> <who>" to
-- /NAME-results, and prints the jobs it did.
local mq = require "ipc.mq"

local name = arg[1] or "luaipc-mqdemo"
local who = arg[2] or "lua"

local jobs = assert(mq.open(name))     -- start the producer first
local results = assert(mq.open(name .. "-results"))
assert(results:send("hello " .. who))

local did = {}
while true do
  local job = assert(jobs:receive())
  if job == "stop" then break end
  local n = tonumber(job)
  assert(results:send(("%d %d %s"):format(n, n * n, who)))
  did[#did + 1] = n
end
print(who .. " did: " .. table.concat(did, " "))
