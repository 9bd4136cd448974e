-- Churn: many mixed luaipc calls, every answer checked.
--   luaipc churn.lua CALLS PREFIX TMPDIR
-- Handles are made and dropped all the time (half closed by hand, half
-- left to the collector, some kept for a while in a ring), and modules are
-- loaded again, so lupa's wrappers of Python objects die at every moment
-- while new ones are made: the conditions in which lupa 2.8 hands Lua
-- another object's wrapper (ipc/lua/crossing.py).  Prints "calls N wrong
-- W"; the first few wrong answers go to stderr.
--
-- With CALLS = 0 it is issue 11's repro: on luajit2.1 these three requires
-- at the top of a script of some length (its parse moves the collector
-- along) failed in about 1 run in 3 with "classify() missing 1 required
-- positional argument: 'exc'": mmap's face got another function's wrapper
-- for a core function that shm's face had been sent before.
local shm = require "ipc.shm"
local sem = require "ipc.sem"
local mmap = require "ipc.mmap"
local mq, strfile, filelock, proc      -- required below the definitions

local N, prefix, tmpdir = tonumber(arg[1]), arg[2], arg[3]
local calls, wrong = 0, 0
local function check(ok, what)
  calls = calls + 1
  if not ok then
    wrong = wrong + 1
    if wrong <= 10 then io.stderr:write("wrong: ", what, "\n") end
  end
end

local ring, seq = {}, 0
local function keep(h)                      -- lives a while, then is dropped
  ring[seq % 24 + 1] = h
end
local function drop(h)                      -- closed by hand or by the GC
  if seq % 2 == 0 then check(h:close() == true, "close") end
end

local lockfile = assert(io.open(tmpdir .. "/lock", "w+"))
local mapfile = tmpdir .. "/map"
do local f = assert(io.open(mapfile, "wb")); f:write(string.rep("\0", 4096)); f:close() end

local function churn_shm()
  local name = prefix .. "s" .. seq
  local h = assert(shm.create(name, 4096))
  local tag = "shm" .. seq
  check(h:size() == 4096, "shm size")
  check(h:write(tag, "\n") == h, "shm write returns the handle")
  check(h:seek("set", 0) == 0, "shm seek")
  check(h:read("l") == tag, "shm read line")
  for i = 1, 3 do        -- the same record again: kept slices (item access)
    local rec = string.format("%08d", seq * 3 + i)
    h:seek("set", 64); h:write(rec); h:seek("set", 64)
    check(h:read(8) == rec, "shm record read again")
  end
  local g = assert(shm.attach(name))
  check(g:read(#tag) == tag, "attach sees the data")
  check(g:seek("cur") == #tag, "attach position")
  drop(g)
  local n, msg, code = shm.create(name, 4096)
  check(n == nil and msg == "File exists" and code == 17, "shm create twice")
  if seq % 3 == 0 then keep(h) else drop(h) end
end

local function churn_sem()
  local name = prefix .. "m" .. seq
  local s = assert(sem.open(name, 2))
  check(s:dec(0) == true and s:dec(0) == true, "sem dec twice")
  check(s:dec(0) == false, "sem empty")
  check(s:inc() == true, "sem inc")
  local t = assert(sem.open(name))
  check(t:dec(0.01) == true, "sem dec through a second handle")
  check(t:dec(0) == false, "sem empty again")
  drop(t)
  if seq % 3 == 1 then keep(s) else drop(s) end
end

local function churn_mq()
  local name = prefix .. "q" .. seq
  local q = assert(mq.open(name, 4, 64))
  local msg = "msg" .. seq
  check(q:send(msg, 0, seq % 8) == true, "mq send")
  check(q:count() == 1, "mq count")
  local got, prio = q:receive(0)
  check(got == msg and prio == seq % 8, "mq receive")
  check(q:receive(0) == false, "mq empty")
  check(q:close() == true, "mq close")  -- by hand: the system allows 256 queues
end

local function churn_files()
  local s = strfile.open("a" .. seq .. "\nb\n")
  check(s:read("l") == "a" .. seq and s:read("l") == "b" and s:read("l") == nil, "strfile lines")
  check(s:seek("set", 1) == 1, "strfile seek")
  local m = assert(mmap.open(mapfile, "rw"))
  local tag = tostring(seq)
  check(m:write(tag) == m, "mmap write")
  check(m:seek("set", 0) == 0 and m:read(#tag) == tag, "mmap read")
  drop(m)
  check(filelock.lock(lockfile, "w", 0, 10) == true, "lock")
  check(filelock.trylock(lockfile, "r", 20, 5) == true, "trylock")
  check(filelock.unlock(lockfile, 0, 30) == true, "unlock")
end

local function churn_errors()
  local h, msg, code = shm.attach(prefix .. "none" .. seq)
  check(h == nil and msg == "No such file or directory" and code == 2, "attach missing")
  local ok, err = pcall(shm.create)   -- unnamed: '?', 'shm.create' or 'ipc.shm.create'
  check(not ok and err:find("^bad argument #1 to '[%w.?]+' %(string expected, got no value%)$"),
        "create misuse")
  local s, smsg, scode = sem.open(prefix .. "none" .. seq)
  check(s == nil and scode == 2, "sem missing")
  local ok2, err2 = pcall(sem.open, {})
  check(not ok2 and err2:find("string expected, got table", 1, true), "sem misuse")
end

local function churn_proc()
  local out = {}
  local h = assert(proc.spawn("echo " .. seq, { stdout = true,
    callback = function(_, data) if data then out[#out + 1] = data end end }))
  local ok, how, code = h:wait()
  check(ok == true and how == "exit" and code == 0, "proc wait")
  check(table.concat(out) == seq .. "\n", "proc output")
end

-- A module loaded again (package.loaded cleared, as reloaders do) gets its
-- core functions from Python again: with lupa 2.8 that is where a pushed-
-- again object came back as another's (ipc/lua/crossing.py).
local function reload()
  local names = { "shm", "sem", "mq", "strfile", "mmap", "filelock" }
  local m = names[seq % #names + 1]
  package.loaded["ipc." .. m] = nil
  local fresh = require("ipc." .. m)
  if m == "shm" then shm = fresh elseif m == "sem" then sem = fresh
  elseif m == "mq" then mq = fresh elseif m == "strfile" then strfile = fresh
  elseif m == "mmap" then mmap = fresh else filelock = fresh end
  check(type(fresh) == "table", "reloaded " .. m)
end

mq, strfile = require "ipc.mq", require "ipc.strfile"
filelock, proc = require "ipc.filelock", require "ipc.proc"

while calls < N do
  seq = seq + 1
  local k = seq % 5
  if k == 0 then churn_shm()
  elseif k == 1 then churn_sem()
  elseif k == 2 then churn_mq()
  elseif k == 3 then churn_files()
  else churn_errors() end
  if seq % 2000 == 0 then churn_proc() end
  if seq % 97 == 0 then reload() end
  if seq % 7 == 0 then collectgarbage("step", seq % 13) end
end
ring = nil
lockfile:close()
collectgarbage(); collectgarbage()
print("calls " .. calls .. " wrong " .. wrong)
