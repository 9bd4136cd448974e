-- ipc.mq: named POSIX message queues, in the style of ipc.sem.
--
--   mq.open(name [, maxmsg [, msgsize]]) ==> handle
--   h:send(msg [, timeout [, priority]])  ==> true / false (timed out, full)
--   h:receive([timeout])                  ==> msg, priority / false (timed out)
--   h:close()                             ==> true
--
-- Runs unchanged on Lua 5.1-5.5 and LuaJIT.  Arguments are checked here, in
-- Lua, so the hot path is one pcall of posix_ipc's own bound send/receive
-- (the queue's descriptor never blocks: a full or empty queue fails at
-- once); only then does ipc/mq/lua.py wait, or report the error.
local S, core = ...
local type, pcall, tostring, rawget = type, pcall, tostring, rawget
local format = string.format
local toint = math.tointeger or function(x) return x end  -- 5.3+: 3.0 -> 3

local py_open, py_send, py_receive, py_close, py_count =
      core.open, core.send, core.receive, core.close, core.count
local PRIORITY_MAX = core.PRIORITY_MAX
local FOREVER = 1e9      -- a longer timeout waits forever (as in the Python API)

-- Private keys of the handle table: the Python handle (false once
-- closed), the queue's message size and capacity, the bound send/receive.
local Q, SIZE, CAP, SEND, RECV = {}, {}, {}, {}, {}

local M = {}
local methods = {}
local MQ          -- the metatable, made below once every method exists

local function bad_self(fname, self)
  S.error(format("calling '%s' on bad self (ipc.mq expected, got %s)", fname,
                 type(self)))
end

-- The Python handle of an open queue; an error for anything else.
local function check(self, fname)
  if type(self) ~= "table" then bad_self(fname, self) end
  local q = rawget(self, Q)
  if q then return q end
  if q == false then S.error("attempt to use a closed message queue") end
  bad_self(fname, self)
end

-- Absent or negative: nil (block); 0: try once; t: wait at most t seconds.
local function timeout(t, n, fname)
  if t == nil then return nil end
  if type(t) ~= "number" then t = S.checknumber(t, n, fname) end
  if t ~= t then S.argerror(n, fname, "timeout is NaN") end
  if t < 0 or t > FOREVER then return nil end
  return t
end

function M.open(name, maxmsg, msgsize)
  if type(name) ~= "string" then name = S.checkstring(name, 1, "open", name == nil) end
  maxmsg = S.optinteger(maxmsg, 2, "open")
  msgsize = S.optinteger(msgsize, 3, "open")
  if maxmsg and maxmsg < 1 then S.argerror(2, "open", "maxmsg must be positive") end
  if msgsize and msgsize < 1 then S.argerror(3, "open", "msgsize must be positive") end
  -- (toint gives nil past 2^63: the float goes on, and the kernel refuses it)
  local q, size, cap, send, receive = S.call(py_open, name,
                                            maxmsg and (toint(maxmsg) or maxmsg),
                                            msgsize and (toint(msgsize) or msgsize))
  if not q then return nil, size, cap end           -- nil, message, errno
  return S.new(MQ, { [Q] = q, [SIZE] = size, [CAP] = cap, [SEND] = send, [RECV] = receive })
end

function methods.send(self, msg, t, prio)
  local q = check(self, "send")
  if type(msg) ~= "string" then msg = S.checkstring(msg, 1, "send", msg == nil) end
  if #msg > self[SIZE] then
    S.argerror(1, "send", format("message of %d bytes exceeds the queue's msgsize %d",
                                 #msg, self[SIZE]))
  end
  t = timeout(t, 2, "send")
  if prio == nil then
    prio = 0
  else
    prio = S.checkinteger(prio, 3, "send")
    if prio < 0 or prio > PRIORITY_MAX then
      S.argerror(3, "send", format("priority out of range 0..%d", PRIORITY_MAX))
    end
    prio = toint(prio)
  end
  if pcall(self[SEND], msg, nil, prio) then return true end
  return S.call(py_send, q, msg, t, prio)            -- full (or an error)
end

local function received(ok, ...)
  if ok then return ... end
  return nil
end

function methods.receive(self, t)
  local q = check(self, "receive")
  local data, prio = received(pcall(self[RECV]))
  if data then return data, prio end
  return S.call(py_receive, q, timeout(t, 1, "receive"))   -- empty (or an error)
end

-- Not in the issue, but cheap and handy: how many messages wait now.
function methods.count(self)
  return S.call(py_count, check(self, "count"))
end

function methods.close(self)
  if type(self) ~= "table" or rawget(self, Q) == nil then bad_self("close", self) end
  local q = self[Q]
  if q then
    self[Q], self[SEND], self[RECV] = false, nil, nil
    S.call(py_close, q)          -- the creator's close removes the name
  end
  return true
end

local function state(self)
  if rawget(self, Q) == false then return "closed" end
end

-- After the methods: S.class gives <close> only if `close` exists.
MQ = S.class("ipc.mq", methods, state)

return M
