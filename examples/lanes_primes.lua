-- Count the primes below N in parallel: one lane per range, on a pool of
-- as many processes as this machine has processors, each lane reporting
-- its progress through a linda that the parent (or a Python program,
-- by the linda's name) can watch.
--
--   luaipc examples/lanes_primes.lua [N [RANGES]]
--
-- The lanes are Lua functions: each goes to its process as bytecode, with
-- its upvalues (here `report`, a linda, and `is_prime`) copied; the linda
-- arrives connected.
local lanes = require "ipc.lanes"

local N = tonumber(arg and arg[1]) or 2000000
local RANGES = tonumber(arg and arg[2]) or 8

local function is_prime(n)
  if n < 2 then return false end
  if n % 2 == 0 then return n == 2 end
  for d = 3, math.floor(math.sqrt(n)), 2 do
    if n % d == 0 then return false end
  end
  return true
end

local report = lanes.linda()            -- anonymous: removed when we close it

local function count(from, to)
  local c = 0
  for n = from, to do
    if is_prime(n) then c = c + 1 end
  end
  report:send("done", { from = from, to = to, primes = c })
  return c
end

local pool = assert(lanes.pool(lanes.nproc()))
local gen = pool:gen(count)
local step = math.ceil(N / RANGES)
local handles = {}
for i = 0, RANGES - 1 do
  local from, to = i * step, math.min(N - 1, (i + 1) * step - 1)
  handles[#handles + 1] = gen(from, to)
end

-- Progress, as the lanes finish (in any order).
for _ = 1, #handles do
  local _, r = report:receive(600, "done")
  io.write(string.format("  %9d..%-9d %7d primes\n", r.from, r.to, r.primes))
end

local total = 0
for _, h in ipairs(handles) do
  local ok, c = h:join()
  assert(ok, c)
  total = total + c
end
pool:close()
report:close()
print(string.format("%d primes below %d, counted by %d lanes on %d processes",
                    total, N, #handles, lanes.nproc()))
