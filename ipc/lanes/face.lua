-- ipc.lanes: Lua functions run in parallel processes, as Lua Lanes runs
-- them in threads (see ipc/lanes/__init__.py for the processes).
--
--   lanes.gen([libs,] [opts,] fn) ==> gen    gen(...) starts a lane: fn(...)
--                                            in a new process; opts.engine
--                                            (fn as source), opts.env
--   lanes.pool(n [, opts])        ==> pool   n reusable processes; pool:gen
--                                            as lanes.gen, pool:close()
--   lanes.linda([name | opts])    ==> linda  (ipc.linda's new)
--   lanes.nproc()                 ==> n      the processors this process has
--   h:join([timeout])   ==> true, results... / nil, "timeout" /
--                           nil, message, traceback / nil, "killed", signal /
--                           nil, "cancelled"
--   h[i]                ==> the lane's i-th result (waits; raises its error)
--   h.status            ==> "pending", "running", "waiting" (asleep in a
--                           call: an ipc wait...), "done", "error",
--                           "cancelled" or "killed"
--   h:cancel([timeout]) ==> true    stop it (SIGINT: "interrupted!" at its next
--                                   hook or ipc call), kill after timeout
--   h:close()           ==> true    cancel if still running; free it all
--
-- fn is a Lua function (its bytecode, upvalues deep-copied: the lane gets
-- its own copies, lindas arrive connected) or Lua source (any engine).  The
-- lane gets a fresh state with the standard libraries, the ipc modules and
-- this process's package.path and cpath.
local S, core, part = ...
local wire = part("wire")
local linda = require "ipc.linda"
local type, select, pcall, xpcall, error, tostring, next =
      type, select, pcall, xpcall, error, tostring, next
local format = string.format
local unpack = table.unpack or unpack
local traceback = debug.traceback
local load = loadstring or load

local py_pool, py_submit, py_result, py_running, py_cancel, py_kill, py_close =
  core.pool, core.submit, core.result, core.running, core.cancel, core.kill, core.close
local FOREVER = core.FOREVER

-- This engine's name, as luaipc --engine spells it: bytecode runs only there.
local ENGINE = rawget(_G, "jit") and ("luajit" .. jit.version:match("(%d+%.%d+)"))
               or ("lua" .. _VERSION:match("(%d+%.%d+)"))
local ENCODE = { engine = ENGINE, ref = linda._ref }
local DECODE = { engine = ENGINE, unref = linda._unref }

local function pack(...) return { n = select("#", ...), ... } end

local M = {}

-- -- lanes ----------------------------------------------------------------

local lane_methods = {}
local new_lane, LANE

local function lane(self)
  local st = LANE[self]
  if st == nil then S.typeerror(1, "ipc.lane", self) end
  return st
end

-- 5.1 cannot yield across a metamethod: h[i] there blocks even in a loop
-- task (h:join suspends only the task on every engine).
local YIELDS_IN_INDEX = _VERSION ~= "Lua 5.1" or rawget(_G, "jit") ~= nil

-- The result, waited for at most t: inside an ipc.loop task (and `yields`)
-- tried without waiting and waited for by the loop on the pool's linda key
-- of the result (ipc/loop/face.lua); elsewhere, a blocking wait.
local function result(st, t, yields)
  local sus = yields and t ~= 0 and S.suspend         -- set by ipc.loop (its face)
  if sus then
    local pool, job = st.pool, st.job
    local function try() return S.call(py_result, pool, job, 0) end
    local handled, blob, msg, code = sus("linda", pool, t, try, false, 1, job)
    if handled then return blob, msg, code end
  end
  return S.call(py_result, st.pool, st.job, t)
end

-- Wait for the result (once: it is kept); false on timeout, or nil, msg.
local function finish(st, t, yields)
  if st.result then return true end
  local blob, msg, code = result(st, t, yields ~= false)
  if blob == false then return false end
  if blob == nil then return nil, msg, code end
  local ok, r = pcall(wire.decode, blob, DECODE)
  if not ok then r = { err = "cannot load the lane's results: " .. tostring(r), tb = "" } end
  if st.cancelling and not r.ok then r = { cancelled = true } end
  st.result = r
  if st.once then st.closed = true; S.call(py_close, st.pool) end
  return true
end

local function join(self, t, yields)
  local st = lane(self)
  local done, msg, code = finish(st, t, yields)
  if done == false then return nil, "timeout" end
  if done == nil then return nil, msg, code end
  local r = st.result
  if r.ok then return true, unpack(r.v, 1, r.n) end
  if r.cancelled then return nil, "cancelled" end
  if r.killed then return nil, "killed", r.signal end
  return nil, r.err, r.tb
end

function lane_methods.join(self, t)
  return join(self, S.timeout(t, 2, FOREVER), true)
end

function lane_methods.cancel(self, t)
  local st = lane(self)
  t = S.timeout(t, 2, FOREVER)
  if st.result then return true end
  st.cancelling = true
  S.call(py_cancel, st.pool, st.job)
  if finish(st, t) then return true end
  S.call(py_kill, st.pool, st.job)                   -- its time ran out
  finish(st, nil)                                    -- the watcher reports it
  return true
end

function lane_methods.close(self)
  local st = lane(self)
  if st.result == nil then lane_methods.cancel(self, 0) end
  if st.once and not st.closed then st.closed = true; S.call(py_close, st.pool) end
  st.closed = true
  return true
end

local function status(st)
  if st.result == nil and finish(st, 0) ~= true then
    return S.call(py_running, st.pool, st.job)      -- pending, running, waiting
  end
  local r = st.result
  if r.ok then return "done" end
  if r.cancelled then return "cancelled" end
  if r.killed then return "killed" end
  return "error"
end

local function index(self, k)
  local st = LANE[self]
  if st == nil then return nil end
  if k == "status" then return status(st) end
  if type(k) == "number" then
    local ok, msg, code = join(self, nil, YIELDS_IN_INDEX)
    if not ok then
      if msg == "killed" then error(format("lane killed by signal %d", code), 2) end
      if msg == "cancelled" then error("lane cancelled", 2) end
      error(msg, 0)                                  -- the lane's own error
    end
    local r = st.result
    return r.v[k]
  end
  return nil
end

new_lane, LANE = S.class("ipc.lane", lane_methods,
                         function(st) return st.result and status(st) or ("job " .. st.job) end,
                         nil, index)

-- -- generators -----------------------------------------------------------

local function envlist(env)
  if env == nil then return end
  if type(env) ~= "table" then S.argerror(2, "opts.env must be a table") end
  local flat = {}
  for k, v in next, env do
    if type(k) ~= "string" or type(v) ~= "string" then
      S.argerror(2, "opts.env must map strings to strings")
    end
    flat[#flat + 1] = k
    flat[#flat + 1] = v
  end
  return flat
end

-- gen's arguments: [libs,] [opts,] fn (Lanes' libs string is accepted and
-- ignored: a lane always has every standard library).
local function genargs(...)
  local a, b, c = ...
  local opts, fn
  if type(a) == "string" and select("#", ...) >= 2 then a, b = b, c end  -- libs
  if select("#", ...) >= 2 and type(a) == "table" and type(b) ~= "nil" then
    opts, fn = a, b
  else
    opts, fn = {}, a
  end
  local tf = type(fn)
  if tf ~= "function" and tf ~= "string" then
    S.argerror(select("#", ...), "function or Lua source expected")
  end
  local engine = opts.engine
  if engine == nil then
    engine = ENGINE
  elseif type(engine) ~= "string" then
    S.argerror(1, "opts.engine must be a string")
  elseif tf == "function" and engine ~= ENGINE then
    S.argerror(1, format("a function runs only on its own engine (%s), not %s: "
                         .. "pass Lua source instead", ENGINE, engine))
  end
  if tf == "string" then
    local ok, err = load(fn, "=lane")
    if not ok then S.argerror(select("#", ...), "lane source does not compile: " .. err) end
  end
  return opts, fn, engine
end

-- The job: the function or source, the arguments, the package paths;
-- encoded here, so whatever cannot cross is an error now, before any
-- process starts.
local function job(fn, ...)
  local n = select("#", ...)
  local j = { n = n, args = { ... }, path = package.path, cpath = package.cpath }
  if type(fn) == "string" then j.src = fn else j.fn = fn end
  local ok, blob = pcall(wire.encode, j, ENCODE)
  if not ok then S.error("cannot start the lane: " .. tostring(blob)) end
  return blob
end

local function launch(pool, id, once, blob)
  local ok, msg, code = S.call(py_submit, pool, id, blob)
  if ok == nil and msg then return nil, msg, code end
  return new_lane { pool = pool, job = id, once = once }
end

function M.gen(...)
  local opts, fn, engine = genargs(...)
  local env = envlist(opts.env)
  return function(...)
    local blob = job(fn, ...)
    local pool, msg, code = S.call(py_pool, 1, engine, true, unpack(env or {}))
    if not pool then return nil, msg, code end
    return launch(pool, 1, true, blob)
  end
end

-- -- pools ----------------------------------------------------------------

local pool_methods = {}
local new_pool, POOL

local function pool(self)
  local st = POOL[self]
  if st == nil then S.typeerror(1, "ipc.lanes.pool", self) end
  if st.closed then S.error("attempt to use a closed lane pool") end
  return st
end

function M.pool(n, opts)
  n = S.checkinteger(n, 1)
  if n < 1 then S.argerror(1, "a pool needs at least one process") end
  if opts ~= nil and type(opts) ~= "table" then S.typeerror(2, "table", opts) end
  opts = opts or {}
  local engine = opts.engine or ENGINE
  if type(engine) ~= "string" then S.argerror(2, "opts.engine must be a string") end
  local env = envlist(opts.env)
  local p, msg, code = S.call(py_pool, n, engine, false, unpack(env or {}))
  if not p then return nil, msg, code end
  return new_pool { pool = p, n = n, engine = engine, jobs = 0, closed = false }
end

function pool_methods.gen(self, ...)
  local st = pool(self)
  local opts, fn, engine = genargs(...)
  if engine ~= st.engine then
    S.argerror(2, format("this pool runs %s, not %s", st.engine, engine))
  end
  local _ = opts
  return function(...)
    local blob = job(fn, ...)
    if st.closed then S.error("attempt to use a closed lane pool") end
    st.jobs = st.jobs + 1
    return launch(st.pool, st.jobs, false, blob)
  end
end

function pool_methods.close(self)
  local st = POOL[self]
  if st == nil then S.typeerror(1, "ipc.lanes.pool", self) end
  if not st.closed then
    st.closed = true
    S.call(py_close, st.pool)        -- kills what still runs, removes the linda
  end
  return true
end

new_pool, POOL = S.class("ipc.lanes.pool", pool_methods,
                         function(st) return format("%d processes", st.n) end)

function M.linda(...) return linda.new(...) end

function M.nproc() return S.call(core.nproc) end

-- -- the lane process -----------------------------------------------------

-- What a lane's error becomes: its message (any value) and a traceback.
-- (The traceback stops at the lane's function: the frames below it are
-- this runner's.)
local function caught(e)
  local tb = traceback(type(e) == "string" and e or tostring(e), 2)
  local cut = tb:find("\n\t%[C%]: in [%w ]*'?xpcall'?")
  if cut then tb = tb:sub(1, cut - 1):gsub("\n\t%(%.%.%.tail calls%.%.%.%)$", "") end
  return { err = e, tb = tb }
end

local function run(j)
  package.path, package.cpath = j.path, j.cpath
  local fn = j.fn
  if j.src then fn = assert(load(j.src, "=lane")) end
  local args, n = j.args, j.n
  local r = pack(xpcall(function() return fn(unpack(args, 1, n)) end, caught))
  if r[1] then return { ok = true, n = r.n - 1, v = { select(2, unpack(r, 1, r.n)) } } end
  return r[2]
end

-- The main loop of a lane process (python -m ipc -e ...: see
-- ipc/lanes/__init__.py): take a job, run it, post its result; `once`:
-- end after one.
function M._serve(name, once)
  local l, pid = S.call(core.serve, name)
  if not l then error(pid, 0) end
  repeat
    local id, payload, cancelled = S.call(core.take, l, pid)
    local r
    if cancelled then
      r = { cancelled = true }
    else
      local ok, j = pcall(wire.decode, payload, DECODE)
      if ok then r = run(j) else r = { err = "cannot load the lane: " .. tostring(j), tb = "" } end
    end
    local ok, blob = pcall(wire.encode, r, ENCODE)
    if not ok then
      blob = wire.encode({ err = "cannot send the lane's results: " .. tostring(blob), tb = "" })
    end
    S.call(core.done, l, pid, id, blob)
  until once
end

return S.module(M)
