-- Four processes count to 4 x 1000 in one shared-memory counter, taking
-- turns through a named semaphore.  Run it with:   luaipc examples/counter.lua
--
-- The parent creates the segment and the semaphore, then starts itself
-- again as each worker (the lowest index of `arg` is the interpreter, as
-- with `lua`), and reads the workers' output through ipc.proc pipes.
local shm  = require "ipc.shm"
local sem  = require "ipc.sem"
local proc = require "ipc.proc"

local WORKERS, ROUNDS = 4, 1000

local function read_counter(h)
  h:seek("set", 0)
  return tonumber(h:read("l")) or 0
end

local function write_counter(h, n)
  h:seek("set", 0)
  h:write(("%12d\n"):format(n))
end

if arg[1] == "worker" then                 -- a worker: attach, count, leave
  local name, id = arg[2], arg[3]
  local counter = assert(shm.attach(name))
  local lock = assert(sem.open(name))
  for _ = 1, ROUNDS do
    lock:dec()
    write_counter(counter, read_counter(counter) + 1)
    lock:inc()
  end
  print(("worker %s done"):format(id))
  return
end

-- The parent.
-- A name of our own: time, CPU clock and a table address differ per run.
local name = ("luaipc-demo-%d-%d-%s"):format(os.time(), math.floor(os.clock() * 1e6),
                                             tostring({}):match("%x+$"))
local counter = assert(shm.create(name, 64))
local lock = assert(sem.open(name, 1))
write_counter(counter, 0)

local interp = 0
while arg[interp - 1] do interp = interp - 1 end   -- the luaipc command
local workers = {}
for id = 1, WORKERS do
  local cmd = ("%s %s worker %s %d"):format(arg[interp], arg[0], name, id)
  workers[id] = assert(proc.spawn(cmd, {
    stdout = true,
    callback = function(_, data) if data then io.write(data) end end,
  }))
end
for id = 1, WORKERS do
  local ok, how, code = workers[id]:wait()
  assert(ok, ("worker %d ended: %s %s"):format(id, tostring(how), tostring(code)))
end

local total = read_counter(counter)
print(("%d processes counted to %d (expected %d) on %s")
      :format(WORKERS, total, WORKERS * ROUNDS, jit and jit.version or _VERSION))
lock:close()       -- the creator's close removes the names
counter:close()
if total ~= WORKERS * ROUNDS then os.exit(1) end
