-- What lupa's PUC-Lua builds lack because they are compiled without
-- LUA_USE_POSIX: io.popen, os.execute's decoded status, os.tmpname with
-- mkstemp.  LuaJIT has all three natively and is left alone.
local core = ...
if jit then return end
local cpopen, cpath, copened, cwait, ctmpname =
      core.popen, core.path, core.opened, core.wait, core.tmpname

local type, tostring, select, setmetatable, error = type, tostring, select, setmetatable, error
local io_open, io_type, floor = io.open, io.type, math.floor
local lua51 = _VERSION == "Lua 5.1"

-- os.execute: the raw wait status becomes true|nil, "exit"|"signal", code.
if not lua51 then
  local execute = os.execute
  os.execute = function(...)
    if select("#", ...) == 0 then return execute() end
    local ok, what, stat = execute(...)
    if what ~= "exit" or type(stat) ~= "number" then return ok, what, stat end
    local sig = stat % 128
    if sig ~= 0 then return nil, "signal", sig end
    local code = floor(stat / 256)
    return (code == 0 and true or nil), "exit", code
  end
end

os.tmpname = function() return ctmpname() end

-- io.popen: a real Lua file on the child's pipe (via /dev/fd), inside a
-- proxy whose close() reaps the child and returns its status (5.2+).
local popen_files = setmetatable({}, { __mode = "k" })
local methods = {}
local mt = { __index = methods, __name = "FILE*" }

local function real(self)
  local f = popen_files[self]
  if not f then error("bad argument #1 (FILE* expected)", 3) end
  return f
end

for _, name in ipairs({ "write", "lines", "flush", "seek", "setvbuf" }) do
  methods[name] = function(self, ...)
    local f = real(self)
    local r1, r2, r3 = f[name](f, ...)
    if r1 == f then return self end            -- write returns the file
    return r1, r2, r3
  end
end
function methods.read(self, ...)   -- any number of results
  local f = real(self)
  return f:read(...)
end

function methods.close(self)
  local f = real(self)
  if io_type(f) == "closed file" then error("attempt to use a closed file", 2) end
  f:close()
  local child = self.child
  self.child = nil
  if lua51 then cwait(child) return true end
  return cwait(child)
end

mt.__tostring = function(self)
  local f = popen_files[self]
  return f and tostring(f) or "file (closed)"
end
-- No __gc: it would call Python while lupa closes the state (a crash at
-- exit).  A collected proxy releases its Lua file (io's own __gc closes it)
-- and its Popen object, which reaps the child without waiting.
mt.__close = function(self)
  local f = popen_files[self]
  if f and io_type(f) == "file" then methods.close(self) end
end

io.popen = function(prog, mode)
  if type(prog) ~= "string" and type(prog) ~= "number" then
    error("bad argument #1 to 'popen' (string expected, got " ..
          (prog == nil and "no value" or type(prog)) .. ")", 2)
  end
  mode = mode or "r"
  if mode ~= "r" and mode ~= "w" then
    error("bad argument #2 to 'popen' (invalid mode)", 2)
  end
  local child, msg, errno = cpopen(tostring(prog), mode)
  if not child then return nil, msg, errno end      -- as luaL_fileresult says it
  local f, err, code = io_open(cpath(child), mode)
  copened(child)
  if not f then cwait(child) return nil, err, code end
  local p = setmetatable({ child = child }, mt)
  popen_files[p] = f
  return p
end

-- io.type knows the proxies.
io.type = function(obj)
  local f = popen_files[obj]
  if f then return io_type(f) end
  return io_type(obj)
end
