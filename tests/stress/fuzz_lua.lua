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
-- Names become PREFIX .. name and paths lose their "/" (they are relative
-- to the fuzz's own working directory), so nothing outside the fuzz's own
-- objects and files can be touched, and leftovers are found by name.
local PREFIX, WORKDIR, NAMELOG = ...
local MODS = { "shm", "sem", "mmap", "filelock", "proc", "strfile", "mq", "loop" }
local M = {}
for _, m in ipairs(MODS) do M[m] = require("ipc." .. m) end
local EOF = M.proc.EOF
local pack = table.pack or function(...) return { n = select("#", ...), ... } end
local unpack = table.unpack or unpack
local names_seen = {}

local function noop() end

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
  strfile = function() return M.strfile.open("hello\nworld\r\n12 0x1F -3.5e2 nan\n\0bin") end,
  proc = function()
    return M.proc.spawn("echo out; echo err >&2; exit 3",
                        { stdin = true, stdout = true, stderr = true, callback = noop })
  end,
  proc_plain = function() return M.proc.spawn("true", {}) end,
  loop = function() return M.loop.spawn(noop) end,
}

-- Every method of every handle kind, found from the handles themselves.
local TARGETS = {}
local function add(id, fn, kind, mod)
  TARGETS[#TARGETS + 1] = { id = id, fn = fn, method = kind == "method", mod = mod }
end
for _, m in ipairs(MODS) do
  local keys = {}
  for k, v in pairs(M[m]) do if type(v) == "function" then keys[#keys + 1] = k end end
  table.sort(keys)
  for _, k in ipairs(keys) do add(m .. "." .. k, M[m][k], "func", m) end
end
for _, m in ipairs({ "shm", "sem", "mq", "mmap", "strfile", "proc", "loop" }) do
  local h = assert(MAKERS[m]())
  local mt = debug.getmetatable(h)
  local keys = {}
  for k, v in pairs(mt.__index) do if type(v) == "function" then keys[#keys + 1] = k end end
  for _, k in ipairs({ "__tostring", "__close" }) do
    if mt[k] then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do add(m .. ":" .. k, mt.__index[k] or mt[k], "method", m) end
  if h.close then pcall(h.close, h) end
end

-- -- the odd values ------------------------------------------------------------
local env        -- per example: name -> value, made on first use
local handles    -- per example: everything to close afterwards

local SPECIAL = {
  t_empty = function() return {} end,
  t_seq = function() return { 1, "two", 3.5, {} } end,
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
    if h.close then h:close()
    elseif h.cancel then h:cancel()               -- a task: ended
    else h:wait() end                             -- a process: reaped, so invalid
    v = h
  elseif SPECIAL[key] then
    v = SPECIAL[key]()
  end
  env.values[key], env.made[key] = v, true
  return v
end

local function begin()
  env = { values = {}, made = {}, get = get, results = {} }
  handles = {}
end

local function finish_example()
  for i = #handles, 1, -1 do
    local h = handles[i]
    if io.type(h) == "file" then pcall(h.close, h)
    elseif handle_kind(h) and h.close then pcall(h.close, h) end
  end
  env, handles = nil, nil
end

-- -- sanitising -----------------------------------------------------------------
local NAMED = { ["shm.create"] = 1, ["shm.attach"] = 1, ["sem.open"] = 1, ["mq.open"] = 1 }
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
  local r = pack(pcall(t.fn, unpack(a, 1, n)))
  -- handles a call made are usable by the next calls of the example
  if r[1] and handle_kind(r[2]) then
    env.results[#env.results + 1] = r[2]
    handles[#handles + 1] = r[2]
  end
  return judge(r)
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
         names = names, specials = special_keys, count = #TARGETS }
