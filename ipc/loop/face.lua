-- ipc.loop: an event loop for Lua coroutines (as the Lua Event Machine's).
--   loop.spawn(fn, ...)       -> task (started by the running or next run)
--   loop.run([fn, ...])       -> fn's results, once every task has ended
--   loop.sleep(s)             -> true
--   loop.select(timeout, ...) -> i, join results of the first task (or
--                                function, run as a task) to end | false
--   task:join([timeout])      -> true, results... | nil, "cancelled" |
--                                nil, err, traceback | false (timed out)
--   task:cancel()             -> true if it was still running
--   task:status()             -> "ready" | "running" | "waiting" | "done" |
--                                "failed" | "cancelled"
--
-- One thread runs all Lua.  The scheduler is here; the loop sleeps in one
-- epoll (ipc/loop/lua.py), kept for the whole run.  While a loop runs,
-- S.suspend is set, and the blocking branch of each face (sem:dec,
-- mq:send/receive, proc h:wait, filelock.lock, linda send/receive and
-- receive_batched, lane join) calls it: inside a task it
-- yields that task until the loop sees the object ready, and returns
-- true plus the call's results; elsewhere (no loop, or a coroutine of the
-- task's own) it returns false and the face blocks as it always did.
--
-- Cancellation unwinds the task with an error (CANCEL, below) raised at the
-- wait it is in, or at its next one: a wait whose object was already taken
-- when the cancel came completes, so the task holds what it took and is
-- cancelled at its next wait.  A wait cancelled while a helper thread was
-- taking a unit gives the unit back (ipc/loop/_standin.py): nothing is lost.
-- A linda's helper takes nothing at all: it only says when to try again.
local S, core = ...
local type, select, error, tostring, setmetatable, rawequal, next, pcall =
      type, select, error, tostring, setmetatable, rawequal, next, pcall
local create, resume, yield, running, costatus =
      coroutine.create, coroutine.resume, coroutine.yield, coroutine.running, coroutine.status
local traceback = debug.traceback
local unpack = table.unpack or unpack
local call = S.call
local cnew, cwait, cfd, csem, clock, cproc, cresult, ccancel, cclose, cmqfd, cnow, cpause =
      core.new, core.wait, core.fd, core.sem, core.lock, core.proc, core.result,
      core.cancel, core.close, core.mqfd, core.now, core.pause
local clinda = core.linda
local FOREVER = core.FOREVER

local function pack(...) return { n = select("#", ...), ... } end

-- The error a cancelled task unwinds with (a pcall in the task may catch
-- it; the task is then cancelled again at its next wait).
local CANCEL = setmetatable({}, { __tostring = function() return "cancelled" end })
local MARK = {}            -- what a task yields to the loop (other yields: a pass)

local L = nil              -- the running loop
local pending = {}         -- tasks spawned while no loop runs

local methods = {}
local new, STATE           -- S.class, below

local function check(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.loop.task", self) end
  return st
end

-- Absent or negative: nil (block); 0: try once; t: wait at most t seconds.
local function timeout(t, n) return S.timeout(t, n, FOREVER) end

-- -- timers: a binary heap of { at, seq, st } ---------------------------------

local function before(a, b) return a.at < b.at or (a.at == b.at and a.seq < b.seq) end

local function push_timer(st, at)
  local h = L.timers
  L.seq = L.seq + 1
  local e = { at = at, seq = L.seq, st = st }
  local i = #h + 1
  h[i] = e
  while i > 1 do
    local up = (i - i % 2) / 2
    if not before(h[i], h[up]) then break end
    h[i], h[up] = h[up], h[i]
    i = up
  end
  return e
end

local function pop_timer()
  local h = L.timers
  local top, n = h[1], #h
  local last = h[n]
  h[n] = nil                 -- not `h[1], h[n] = h[n], nil`: with n == 1 the
  n = n - 1                  -- order of the two stores decides, and it is undefined
  if n == 0 then return top end
  h[1] = last
  local i = 1
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and before(h[l], h[m]) then m = l end
    if r <= n and before(h[r], h[m]) then m = r end
    if m == i then break end
    h[i], h[m] = h[m], h[i]
    i = m
  end
  return top
end

-- -- tasks -------------------------------------------------------------------

local function make_ready(st, why)
  st.state, st.why = "ready", why
  local q = L.queue
  q.tail = q.tail + 1
  q[q.tail] = st
end

-- End st's current wait (a token in the epoll, a timer, a join).
local function unwait(st, give_back)
  local kept = false
  local tok = st.token
  if tok then
    st.token = nil
    L.waits[tok] = nil
    L.nwaits = L.nwaits - 1
    kept = call(ccancel, L.poller, tok, give_back)
  end
  if st.timer then st.timer.st = nil; st.timer = nil end
  return kept
end

-- The current task's wait: for the epoll token `tok` (or none), at most `t`
-- seconds (nil: no end).  Returns "ready" or "timeout"; a cancel raises.
local function await(tok, t)
  local st = L.current
  if st.cancelled then
    if tok then call(ccancel, L.poller, tok, true) end
    error(CANCEL, 0)
  end
  if tok then
    st.token = tok
    L.waits[tok] = st
    L.nwaits = L.nwaits + 1
  end
  if t then st.timer = push_timer(st, call(cnow) + t) end
  st.state = "waiting"
  yield(MARK)
  local why = st.why
  if why == "cancel" then error(CANCEL, 0) end
  return why
end

-- Is the caller a loop task itself (not a coroutine of its own)?
local function intask()
  local st = L and L.current
  return st and rawequal(running(), st.co) and st or nil
end

-- A join (or select) is an entry { task, key } in each target's joiners;
-- it counts while the task's `joining` is still that key.
local function live(e) return e[1].joining == e[2] and e[1].state == "waiting" end

local function wake_joiners(st)
  local j = st.joiners
  st.joiners = {}
  for i = 1, #j do
    local e = j[i]
    if live(e) then
      local w = e[1]
      w.woken_by, w.joining = st, nil
      unwait(w, true)
      make_ready(w, "ready")
    end
  end
end

local function joined(st)
  local j = st.joiners
  for i = 1, #j do if live(j[i]) then return true end end
  return false
end

-- The current task waits until one of `targets` ends, at most t seconds.
local function join_any(me, targets, t)
  local key = {}
  me.joining, me.woken_by = key, nil
  for i = 1, #targets do
    local j = targets[i].joiners
    j[#j + 1] = { me, key }
  end
  local why = await(nil, t)
  me.joining = nil
  return why
end

local function finish(st, r)
  L.alive = L.alive - 1
  if r[1] then
    st.state, st.res = "done", r
  elseif rawequal(r[2], CANCEL) then
    st.state = "cancelled"
  else
    local e = r[2]
    st.state, st.err = "failed", e
    st.tb = traceback(st.co, type(e) == "string" and e or tostring(e))
    if not st.interest and not joined(st) then L.failure = L.failure or st end
  end
  wake_joiners(st)
end

local function step(st)
  if st.state ~= "ready" then return end      -- woken twice in one round
  if st.cancelled and not st.started then
    L.alive = L.alive - 1
    st.state = "cancelled"
    wake_joiners(st)
    return
  end
  st.started, st.state = true, "running"
  L.current = st
  local args = st.args
  st.args = nil
  local r
  if args then r = pack(resume(st.co, unpack(args, 1, args.n)))
  else r = pack(resume(st.co)) end
  L.current = nil
  if costatus(st.co) == "dead" then
    finish(st, r)
  elseif st.state == "running" then
    -- A plain coroutine.yield in a task: it lets the others run.
    make_ready(st, "ready")
  end
end

local function results(st)
  if st.state == "done" then return unpack(st.res, 1, st.res.n) end
  if st.state == "cancelled" then return nil, "cancelled" end
  return nil, st.err, st.tb
end

local function spawn(fn, ...)
  local st = { co = create(fn), args = pack(...), state = "ready", why = "ready",
               joiners = {}, interest = false, cancelled = false, started = false }
  local h = new(st)
  if L then
    L.alive = L.alive + 1
    make_ready(st, "ready")
  else
    pending[#pending + 1] = st
  end
  return h, st
end

local function cancel(st)
  if st.state == "done" or st.state == "failed" or st.state == "cancelled" then return false end
  st.cancelled = true
  if st.state == "waiting" and L then
    st.joining = nil
    unwait(st, true)
    make_ready(st, "cancel")
  end
  local sub = st.selecting                      -- what its select spawned
  if sub then
    st.selecting = nil
    for i = 1, #sub do cancel(sub[i]) end
  end
  return true
end

function methods.cancel(self)
  return (cancel(check(self)))
end

function methods.status(self)
  return check(self).state
end

function methods.join(self, t)
  local st = check(self)
  t = timeout(t, 2)
  st.interest = true
  if st.state == "done" or st.state == "failed" or st.state == "cancelled" then
    return results(st)
  end
  local me = intask()
  if not me then S.error("task:join outside a task of a running loop") end
  if me == st then S.error("a task cannot join itself") end
  if t == 0 then return false end
  if join_any(me, { st }, t) == "timeout" then return false end
  return results(st)
end

new, STATE = S.class("ipc.loop.task", methods, function(st) return st.state end)

-- -- the hook the faces call -----------------------------------------------------

local MQFD = setmetatable({}, { __mode = "k" })   -- mq handle -> descriptor

-- Wait on a semaphore, a queue, a child or a lock as the current task.
local function suspend(kind, ...)
  local st = intask()
  if not st then return false end
  local p = L.poller
  local a, b, c, d = ...
  if kind == "sem" then                             -- a: Semaphore, b: timeout
    local t = timeout(b, 2)
    if t == 0 then return false end
    local tok, msg, code = call(csem, p, a)
    if tok == nil then return true, nil, msg, code end
    if tok == 0 then return true, true end
    if await(tok, t) == "timeout" then return true, false end
    return true, call(cresult, p, tok)
  elseif kind == "mq" then                -- a: MessageQueue, b: write, c: t, d: try
    local t = c
    if t == 0 then return false end
    local fd = MQFD[a]
    if fd == nil then fd = call(cmqfd, a); MQFD[a] = fd end
    local deadline = t and call(cnow) + t
    while true do
      local left = deadline and deadline - call(cnow)
      if left and left <= 0 then return true, false end
      -- No descriptor to wait with (EMFILE on the dup): an OS failure of
      -- the call, nil, msg, errno, as outside a loop; nothing was taken.
      local tok, msg, code = call(cfd, p, fd, b)
      if tok == nil then return true, nil, msg, code end
      if await(tok, left) == "timeout" then return true, false end
      local r1, r2, r3 = d()
      if r1 ~= false then return true, r1, r2, r3 end  -- else another was first
    end
  elseif kind == "linda" then
    -- a: the Linda (Python), b: timeout, c: try (the call, non-blocking:
    -- its results, or false when it would wait), then write, n, keys...
    -- for the helper (ipc/loop/lua.py linda).  The helper only watches the
    -- linda's futex; the task itself retries c here, in the Lua thread, so
    -- a value is taken only by the call that returns it, and a cancelled
    -- or timed out wait has taken nothing (see LindaWaiter for why not
    -- take in the helper and give back).
    local t = b
    if t == 0 then return false end
    local w, n = select(4, ...)
    local deadline = t and call(cnow) + t
    while true do
      local r = pack(c())
      if r[1] ~= false then return true, unpack(r, 1, r.n) end
      local left = deadline and deadline - call(cnow)
      if left and left <= 0 then return true, false end
      local tok = call(clinda, p, a, w, n, left, select(6, ...))
      if await(tok, left) == "timeout" then return true, false end
      -- The helper's failure is the call's: an OSError as nil, msg, errno,
      -- the linda closed meanwhile as an error.  Else look again.
      local ok, msg, code = call(cresult, p, tok)
      if ok == nil then return true, nil, msg, code end
    end
  elseif kind == "lock" then               -- a: fd, b: shared, c: offset, d: nbytes
    local tok, msg, code = call(clock, p, a, b, c, d)
    if tok == nil then return true, nil, msg, code end
    if tok == 0 then return true, true end
    await(tok, nil)
    return true, call(cresult, p, tok)
  elseif kind == "proc" then              -- a: writing, b...: LuaProcess cores
    -- true, true once one can move; true, nil, msg, errno if the wait
    -- cannot be set up (EMFILE: the faces return that triple)
    local tok, msg, code = call(cproc, p, ...)
    if tok == nil then return true, nil, msg, code end
    if tok ~= 0 then
      -- For poke (no pcall to clean up after: 5.1 cannot yield across it;
      -- an entry whose token is gone is stale and ignored).
      local pw = L.procwait
      for i = 2, select("#", ...) do pw[(select(i, ...))] = { st, tok } end
      await(tok, nil)
    end
    return true, true
  end
  return false
end

-- h:write() from any task: the task waiting on that handle (h:wait or
-- proc.waitall) wakes to hand the input over, as it would have had it
-- been queued before the wait began.
local function poke(core)
  local e = L and L.procwait[core]
  local st = e and e[1]
  if st and st.token == e[2] and st.state == "waiting" then
    unwait(st, true)
    make_ready(st, "ready")
  end
end

-- -- the loop ----------------------------------------------------------------------

local function wake(tok)
  local st = L.waits[tok]
  if st then
    L.waits[tok] = nil
    L.nwaits = L.nwaits - 1
    st.token = nil
    if st.timer then st.timer.st = nil; st.timer = nil end
    make_ready(st, "ready")
  end
end

local function expire(now)
  local h = L.timers
  while h[1] and h[1].at <= now do
    local e = pop_timer()
    local st = e.st
    if st then
      st.timer = nil
      -- A helper that took its unit just as the time ran out: keep it.
      local kept = unwait(st, false)
      make_ready(st, kept and "ready" or "timeout")
    end
  end
end

local function schedule()
  local q = L.queue
  while true do
    local last = q.tail
    while q.head <= last do
      local st = q[q.head]
      q[q.head] = nil
      q.head = q.head + 1
      step(st)
      if L.failure then return end
    end
    if L.alive == 0 then return end
    local t
    if q.head <= q.tail then
      t = 0
    else
      local h = L.timers
      while h[1] and not h[1].st do pop_timer() end
      if h[1] then
        t = h[1].at - call(cnow)
        if t < 0 then t = 0 end
      elseif L.nwaits == 0 then
        S.error("loop.run: deadlock (every task waits for another task)")
      end
    end
    local r = pack(call(cwait, L.poller, t))
    if r[1] == nil then S.error(tostring(r[2])) end
    for i = 2, r.n do wake(r[i]) end
    expire(r[1])
  end
end

local M = {}

function M.spawn(...)
  local fn = ...
  if type(fn) ~= "function" then S.typeerror(1, "function", fn, select("#", ...) < 1) end
  local h = spawn(...)
  return h
end

local function ended(ok, ...)
  local st, failure = L.main, L.failure
  local p = L.poller
  -- Every task not ended is dropped; its waits are given back.
  for tok, w in next, L.waits do L.waits[tok] = nil; w.token = nil; call(ccancel, p, tok, true) end
  L, S.suspend, S.poke = nil, nil, nil
  call(cclose, p)
  if not ok then error(..., 0) end
  if failure then error(failure.tb or failure.err, 0) end
  if st then
    if st.state == "failed" then error(st.tb or st.err, 0) end
    if st.state == "done" then return unpack(st.res, 2, st.res.n) end
    return nil, "cancelled"
  end
end

function M.run(...)
  local fn = ...
  if L then S.error("loop.run: a loop is already running (nested loop.run)") end
  if fn ~= nil and type(fn) ~= "function" then S.typeerror(1, "function", fn) end
  local poller, msg, code = call(cnew)
  if poller == nil then return nil, msg, code end
  L = { poller = poller, queue = { head = 1, tail = 0 }, timers = {}, seq = 0,
        waits = {}, nwaits = 0, alive = 0, current = nil, failure = nil,
        procwait = setmetatable({}, { __mode = "k" }) }
  S.suspend, S.poke = suspend, poke
  local waiting = pending
  pending = {}
  for i = 1, #waiting do
    L.alive = L.alive + 1
    make_ready(waiting[i], "ready")
  end
  if fn then
    local _, st = spawn(...)
    L.main = st
  end
  return ended(pcall(schedule))
end

function M.sleep(...)
  local s = ...
  local t = S.checknumber(s, 1, select("#", ...) < 1)
  if t ~= t then S.argerror(1, "NaN") end
  if t < 0 then t = 0 end
  if t > FOREVER then t = FOREVER end
  if not intask() then
    call(cpause, t)
    return true
  end
  await(nil, t)
  return true
end

function M.select(t, ...)
  t = timeout(t, 1)
  local me = intask()
  if not me then S.error("loop.select outside a task of a running loop") end
  local n = select("#", ...)
  if n == 0 then S.argerror(2, "task or function expected") end
  local sts, mine = {}, {}
  for i = 1, n do
    local v = select(i, ...)
    if type(v) == "function" then
      local _, st = spawn(v)
      sts[i], mine[i] = st, true
    else
      local st = STATE[v]
      if st == nil then S.typeerror(i + 1, "ipc.loop.task", v) end
      sts[i] = st
    end
    sts[i].interest = true
  end
  local function first()
    for i = 1, n do
      local s = sts[i].state
      if s == "done" or s == "failed" or s == "cancelled" then return i end
    end
  end
  local won = first()
  if not won and t ~= 0 then
    local sub = {}
    for i = 1, n do if mine[i] then sub[#sub + 1] = sts[i] end end
    me.selecting = sub                  -- a cancel of `me` cancels these too
    join_any(me, sts, t)
    me.selecting = nil
    local by = me.woken_by
    for i = 1, n do if sts[i] == by then won = i end end
  end
  for i = 1, n do if mine[i] and i ~= won then cancel(sts[i]) end end
  if not won then return false end
  return won, results(sts[won])
end

return S.module(M)
