-- A producer sharing work between consumers through two message queues.
--
--   luaipc examples/mq_producer.lua [NAME [COUNT [WORKERS]]]
--
-- Creates the queues /NAME (jobs) and /NAME-results, waits for WORKERS
-- consumers to say hello, sends COUNT jobs (the numbers 1..COUNT), checks
-- that every job comes back exactly once, with the right result, and tells
-- the consumers to stop.  Start the consumers once it says "ready":
--
--   luaipc examples/mq_consumer.lua NAME     python examples/mq_consumer.py NAME
--
-- examples/mq_demo.py runs all three for you.
local mq = require "ipc.mq"

local name = arg[1] or "luaipc-mqdemo"
local count = tonumber(arg[2] or 100)
local workers = tonumber(arg[3] or 2)
local WAIT = 30          -- seconds without news from a consumer: give up
local CAPACITY = 10      -- the usual system limit (/proc/sys/fs/mqueue/msg_max)

local function check(ok, msg, code)
  if ok == nil then
    io.stderr:write(("producer: %s (errno %s)\n"):format(msg, tostring(code)))
    os.exit(1)
  end
  return ok
end

local jobs = check(mq.open(name, CAPACITY, 64))
local results = check(mq.open(name .. "-results", CAPACITY, 64))
print(("producer: ready, queues /%s and /%s-results"):format(name, name))
io.stdout:flush()

local function next_result()
  local msg = check(results:receive(WAIT))
  if msg == false then
    io.stderr:write("producer: no news from the consumers for " .. WAIT .. " s\n")
    os.exit(1)
  end
  return msg
end

for _ = 1, workers do
  print("producer: " .. next_result())        -- "hello <who>"
end
io.stdout:flush()

-- Keep at most CAPACITY jobs in flight, so the results queue never fills
-- up while we are busy sending: no deadlock, whatever the consumers do.
local seen, per_worker = {}, {}
local sent, done = 0, 0
while done < count do
  if sent < count and sent - done < CAPACITY then
    sent = sent + 1
    check(jobs:send(tostring(sent)))
  else
    local i, square, who = next_result():match("^(%d+) (%d+) (%S+)$")
    i, square = tonumber(i), tonumber(square)
    assert(i and i * i == square, "bad result")
    assert(not seen[i], "job " .. tostring(i) .. " done twice")
    seen[i] = who
    per_worker[who] = (per_worker[who] or 0) + 1
    done = done + 1
  end
end
for _ = 1, workers do check(jobs:send("stop")) end

local shares = {}
for who, n in pairs(per_worker) do shares[#shares + 1] = who .. " " .. n end
table.sort(shares)
print(("producer: %d jobs, each done exactly once (%s)"):format(count,
      table.concat(shares, ", ")))
jobs:close()       -- the creator's close removes the names; consumers that
results:close()    -- still have the queues open finish undisturbed
