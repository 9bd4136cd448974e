-- One loop serving a message queue and supervising three worker processes.
--
--   luaipc examples/loop_supervisor.lua [NAME]
--
-- Jobs (numbers) arrive on the queue /NAME, from any process (here a task
-- of this script plays the client, so the example runs alone).  Each job
-- goes to a worker, a child that squares numbers; each worker has a task
-- that waits on it (h:wait) and one that restarts it if it dies.  Every
-- wait suspends only its own task: one thread, one poll, no busy loop.
local loop = require "ipc.loop"
local mq = require "ipc.mq"
local proc = require "ipc.proc"

local name = arg[1] or "luaipc-loopdemo"
local jobs = assert(mq.open(name, 8, 64))
local sum, done, restarts = 0, 0, 0
local WORKER = "while read n; do echo $((n * n)); done"

local function start(i)
  return assert(proc.spawn(WORKER, { stdin = true, stdout = true, callback = function(_, out)
    for sq in out:gmatch("%d+") do sum, done = sum + tonumber(sq), done + 1 end
  end }))
end

loop.run(function()
  local workers, watchers = {}, {}
  for i = 1, 3 do
    workers[i] = start(i)
    watchers[i] = loop.spawn(function()       -- supervise worker i
      while true do
        local _, kind, code = workers[i]:wait()
        if kind == "exit" and code == 0 then return end   -- stopped by us
        restarts = restarts + 1                           -- died: start another
        workers[i] = start(i)
      end
    end)
  end
  loop.spawn(function()                       -- the client
    for n = 1, 12 do assert(jobs:send(tostring(n))) end
    assert(jobs:send("stop"))
  end)
  local i = 0
  while true do                               -- the server
    local job = assert(jobs:receive())
    if job == "stop" then break end
    i = i % 3 + 1
    workers[i]:write(job, "\n")
  end
  for w = 1, 3 do workers[w]:write(proc.EOF) end   -- each ends once drained
  for w = 1, 3 do watchers[w]:join() end
end)
jobs:close()
print(("%d jobs done, %d workers restarted, sum of squares %d"):format(done, restarts, sum))
