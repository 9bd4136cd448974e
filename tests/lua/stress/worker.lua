-- A stress worker (see tests/test_stress.py): usage
--   worker.lua GROUP SHM SEM LOCKFILE LEDGER SLOT
-- GROUP "sem": the critical section is guarded by the semaphore SEM, and
-- the worker records itself in the ipc.sem.Ledger file LEDGER while it
-- holds it (the ledger's format: "pid start_time" lines under an fcntl
-- lock on the whole file; -1 = no start time, liveness only).
-- GROUP "flock": guarded by an fcntl lock on LOCKFILE (the kernel drops it
-- if the worker dies).
-- Under the lock: roll forward a pending journal, check A == B, then
-- journal + apply A += 1, B += 1, own slot += 1.  Ends when the stop flag
-- is set, printing "done <count>".
local shm, sem, filelock = require "ipc.shm", require "ipc.sem", require "ipc.filelock"
local group, shmname, semname, lockfile, ledger, slot = arg[1], arg[2], arg[3], arg[4], arg[5], tonumber(arg[6])
local W = 20
local h = assert(shm.attach(shmname))
local base = group == "sem" and 64 or 320
local A, B, JF, JA, JS, JV = base, base + 20, base + 40, base + 48, base + 68, base + 88
local function SLOT(i) return 1024 + i * W end

local function get(off, n)
  h:seek("set", off)
  return h:read(n or W)
end
local function put(off, s)
  h:seek("set", off)
  assert(h:write(s))
end
local function num(off) return tonumber(get(off)) end
local function field(v) return string.format("%020d", v) end

local pid = tonumber(io.open("/proc/self/stat"):read("*l"):match("^(%d+)"))

local lock, unlock
if group == "sem" then
  local s = assert(sem.open(semname))
  local mine = string.format("%d -1.0\n", pid)
  lock = function()
    assert(s:dec())
    local f = assert(io.open(ledger, "a"))
    assert(filelock.lock(f, "w"))
    f:write(mine); f:flush()
    filelock.unlock(f); f:close()
  end
  unlock = function()
    local f = assert(io.open(ledger, "r+"))
    assert(filelock.lock(f, "w"))
    local text = f:read("*a")
    local i = text:find(mine, 1, true)
    if i and (i == 1 or text:sub(i - 1, i - 1) == "\n") then
      f:seek("set", i - 1)
      f:write(string.rep(" ", #mine - 1) .. "\n")   -- blanked: the ledger skips it
      f:flush()
    end
    filelock.unlock(f); f:close()
    assert(s:inc())
  end
else
  local f = assert(io.open(lockfile, "r+"))
  lock = function() assert(filelock.lock(f, "w")) end
  unlock = function() assert(filelock.unlock(f)) end
end

local count = 0
io.stdout:write("ready\n"); io.stdout:flush()
while get(0, 1) ~= "1" do
  lock()
  if get(JF, 1) == "1" then                       -- a holder died mid-update
    local ja, js, jv = num(JA), num(JS), num(JV)
    put(A, field(ja)); put(B, field(ja)); put(SLOT(js), field(jv)); put(JF, "0")
  end
  local a, b = num(A), num(B)
  if a ~= b then
    io.stderr:write(("invariant broken: A=%d B=%d\n"):format(a, b))
    os.exit(3)
  end
  local my = num(SLOT(slot))
  put(JA, field(a + 1)); put(JS, field(slot)); put(JV, field(my + 1)); put(JF, "1")
  put(A, field(a + 1)); put(B, field(a + 1)); put(SLOT(slot), field(my + 1)); put(JF, "0")
  count = my + 1
  unlock()
end
print("done " .. count)
