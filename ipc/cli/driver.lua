-- The Lua half of the luaipc interpreter: lua.c's pmain, docall, msghandler,
-- dolibrary and doREPL, so scripts see exactly what the `lua` command gives.
-- The Python half (luaipc.py) parses the command line and calls these.
local progname, readline, version = ...

local D = {}
local type, tostring, select, xpcall, error = type, tostring, select, xpcall, error
local traceback, rawmetatable = debug.traceback, debug.getmetatable
local unpack = table.unpack or unpack
local load = loadstring or load          -- 5.1 and LuaJIT: loadstring(s, name)
local stderr, stdout = io.stderr, io.stdout

-- lua.c's msghandler: a non-string error object uses its __tostring (and no
-- traceback), else "(error object is a X value)"; strings get a traceback.
local function msghandler(msg)
  if type(msg) ~= "string" and type(msg) ~= "number" then
    local mt = rawmetatable(msg)
    local ts = mt and mt.__tostring
    if ts then
      local s = ts(msg)
      if type(s) == "string" then return s end
    end
    msg = ("(error object is a %s value)"):format(type(msg))
  end
  -- The frames below the script are this driver's: show lua's "[C]: in ?".
  local lines = {}
  for line in (traceback(tostring(msg), 2) .. "\n"):gmatch("(.-)\n") do
    if line:find("[luaipc]", 1, true) then
      while #lines > 1 and lines[#lines]:find("^\t%[C%]") or
            lines[#lines]:find("^\t%(tail call%)") do
        lines[#lines] = nil
      end
      lines[#lines + 1] = "\t[C]: in ?"
      break
    end
    lines[#lines + 1] = line
  end
  return table.concat(lines, "\n")
end

-- Lua 5.1's xpcall passes no arguments to the function; the others do.
local xpcall_passes_args = select(2, xpcall(function(x) return x end, msghandler, true))

local function docall(f, ...)
  if xpcall_passes_args then return xpcall(f, msghandler, ...) end
  local n, args = select("#", ...), { ... }
  return xpcall(function() return f(unpack(args, 1, n)) end, msghandler)
end

local function message(msg, name)
  if name then stderr:write(name, ": ") end
  stderr:write(tostring(msg), "\n")
  stderr:flush()
end

local function report(ok, msg)
  if not ok then message(msg, progname) end
  return ok
end

function D.setargs(list, script)
  local t = {}
  for i = 1, #list do t[i - 1 - script] = list[i] end
  arg = t
end

function D.version() stdout:write(version, "\n") stdout:flush() end

function D.dostring(src, chunkname)
  local f, err = load(src, chunkname)
  if not f then return report(false, err) end
  return report(docall(f))
end

-- `-l mod` and `-l g=mod` (and `-l mod-v2` requires "mod-v2" into "mod").
function D.dolibrary(spec)
  local globname, modname = spec:match("^([^=]*)=(.*)$")
  if not globname then
    modname = spec
    globname = spec:match("^([^%-]*)%-") or spec
  end
  local ok, res = docall(require, modname)
  if ok then _G[globname] = res end
  return report(ok, res)
end

-- A script file (nil: standard input), called with arg[1] .. arg[#arg].
function D.script(fname)
  local f, err = loadfile(fname)
  if not f then return report(false, err) end
  if type(arg) ~= "table" then return report(false, "'arg' is not a table") end
  return report(docall(f, unpack(arg, 1, #arg)))
end

function D.dofile(fname)
  local f, err = loadfile(fname)
  if not f then return report(false, err) end
  return report(docall(f))
end

local function pack(...) return { n = select("#", ...), ... } end

local function incomplete(msg)
  return msg:find("<eof>'?$") ~= nil     -- 5.1 quotes the mark: '<eof>'
end

-- The interactive loop: "return <line>" first, so `1+1` prints 2; more
-- lines while the chunk is incomplete; errors printed without a name.
function D.repl()
  while true do
    local line = readline(tostring(_PROMPT or "> "))
    if not line then break end
    line = line:gsub("^=", "return ")      -- 5.1/5.2 idiom, kept everywhere
    local f, err = load("return " .. line, "=stdin")
    if not f then
      local buf = line
      while true do
        f, err = load(buf, "=stdin")
        if f or not incomplete(err) then break end
        local more = readline(tostring(_PROMPT2 or ">> "))
        if not more then break end
        buf = buf .. "\n" .. more
      end
    end
    if f then
      local res = pack(docall(f))
      if res[1] and res.n > 1 then
        local ok, perr = pcall(print, unpack(res, 2, res.n))
        if not ok then message("error calling 'print' (" .. tostring(perr) .. ")") end
      elseif not res[1] then
        message(res[2])
      end
    else
      message(err)
    end
  end
  stdout:write("\n")
  stdout:flush()
end

return D
