-- The Lua half of the hostile-input fuzz (driven by fuzz_child.py).
--
-- Finds every function of every ipc module and every method of every handle
-- kind by itself (module tables, and the handles' metatables through
-- debug.getmetatable), builds the odd values the fuzz passes (handles live
-- and closed, files, functions, coroutines, tables, proc.EOF), calls a
-- target with pcall and judges what came back:
--   * an error must be a string (or the one table a fuzz callback raises);
--   * a failure returned as values must be nil, message (string) [, errno
--     (a positive integer)];
--   * no Python object may come back as a userdata (proc.EOF, Lua files and
--     our handles are the only userdata allowed).
-- Calls that could legitimately block forever are made harmless first: a
-- semaphore about to be decremented is incremented, a queue about to be
-- read gets a message, one about to be written to is emptied by one.
-- A linda about to be received from gets a value in its keys, one about to
-- be sent to loses its limit, and a blocked lane gets the value it waits for
-- before it is joined.  Lanes are real processes: the live ones come from one
-- pool kept for the whole run (its lanes end at once, and are joined before
-- they are closed, so its process lives on), a generator that a call made is
-- called at most once per example, and `shutdown` closes it all at the end.
-- Names become PREFIX .. name and paths lose their "/" (they are relative
-- to the fuzz's own working directory), so nothing outside the fuzz's own
-- objects and files can be touched, and leftovers are found by name.
local PREFIX, WORKDIR, NAMELOG = ...
local MODS = { "shm", "sem", "mmap", "filelock", "proc", "strfile", "mq", "loop", "linda",
               "lanes" }
local M = {}
for _, m in ipairs(MODS) do M[m] = require("ipc." .. m) end
local EOF = M.proc.EOF
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
local names_seen = {}

local function noop() end
-- What live lanes run (no upvalues: they cross to the lane's process).
local function quick() return 1, "two" end
local function block(l) return l:receive("go") end

-- The kind ("shm"...) of one of our handles: a userdata whose metatable is
-- named "ipc.<kind>" (lupa's Python objects are named "POBJECT" on 5.3+).
local function handle_kind(v)
  if type(v) ~= "userdata" then return nil end
  local mt = debug.getmetatable(v)
  local name = mt and rawget(mt, "__name")
  return type(name) == "string" and name:match("^ipc%.(.+)$") or nil
end
local CBERR = setmetatable({}, { __tostring = function() return "fuzz callback error" end })

-- -- live handles -------------------------------------------------------------
local counter = 0
local function fresh(tag)
  counter = counter + 1
  local n = PREFIX .. tag .. counter
  names_seen[n] = true
  return n
end

local MAKERS = {
  shm = function() return M.shm.create(fresh("h"), 4096) end,
  sem = function() return M.sem.open(fresh("s"), 1) end,
  mq = function() return M.mq.open(fresh("q"), 4, 64) end,
  mmap = function() return M.mmap.open(WORKDIR .. "/data", "rw") end,
  mmap_r = function() return M.mmap.open(WORKDIR .. "/data", "r") end,
  mmap_w = function() return M.mmap.open(WORKDIR .. "/data", "w") end,
  -- big enough for the copies through Lua's C API (64 KiB and more)
  shm_big = function() return M.shm.create(fresh("h"), 262144) end,
  mmap_big = function() return M.mmap.open(WORKDIR .. "/big", "rw") end,
  strfile = function() return M.strfile.open("hello\nworld\r\n12 0x1F -3.5e2 nan\n\0bin") end,
  proc = function()
    return M.proc.spawn("echo out; echo err >&2; exit 3",
                        { stdin = true, stdout = true, stderr = true, callback = noop })
  end,
  proc_plain = function() return M.proc.spawn("true", {}) end,
  loop = function() return M.loop.spawn(noop) end,
  linda = function() return M.linda.new() end,
  ["lanes.pool"] = function() return M.lanes.pool(1) end,
}

-- Lanes.  SHARED: the pool of the live lanes, made on first use; its lanes
-- are joined before they are closed (closing a running lane kills its
-- process, which the pool would then start again).  BLOCKED: lane -> the
-- linda its lane waits on (a value "go" ends it).
local SHARED, SHARED_LANES, BLOCKED = nil, setmetatable({}, { __mode = "k" }),
                                      setmetatable({}, { __mode = "k" })
function MAKERS.lane()
  if not SHARED then SHARED = assert(M.lanes.pool(1)) end
  local h, msg = SHARED:gen(quick)()
  if h then SHARED_LANES[h] = true end
  return h, msg
end
function MAKERS.lane_block()
  local l = assert(M.linda.new())
  local h, msg = M.lanes.gen(block)(l)
  if not h then l:close(); return nil, msg end
  BLOCKED[h] = l
  return h, msg
end

-- Ends a lane without killing what need not be killed.
local function retire(h)
  local l = BLOCKED[h]
  if l then pcall(l.send, l, "go", true) end
  if SHARED_LANES[h] or l then pcall(h.join, h, 10) end
  pcall(h.close, h)
  if l then pcall(l.close, l) end
end

-- Every method of every handle kind, found from the handles themselves.
local TARGETS = {}
local function add(id, fn, kind, mod)
  TARGETS[#TARGETS + 1] = { id = id, fn = fn, method = kind == "method", mod = mod }
end
for _, m in ipairs(MODS) do
  local keys = {}
  for k, v in pairs(M[m]) do
    -- (not the faces' hooks for each other and for a lane's process:
    -- lanes._serve is that process's main loop, which waits for jobs)
    if type(v) == "function" and k:sub(1, 1) ~= "_" then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do add(m .. "." .. k, M[m][k], "func", m) end
end
-- A class with an `index` hook (S.class: a lane's h[i] and h.status) has a
-- function for __index: its methods are that function's upvalue `methods`.
local function methods_of(mt)
  local idx = mt.__index
  if type(idx) == "table" then return idx end
  for i = 1, math.huge do
    local name, v = debug.getupvalue(idx, i)
    if name == nil then return {} end
    if name == "methods" and type(v) == "table" then return v end
  end
end
-- (indexing a value that is not a handle is no call of ours: not fuzzed)
local function hooked(h)
  if not handle_kind(h) then error("not a handle: not fuzzed") end
  return h
end
local function status(h) return hooked(h).status end
local function index(h, k) return hooked(h)[k] end
for _, m in ipairs({ "shm", "sem", "mq", "mmap", "strfile", "proc", "loop", "linda", "lane",
                     "lanes.pool" }) do
  local h = assert(MAKERS[m]())
  local mt = debug.getmetatable(h)
  local methods = methods_of(mt)
  local keys = {}
  for k, v in pairs(methods) do if type(v) == "function" then keys[#keys + 1] = k end end
  for _, k in ipairs({ "__tostring", "__close" }) do
    if mt[k] then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do add(m .. ":" .. k, methods[k] or mt[k], "method", m) end
  if type(mt.__index) == "function" then          -- what the hook answers
    add(m .. ":status", status, "method", m)
    add(m .. ":index", index, "method", m)
  end
  if m == "lane" then retire(h) elseif h.close then pcall(h.close, h) end
end

-- -- the odd values ------------------------------------------------------------
local env        -- per example: name -> value, made on first use
local handles    -- per example: everything to close afterwards

local SPECIAL = {
  t_empty = function() return {} end,
  t_seq = function() return { 1, "two", 3.5, {} } end,
  s_big = function() return string.rep("\0\255x", 23334) end,   -- 70,002 bytes
  t_opts_pipe = function() return { stdout = true, stderr = true, stdin = true, callback = noop } end,
  t_opts_cberr = function()
    return { stdout = true, callback = function() error("callback failed") end }
  end,
  t_opts_cbtable = function() return { stdout = true, callback = function() error(CBERR) end } end,
  t_opts_cbyield = function() return { stdout = true, callback = function() coroutine.yield() end } end,
  t_opts_nocb = function() return { stdout = true } end,
  t_opts_file = function() return { stdout = env.get("file"), stdin = env.get("file_closed") } end,
  t_opts_junk = function() return { stdin = 5, stdout = "x", stderr = {}, callback = 7 } end,
  t_meta = function()
    return setmetatable({}, { __index = function() error("trap") end,
                              __tostring = function() return "trap" end })
  end,
  f_noop = function() return noop end,
  f_error = function() return function() error("boom") end end,
  f_yield = function() return function() coroutine.yield(1) end end,
  co = function() return coroutine.create(function() coroutine.yield() end) end,
  co_dead = function() local c = coroutine.create(noop); coroutine.resume(c); return c end,
  co_running = function() return coroutine.running() end,
  file = function()
    local f = assert(io.open(WORKDIR .. "/data", "r+b"))
    handles[#handles + 1] = f
    return f
  end,
  file_ro = function()
    local f = assert(io.open(WORKDIR .. "/data", "rb"))
    handles[#handles + 1] = f
    return f
  end,
  file_closed = function() local f = assert(io.open(WORKDIR .. "/data", "rb")); f:close(); return f end,
  eof = function() return EOF end,
  huge = function() return math.huge end,
  ninf = function() return -math.huge end,
  nan = function() return 0 / 0 end,
  maxint = function() return math.maxinteger or 2^53 end,
  minint = function() return math.mininteger or -2^53 end,
}

local function get(key)
  local v = env.values[key]
  if v ~= nil or env.made[key] then return v end
  local live, mod = key:match("^(l)ive_(.+)$")
  local closed, cmod = key:match("^(c)losed_(.+)$")
  if live and MAKERS[mod] then
    local h, msg = MAKERS[mod]()
    assert(h, msg)
    handles[#handles + 1] = h
    v = h
  elseif closed and MAKERS[cmod] then
    local h = assert(MAKERS[cmod]())
    if handle_kind(h) == "lane" then retire(h)
    elseif h.close then h:close()
    elseif h.cancel then h:cancel()               -- a task: ended
    else h:wait() end                             -- a process: reaped, so invalid
    v = h
  elseif SPECIAL[key] then
    v = SPECIAL[key]()
  end
  env.values[key], env.made[key] = v, true
  return v
end

-- begin(true) for the sweep: it checks arguments, and a generator is not
-- called (each call is a process: the random examples call a few).
local function begin(sweep)
  env = { values = {}, made = {}, get = get, results = {}, gen_called = sweep or nil }
  handles = {}
end

local function finish_example()
  for i = #handles, 1, -1 do
    local h = handles[i]
    if io.type(h) == "file" then pcall(h.close, h)
    elseif handle_kind(h) == "lane" then retire(h)
    elseif handle_kind(h) and h.close then pcall(h.close, h) end
  end
  env, handles = nil, nil
end

-- -- sanitising -----------------------------------------------------------------
local NAMED = { ["shm.create"] = 1, ["shm.attach"] = 1, ["sem.open"] = 1, ["mq.open"] = 1,
                ["linda.new"] = 1, ["linda.open"] = 1, ["linda.create"] = 1,
                ["lanes.linda"] = 1 }

-- Whether a timeout argument of a linda or a lane (S.timeout's rule: nil,
-- negative, huge or a numeric string like "1e999" is forever) lets a call
-- wait long.
local function waits(t)
  return not (type(t) == "number" and t >= 0 and t <= 0.05)
end
local PATHS = { ["mmap.open"] = 1 }

local function sanitize(t, a)
  local id = t.id
  local v = a[1]
  if NAMED[id] and (type(v) == "string" or type(v) == "number") then
    a[1] = PREFIX .. tostring(v)
    names_seen[a[1]] = true
  elseif PATHS[id] and type(v) == "string" then
    a[1] = (v:gsub("/", "_"))
  elseif id == "proc.spawn" and type(v) == "string" then
    -- never a random shell command: a comment after `true`
    a[1] = "true #" .. v:gsub("[\n\r]", " ")
  end
  if id == "loop.sleep" and type(v) == "number" and v > 0.01 then
    a[1] = 0.01                       -- a sleep is no fault: keep it short
  end
  if id == "lanes.pool" and tonumber(v) and tonumber(v) > 2 then
    a[1] = 2                          -- a pool of 2^53 processes is the caller's wish
  end
  local self = a[1]
  if not t.method or not handle_kind(self) then return end
  -- calls that could block forever are made non-blocking first
  local okmt, mt = pcall(debug.getmetatable, self)
  local tn = okmt and mt and mt.__name
  if tn == "ipc.sem" and (id == "sem:dec" or id == "sem:scope") then
    pcall(self.inc, self)
  elseif tn == "ipc.mq" and id == "mq:receive" then
    pcall(self.send, self, "unblock", 0)
  elseif tn == "ipc.mq" and id == "mq:send" then
    local ok, c = pcall(self.count, self)
    if ok and type(c) == "number" and c >= 4 then pcall(self.receive, self, 0) end
  elseif tn == "ipc.linda" and (id == "linda:receive" or id == "linda:receive_batched"
                                or id == "linda:send") then
    -- l:f([timeout,] key...): a number or nil first is the timeout
    local k0 = 2
    if a.n >= 2 and (a[2] == nil or type(a[2]) == "number") then
      if not waits(a[2]) then return end
      k0 = 3
    end
    if id == "linda:send" then
      pcall(self.limit, self, a[k0], "unlimited")
    elseif id == "linda:receive" then
      for j = k0, a.n do pcall(self.set, self, a[j], "unblock") end
    else
      local least = tonumber(a[k0 + 1])
      if least and least >= 1 and least <= 64 and least % 1 == 0 then
        local vs = {}
        for j = 1, least do vs[j] = j end
        pcall(self.set, self, a[k0], unpack(vs, 1, least))
      elseif k0 == 3 then                 -- it could never be met: no wait
        a[2] = 0
      else
        table.insert(a, 2, 0)
        a.n = a.n + 1
      end
    end
  elseif tn == "ipc.lane" and BLOCKED[self] and (id == "lane:join" or id == "lane:index") then
    local l = BLOCKED[self]
    pcall(l.send, l, "go", true)
  end
end

-- -- judging ------------------------------------------------------------------------
local function judge(r)
  if not r[1] then
    local e = r[2]
    if rawequal(e, CBERR) then return "cberr", "" end
    if type(e) ~= "string" then return "bad", "non-string error: " .. type(e) .. " " .. tostring(e) end
    return "error", e
  end
  for i = 2, r.n do
    local v = r[i]
    if type(v) == "userdata" and not rawequal(v, EOF) and not io.type(v)
       and not handle_kind(v) then
      return "bad", "returned a userdata (a Python object?) at #" .. (i - 1) .. ": " .. tostring(v)
    end
  end
  if r.n >= 3 and r[2] == nil then
    if type(r[3]) ~= "string" then
      return "bad", "nil followed by a " .. type(r[3]) .. " instead of a message"
    end
    local code = r[4]
    if r.n >= 4 and code ~= nil and (type(code) ~= "number" or code <= 0 or code % 1 ~= 0) then
      return "bad", "errno is not a positive integer: " .. tostring(code)
    end
    if r.n > 4 then return "bad", "more than nil, message, errno" end
    return "fail", r[3] .. (code and (" [" .. tostring(code) .. "]") or "")
  end
  return "ok", ""
end

-- call(i, n, ...): target i with n arguments; string args "\1SPECIAL:key" are
-- fetched from the example's values (so Python never holds Lua handles).
local function call(i, n, ...)
  local t = TARGETS[i]
  local a = pack(...)
  a.n = n
  for k = 1, n do
    local v = a[k]
    if type(v) == "string" and v:sub(1, 9) == "\1SPECIAL:" then
      local key = v:sub(10)
      if key:match("^result%d+$") then a[k] = env.results[tonumber(key:sub(7))]
      elseif key ~= "" then a[k] = get(key) end
    end
  end
  sanitize(t, a)
  n = a.n
  local r = pack(pcall(t.fn, unpack(a, 1, n)))
  -- handles a call made are usable by the next calls of the example
  local function keep(rr)
    if rr[1] and handle_kind(rr[2]) then
      env.results[#env.results + 1] = rr[2]
      handles[#handles + 1] = rr[2]
    end
  end
  keep(r)
  -- a generator is called too, with the same arguments, at most once per
  -- example (each of its lanes is a process)
  if (t.id == "lanes.gen" or t.id == "lanes.pool:gen") and r[1] and type(r[2]) == "function"
     and not env.gen_called then
    env.gen_called = true
    local r2 = pack(pcall(r[2], unpack(a, 1, n)))
    keep(r2)
    local kind, detail = judge(r2)
    if kind == "bad" then return kind, "the generator: " .. detail end
  end
  return judge(r)
end

-- At the end of the run: the pool of the live lanes.
local function shutdown()
  if SHARED then pcall(SHARED.close, SHARED); SHARED = nil end
end

local function targets()
  local out = {}
  for i, t in ipairs(TARGETS) do out[i] = t.id end
  return out
end

local function names()
  local out = {}
  for n in pairs(names_seen) do out[#out + 1] = n end
  return out
end

local function special_keys()
  local out = {}
  for k in pairs(SPECIAL) do out[#out + 1] = k end
  for m in pairs(MAKERS) do out[#out + 1] = "live_" .. m; out[#out + 1] = "closed_" .. m end
  table.sort(out)
  return out
end

return { call = call, begin = begin, finish = finish_example, targets = targets,
         names = names, specials = special_keys, count = #TARGETS, shutdown = shutdown }
