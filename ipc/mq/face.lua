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
local type, select, pcall = type, select, pcall
local format = string.format
local toint = math.tointeger or function(x) return x end  -- 5.3+: 3.0 -> 3

local py_open, py_send, py_receive, py_close, py_count =
      core.open, core.send, core.receive, core.close, core.count
local PRIORITY_MAX = core.PRIORITY_MAX
local FOREVER = core.FOREVER  -- a longer timeout waits forever (ipc/_timeout.py)

-- A handle's state: the Python handle `q`, the queue's message size, and
-- posix_ipc's own bound send/receive (the fast path).
local M = {}
local methods = {}
local new, STATE  -- S.class, below the methods (it reads them)

-- The state of an open queue; an error for anything else.
local function check(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.mq", self) end
  if st.closed then S.error("attempt to use a closed message queue") end
  return st
end

-- Absent or negative: nil (block); 0: try once; t: wait at most t seconds.
local function timeout(t, n) return S.timeout(t, n, FOREVER) end

function M.open(...)
  local name, maxmsg, msgsize = ...
  if type(name) ~= "string" then name = S.checkstring(name, 1, select("#", ...) < 1) end
  maxmsg = S.optinteger(maxmsg, 2)
  msgsize = S.optinteger(msgsize, 3)
  if maxmsg and maxmsg < 1 then S.argerror(2, "maxmsg must be positive") end
  if msgsize and msgsize < 1 then S.argerror(3, "msgsize must be positive") end
  -- (toint gives nil past 2^63: the float goes on, and the kernel refuses it)
  local q, size, cap, send, receive = S.call(py_open, name,
                                            maxmsg and (toint(maxmsg) or maxmsg),
                                            msgsize and (toint(msgsize) or msgsize))
  if not q then return nil, size, cap end           -- nil, message, errno
  return new { q = q, size = size, send = send, receive = receive, closed = false }
end

function methods.send(self, ...)
  local msg, t, prio = ...
  local st = check(self)
  if type(msg) ~= "string" then msg = S.checkstring(msg, 2, select("#", ...) < 1) end
  if #msg > st.size then
    S.argerror(2, format("message of %d bytes exceeds the queue's msgsize %d",
                         #msg, st.size))
  end
  t = timeout(t, 3)
  if prio == nil then
    prio = 0
  else
    prio = S.checkinteger(prio, 4)
    if prio < 0 or prio > PRIORITY_MAX then
      S.argerror(4, format("priority out of range 0..%d", PRIORITY_MAX))
    end
    prio = toint(prio)
  end
  if pcall(st.send, msg, nil, prio) then return true end
  local sus, q = S.suspend, st.q                     -- set by ipc.loop (its face)
  if sus then
    local handled, ok, m, e = sus("mq", q, true, t,
                                  function() return S.call(py_send, q, msg, 0, prio) end)
    if handled then return ok, m, e end
  end
  return S.call(py_send, q, msg, t, prio)            -- full (or an error)
end

local function received(ok, ...)
  if ok then return ... end
  return nil
end

function methods.receive(self, t)
  local st = check(self)
  t = timeout(t, 2)
  local data, prio = received(pcall(st.receive))
  if data then return data, prio end
  local sus, q = S.suspend, st.q                     -- set by ipc.loop (its face)
  if sus then
    local handled, a, b, c = sus("mq", q, false, t,
                                 function() return S.call(py_receive, q, 0) end)
    if handled then return a, b, c end
  end
  return S.call(py_receive, q, t)                    -- empty (or an error)
end

-- Not in the issue, but cheap and handy: how many messages wait now.
function methods.count(self)
  return S.call(py_count, check(self).q)
end

function methods.close(self)
  local st = STATE[self]
  if st == nil then S.typeerror(1, "ipc.mq", self) end
  if not st.closed then
    local q = st.q
    st.closed, st.q, st.send, st.receive = true, nil, nil, nil
    S.call(py_close, q)          -- the creator's close removes the name
  end
  return true
end

new, STATE = S.class("ipc.mq", methods)

return S.module(M)
