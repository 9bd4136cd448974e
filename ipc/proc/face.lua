-- ipc.proc: subprocesses with stdin/stdout/stderr pipes (as LuaIPC's proc).
--
-- The wait loop lives here, in Lua: each turn calls core.step (Python waits
-- in poll() and moves the bytes) and then calls the callback from Lua, so a
-- callback may yield inside a coroutine on every engine.  Input queued by
-- h:write stays in a Lua table until the next turn hands it over in one
-- string: 100,000 small writes cost 100,000 table stores, not crossings.
local S, core = ...

local type, select, tostring, rawequal = type, select, tostring, rawequal
local concat, rep = table.concat, string.rep
local iotype = io.type
local cspawn, cstep, ckill, cdescribe = core.spawn, core.step, core.kill, core.describe
local cstep_now, cwait_any = core.step_now, core.wait_any
local unpack = table.unpack or unpack   -- 5.1 and LuaJIT: a global
local call = S.call   -- spawn and kill; wait's steps report errors as values

local EOF = core.eof()        -- made once per runtime: one Lua value, compared raw

local M = { EOF = EOF }
local methods = {}
local new, STATE  -- S.class, below the methods (it reads them)

-- A long stream through a small Lua heap: the GC runs a whole cycle every
-- time the heap doubles, i.e. every few chunks of a few KiB when the live
-- heap is ~50 KiB (lua5.4: 0.1 us per KiB delivered, a third of the cost).
-- Once a wait() has delivered BALLAST_AFTER bytes, it holds a string of
-- BALLAST bytes until it returns: a string costs the collector nothing to
-- mark, but it raises the heap size the next cycle waits for, so cycles
-- come every ~BALLAST bytes instead.  (Measured: 256 KiB..1 MiB all gave
-- lua5.4 +35% on a 256 MiB stream; bigger garbage falls out of the cache.)
local BALLAST, BALLAST_AFTER = 262144, 1048576

local INVALID = "attempt to use invalid process object"

-- A handle's state: the Python process `core` and its reader `read`, the
-- callback `cb`, the queued input (`q`, `n` strings), whether stdin is a
-- pipe and whether EOF is queued, and once reaped `valid` = false and
-- wait()'s results; `t`, `i`: the results of a turn not yet delivered.
local function check(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.proc", self) end
  return st
end

-- A stream option: true = pipe, false/nil = inherit, a Lua file = redirect
-- (flushed first, handed over as `tostring(f)`, which shows the FILE*).
local function stream(v)
  local t = iotype(v)
  if t == "file" then
    v:flush()
    return tostring(v)
  elseif t == "closed file" then
    S.error("attempt to use a closed file")
  end
  return v and true or false
end

function M.spawn(...)
  local cmd, opts = ...
  cmd = S.checkstring(cmd, 1, select("#", ...) < 1)
  if cmd:find("\0", 1, true) then   -- execve() could only cut it short
    S.argerror(1, "command contains a zero byte")
  end
  if type(opts) ~= "table" then
    S.typeerror(2, "table", opts, select("#", ...) < 2)
  end
  local i, o, e = stream(opts.stdin), stream(opts.stdout), stream(opts.stderr)
  local cb = opts.callback
  if type(cb) ~= "function" and (o == true or e == true) then
    S.error("'callback' field required")
  end
  local c, read, code = call(cspawn, cmd, i, o, e)
  if not c then return nil, read, code end
  return new { core = c, read = read, cb = cb, q = {}, n = 0,
               pipe = (i == true), eof = false, valid = true }
end

function methods.write(self, ...)
  local st = check(self)
  if not st.valid then S.error(INVALID) end
  if not st.pipe then S.error("process stdin is not connected to a pipe") end
  local q, n = st.q, st.n
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    local t = type(v)
    local eof = false
    if t == "string" then
      -- the common case first
    elseif t == "number" then
      v = tostring(v)
    elseif rawequal(v, EOF) then
      eof = true
    else
      st.n = n
      S.typeerror(i + 1, "string", v)
    end
    if st.eof then
      st.n = n
      S.error("pipe to stdin is already closed")
    end
    if eof then
      st.eof = true
    elseif #v > 0 then
      n = n + 1
      q[n] = v
    end
  end
  st.n = n
  local poke = S.poke          -- set by ipc.loop: a task waiting on this
  if poke then poke(st.core) end   -- handle takes the new input at once
  return true
end

local SIGNALS = { term = true, kill = true }

function methods.kill(self, ...)
  local st = check(self)
  local sig = ...
  if sig == nil then S.typeerror(2, "string", nil, select("#", ...) == 0) end
  local s = S.checkoption(sig, 2, nil, SIGNALS)
  if not st.valid then S.error(INVALID) end
  return call(ckill, st.core, s)
end

-- One turn's results.  The common case, still running with at most one
-- chunk, goes straight to the callback: nothing is pending in the handle
-- then, so a yield or an error there loses nothing.  Anything else (several
-- chunks, a read error, the exit status) is kept in the handle and
-- delivered by wait(), one item at a time.
local function turn(st, cb, kind, code, s, d, s2, ...)
  if kind == false and s2 == nil then
    if s ~= nil then cb(s, d) end
    return true, code
  end
  if kind == nil then                       -- step failed
    if s == nil then S.error(code) end      -- Ctrl-C: "interrupted!"
    return nil, code, s                     -- an OS error: nil, msg, errno
  end
  st.t, st.i = { kind, code, s, d, s2, ... }, 3
  return true
end

-- Deliver the next item a turn kept in the handle (st.t, from position
-- st.i), or once all are out, take in the exit status.  The position is
-- stored before the callback runs (see h:wait()).
local function deliver(st, cb)
  local t, i = st.t, st.i
  local s = t[i]
  if s ~= nil then
    local d = t[i + 1]
    if type(d) == "string" then
      st.i = i + 2
      cb(s, d)
    else
      st.i = i + 3
      cb(s, nil, t[i + 2], d)
    end
  else
    st.t = nil
    local kind = t[1]
    if kind then                                      -- reaped
      local code = t[2]
      st.valid = false
      st.ok, st.kind, st.code = (kind == "exit" and code == 0) or nil, kind, code
    end
  end
end

-- The input h:write queued since the last turn, in one string (or nil).
local function queued(st)
  local n = st.n
  if n == 0 then return nil end
  local data = (n == 1) and st.q[1] or concat(st.q, "", 1, n)
  st.q, st.n = {}, 0
  return data
end

-- h:wait() -- each turn hands the queued input over, lets Python wait and
-- move bytes (core.step), then delivers what arrived: pairs (stream, data),
-- or triples (stream, errno, message) for a failed read.  A pending
-- position lives in the handle and is stored before each callback, so a
-- callback that raises loses nothing (the next h:wait() goes on after it),
-- and a callback that yields may even see another coroutine wait on the
-- same handle: every chunk is delivered exactly once, in order.  Once step
-- says a single output pipe is left (code 1), the turns call the reader
-- spawn returned instead: no arguments, one blocking read, one chunk that
-- goes straight to the callback (nothing pending), until EOF or a failed
-- read sends the loop back to step.
function methods.wait(self)
  local st = check(self)
  if not st.valid then S.error(INVALID) end
  local c, cb, read = st.core, st.cb, st.read
  local fast, moved, ballast = false, 0, nil
  while true do
    if st.t then
      deliver(st, cb)
    elseif st.kind then
      return st.ok, st.kind, st.code
    elseif fast and st.n == 0 then
      -- The last pipe: one blocking read per turn, nothing else to move.
      local s, d = read()
      if s then
        if not ballast then
          moved = moved + #d
          if moved > BALLAST_AFTER then ballast = rep("\0", BALLAST) end
        end
        cb(s, d)
      elseif d then
        S.error(d)                                    -- Ctrl-C: "interrupted!"
      else
        fast = false                  -- EOF or a failed read: step says which
      end
    else
      local sus, ok, msg, code = S.suspend, nil, nil, nil   -- set by ipc.loop
      local handled, waited
      if sus then handled, waited, msg, code = sus("proc", st.n > 0 or st.eof, c) end
      if handled then
        -- An ipc.loop task: the loop did the waiting, so step must not.
        -- (The input is taken after it: a write may have come meanwhile.)
        if not waited then return nil, msg, code end  -- it could not wait (EMFILE)
        ok, msg, code = turn(st, cb, cstep_now(c, queued(st), st.eof))
      else
        ok, msg, code = turn(st, cb, cstep(c, queued(st), st.eof))
      end
      if not ok then return nil, msg, code end
      fast = (msg == 1)
    end
  end
end

-- proc.waitall(h1, h2, ...) or proc.waitall{h1, h2, ...} -- h:wait() for
-- all of them at once, from one loop: each turn moves what moves now for
-- every handle (core.step_now, callbacks as in h:wait(), and they may
-- yield), then sleeps in one poll over all their pipes and pidfds
-- (core.wait_any), so N children take about the time of the slowest.
-- Returns one status table per handle, in order: {ok=, kind=, code=} as
-- h:wait()'s three results.  A handle may appear twice, and one already
-- waited for gives its status again.  nil, msg, errno for an OS error,
-- every handle left as it was (call again to go on).
function M.waitall(...)
  local hs, n = { ... }, select("#", ...)
  if n == 1 and type(hs[1]) == "table" and STATE[hs[1]] == nil then
    hs = hs[1]
    n = #hs
  end
  local sts, live = {}, {}
  for i = 1, n do
    local st = STATE[hs[i]]
    if st == nil then S.typeerror(i, "ipc.proc", hs[i]) end
    sts[i] = st
    if not live[st] and not st.kind then live[#live + 1], live[st] = st, true end
  end
  while true do
    local cores, left = {}, 0
    for j = 1, #live do
      local st = live[j]
      while st.t do deliver(st, st.cb) end
      if not st.kind then
        local ok, msg, code = turn(st, st.cb, cstep_now(st.core, queued(st), st.eof))
        if not ok then return nil, msg, code end
        while st.t do deliver(st, st.cb) end
      end
      if not st.kind then
        left = left + 1
        cores[left] = st.core
      end
    end
    if left == 0 then break end
    local sus, msg, code = S.suspend, nil, nil       -- set by ipc.loop
    local handled, waited
    if sus then handled, waited, msg, code = sus("proc", false, unpack(cores, 1, left)) end
    if not handled then
      msg, code = select(2, cwait_any(unpack(cores, 1, left)))
    elseif waited then
      msg, code = nil, nil
    end
    if msg then
      if code == nil then S.error(msg) end            -- Ctrl-C: "interrupted!"
      return nil, msg, code
    end
  end
  local r = {}
  for i = 1, n do
    local st = sts[i]
    r[i] = { ok = st.ok, kind = st.kind, code = st.code }
  end
  return unpack(r, 1, n)
end

new, STATE = S.class("ipc.proc", methods, function(st) return cdescribe(st.core) end)

return S.module(M)
