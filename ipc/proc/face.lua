-- ipc.proc: subprocesses with stdin/stdout/stderr pipes (as LuaIPC's proc).
--
-- The wait loop lives here, in Lua: each turn calls core.step (Python waits
-- in poll() and moves the bytes) and then calls the callback from Lua, so a
-- callback may yield inside a coroutine on every engine.  Input queued by
-- h:write stays in a Lua table until the next turn hands it over in one
-- string: 100,000 small writes cost 100,000 table stores, not crossings.
local S, core = ...

local type, select, tostring, rawequal, setmetatable =
      type, select, tostring, rawequal, setmetatable
local concat, rep = table.concat, string.rep
local iotype = io.type
local cspawn, cstep, ckill, cdescribe = core.spawn, core.step, core.kill, core.describe
local call = S.call   -- spawn and kill; wait's steps report errors as values

local EOF = core.eof()        -- made once per runtime: one Lua value, compared raw

local M = { EOF = EOF }
local methods = {}
local isproc = setmetatable({}, { __mode = "k" })

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

local function checkproc(self, fname)
  if not isproc[self] then
    S.error("calling '" .. fname .. "' on bad self (ipc.proc expected, got "
            .. type(self) .. ")")
  end
  return self
end

local function state(self)
  local c = isproc[self] and self._core
  return c and cdescribe(c)
end
local Proc = S.class("ipc.proc", methods, state)

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
  cmd = S.checkstring(cmd, 1, "spawn", select("#", ...) < 1)
  if type(opts) ~= "table" then
    S.typeerror(2, "spawn", "table", opts, select("#", ...) < 2)
  end
  local i, o, e = stream(opts.stdin), stream(opts.stdout), stream(opts.stderr)
  local cb = opts.callback
  if type(cb) ~= "function" and (o == true or e == true) then
    S.error("'callback' field required")
  end
  local c, read, code = call(cspawn, cmd, i, o, e)
  if not c then return nil, read, code end
  local h = S.new(Proc, {
    _core = c, _read = read, _cb = cb, _q = {}, _n = 0,
    _pipe = (i == true), _eof = false, _valid = true,
  })
  isproc[h] = true
  return h
end

function methods.write(self, ...)
  checkproc(self, "write")
  if not self._valid then S.error(INVALID) end
  if not self._pipe then S.error("process stdin is not connected to a pipe") end
  local q, n = self._q, self._n
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
      self._n = n
      S.typeerror(i, "write", "string", v)
    end
    if self._eof then
      self._n = n
      S.error("pipe to stdin is already closed")
    end
    if eof then
      self._eof = true
    elseif #v > 0 then
      n = n + 1
      q[n] = v
    end
  end
  self._n = n
  return true
end

local SIGNALS = { term = true, kill = true }

function methods.kill(self, ...)
  checkproc(self, "kill")
  local sig = ...
  if sig == nil then S.typeerror(1, "kill", "string", nil, select("#", ...) == 0) end
  local s = S.checkoption(sig, 1, "kill", nil, SIGNALS)
  if not self._valid then S.error(INVALID) end
  return call(ckill, self._core, s)
end

-- One turn's results.  The common case, still running with at most one
-- chunk, goes straight to the callback: nothing is pending in the handle
-- then, so a yield or an error there loses nothing.  Anything else (several
-- chunks, a read error, the exit status) is kept in the handle and
-- delivered by wait(), one item at a time.
local function turn(self, cb, kind, code, s, d, s2, ...)
  if kind == false and s2 == nil then
    if s ~= nil then cb(s, d) end
    return true, code
  end
  if kind == nil then                       -- step failed
    if s == nil then S.error(code) end      -- Ctrl-C: "interrupted!"
    return nil, code, s                     -- an OS error: nil, msg, errno
  end
  self._t, self._i = { kind, code, s, d, s2, ... }, 3
  return true
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
  checkproc(self, "wait")
  if not self._valid then S.error(INVALID) end
  local c, cb, read = self._core, self._cb, self._read
  local fast, moved, ballast = false, 0, nil
  while true do
    local t = self._t
    if t then
      local i = self._i
      local s = t[i]
      if s ~= nil then
        local d = t[i + 1]
        if type(d) == "string" then
          self._i = i + 2
          cb(s, d)
        else
          self._i = i + 3
          cb(s, nil, t[i + 2], d)
        end
      else
        self._t = nil
        local kind = t[1]
        if kind then                                  -- reaped
          local code = t[2]
          self._valid = false
          self._ok, self._kind, self._code = (kind == "exit" and code == 0) or nil, kind, code
        end
      end
    elseif self._kind then
      return self._ok, self._kind, self._code
    elseif fast and self._n == 0 then
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
      local data, n = nil, self._n
      if n > 0 then
        data = (n == 1) and self._q[1] or concat(self._q, "", 1, n)
        self._q, self._n = {}, 0
      end
      local ok, msg, code = turn(self, cb, cstep(c, data, self._eof))
      if not ok then return nil, msg, code end
      fast = (msg == 1)
    end
  end
end

return M
