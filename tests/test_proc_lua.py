"""ipc.proc from Lua, on every engine: real children, real pipes."""
from __future__ import annotations

import re
import sys
import time

import psutil
import pytest
from helpers.children import ctrl_c, pid_gone, read_line, spawn_luaipc
from helpers.lua import run, run_one
from helpers.proc import FLOOD

pytestmark = pytest.mark.timeout(120)

PY = sys.executable.encode()
#: The first line of every chunk run here.
PROC = 'local proc = require "ipc.proc"\n'


def b(s: str) -> bytes:
    return s.encode()


# -- output -------------------------------------------------------------------

COLLECT = """
  local got = { stdout = {}, stderr = {} }
  local order = {}
  local function cb(stream, data, msg, errno)
    assert(data, msg)
    local t = got[stream]
    t[#t + 1] = data
    order[#order + 1] = stream
  end
"""


def test_stdout_only(lua):
    r = run(lua, PROC + COLLECT + """
      local h = assert(proc.spawn("printf 'one\\ntwo\\n'", { stdout = true, callback = cb }))
      local ok, kind, code = h:wait()
      return ok, kind, code, table.concat(got.stdout), #got.stderr
    """)
    assert r == (True, b"exit", 0, b"one\ntwo\n", 0)


def test_stderr_only(lua):
    r = run(lua, PROC + COLLECT + """
      local h = assert(proc.spawn("echo oops >&2; echo quiet", { stderr = true, stdout = false, callback = cb }))
      local ok, kind, code = h:wait()
      return ok, kind, code, table.concat(got.stderr), #got.stdout
    """)
    # stdout is inherited (not captured here): only stderr reaches the callback
    assert r == (True, b"exit", 0, b"oops\n", 0)


def test_stdout_and_stderr(lua):
    r = run(lua, PROC + COLLECT + """
      local h = assert(proc.spawn("echo out; echo err >&2; echo out2; exit 5",
                                  { stdout = true, stderr = true, callback = cb }))
      local ok, kind, code = h:wait()
      return ok, kind, code, table.concat(got.stdout), table.concat(got.stderr)
    """)
    assert r == (None, b"exit", 5, b"out\nout2\n", b"err\n")


@pytest.mark.parametrize("code", [0, 1, 42, 255])
def test_exit_codes(lua, code):
    r = run(lua, PROC + "return proc.spawn('exit ' .. ..., {}):wait()", code)
    assert r == ((True if code == 0 else None), b"exit", code)


def test_missing_command_exits_127(lua):
    r = run(lua, PROC + COLLECT + """
      local h = assert(proc.spawn("no-such-command-luaipct", { stderr = true, callback = cb }))
      local ok, kind, code = h:wait()
      return ok, kind, code, table.concat(got.stderr)
    """)
    assert r[:3] == (None, b"exit", 127)
    assert b"not found" in r[3]


def test_binary_output_round_trips(lua):
    data = bytes(range(256)) * 64
    r = run_one(lua, PROC + COLLECT + """
      local h = proc.spawn("cat", { stdin = true, stdout = true, callback = cb })
      h:write(..., proc.EOF)
      assert(h:wait())
      return table.concat(got.stdout)
    """, data)
    assert r == data


# -- input --------------------------------------------------------------------

def test_stdin_in_one_piece(lua):
    r = run(lua, PROC + COLLECT + """
      local h = proc.spawn("tr a-z A-Z", { stdin = true, stdout = true, callback = cb })
      assert(h:write("hello world\\n", proc.EOF) == true)
      return h:wait(), table.concat(got.stdout)
    """)
    assert r == (True, b"HELLO WORLD\n")


def test_stdin_in_many_pieces_and_calls(lua):
    r = run(lua, PROC + COLLECT + """
      local h = proc.spawn("cat", { stdin = true, stdout = true, callback = cb })
      assert(h:write("a", "b", 3, ""))
      assert(h:write("c\\n"))
      assert(h:write("d", proc.EOF))
      return h:wait(), table.concat(got.stdout)
    """)
    assert r == (True, b"ab3c\nd")


def test_8mib_single_write_is_byte_exact(lua):
    r = run(lua, PROC + COLLECT + """
      local unit = {}
      for i = 0, 255 do unit[#unit + 1] = string.char(i) end
      unit = table.concat(unit)
      local big = string.rep(unit .. "luaipc", 32768)
      local h = proc.spawn("cat", { stdin = true, stdout = true, callback = cb })
      h:write(big, proc.EOF)
      local ok, kind, code = h:wait()
      local back = table.concat(got.stdout)
      return ok, kind, code, #big, #back, back == big
    """)
    assert r[:3] == (True, b"exit", 0)
    assert r[3] > 8_000_000 and r[4] == r[3] and r[5] is True


def test_100000_small_writes_are_byte_exact(lua):
    r = run(lua, PROC + COLLECT + """
      local h = proc.spawn("cat", { stdin = true, stdout = true, callback = cb })
      local sent = {}
      for i = 1, 100000 do
        local s = i .. "\\n"
        sent[i] = s
        h:write(s)
      end
      h:write(proc.EOF)
      assert(h:wait())
      local back, want = table.concat(got.stdout), table.concat(sent)
      return #back, #want, back == want
    """)
    assert r[0] == r[1] and r[2] is True


def test_writes_between_waits_are_kept_in_order(lua):
    # Queued before wait, queued by callbacks, many turns of the loop.
    r = run_one(lua, PROC + """
      local out = {}
      local h
      local n = 0
      h = proc.spawn("cat", { stdin = true, stdout = true, callback = function(s, d)
        out[#out + 1] = d
      end })
      for i = 1, 50 do h:write(string.rep(string.char(64 + i % 26), 10000)) end
      h:write(proc.EOF)
      assert(h:wait())
      return table.concat(out)
    """)
    assert r == b"".join(bytes([64 + i % 26]) * 10000 for i in range(1, 51))


def test_stdout_and_stderr_flood_while_stdin_is_fed(lua, tmp_path):
    child = tmp_path / "flood.py"
    child.write_text(FLOOD)
    r = run(lua, PROC + COLLECT + """
      local py, src = ...
      local h = proc.spawn(string.format("'%s' '%s'", py, src),
                           { stdin = true, stdout = true, stderr = true, callback = cb })
      local blob = string.rep("0123456789abcdef", 4 * 65536)   -- 4 MiB
      h:write(blob, proc.EOF)
      local ok, kind, code = h:wait()
      local o, e = table.concat(got.stdout), table.concat(got.stderr)
      local nl = string.rep("O", 3 * 1048576)
      local el = string.rep("E", 3 * 1048576)
      return ok, kind, code, o == nl .. blob, e == el .. blob, #o, #e
    """, PY, b(str(child)))
    assert r[:5] == (True, b"exit", 0, True, True), r[5:]


def test_child_that_does_not_read_stdin_does_not_hang(lua):
    r = run(lua, PROC + """
      local h = proc.spawn("exit 3", { stdin = true })
      h:write(string.rep("x", 8 * 1048576), proc.EOF)
      return h:wait()
    """)
    assert r == (None, b"exit", 3)


# -- signals, status, lifetime ------------------------------------------------

@pytest.mark.parametrize(('how', 'num'), [("term", 15), ("kill", 9)])
def test_kill_gives_signal_status(lua, how, num):
    r = run(lua, PROC + """
      local h = proc.spawn("exec sleep 30", {})
      assert(h:kill(...) == true)
      return h:wait()
    """, b(how))
    assert r == (None, b"signal", num)


def test_kill_while_output_is_piped(lua):
    r = run(lua, PROC + """
      local h
      h = proc.spawn("echo start; exec sleep 30", { stdout = true, callback = function(s, d)
        assert(h:kill("kill") == true)           -- from the callback, on output
      end })
      local a = { h:wait() }
      h = proc.spawn("exec sleep 30", { stdin = true, stdout = true, stderr = true,
                                        callback = function() end })
      h:kill("term")
      local ok, kind, code = h:wait()
      return a[1], a[2], a[3], ok, kind, code
    """)
    assert r == (None, b"signal", 9, None, b"signal", 15)


def test_kill_after_exit_is_harmless(lua):
    h = run_one(lua, PROC + 'return proc.spawn("exit 7", {})')
    pid = int(re.search(rb"pid (\d+)", lua.globals().tostring(h)).group(1))
    deadline = time.monotonic() + 10
    while psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:  # dead, not reaped
        assert time.monotonic() < deadline
        time.sleep(0.01)
    r = lua.eval("function(h) return h:kill('kill'), h:wait() end")(h)
    assert r == (True, None, b"exit", 7)


def test_collected_handle_kills_and_reaps_child(lua):
    pid = run_one(lua, PROC + """
      local h = proc.spawn("exec sleep 30", {})
      local pid = tonumber(tostring(h):match("pid (%d+)"))
      h = nil
      collectgarbage(); collectgarbage()
      return pid
    """)
    assert isinstance(pid, int) and pid > 0
    assert pid_gone(pid)


def test_tostring(lua):
    r = run(lua, PROC + """
      local h = proc.spawn("exit 0", {})
      local a = tostring(h)
      h:wait()
      return a, tostring(h), io.type(h), tostring(proc.EOF)
    """)
    assert r[0].startswith(b"ipc.proc (pid ")
    assert r[1].endswith(b"exit 0)")
    assert r[2] is None
    assert r[3] == b"proc.EOF"


def test_idle_child_costs_no_cpu(lua):
    before = time.process_time()
    r = run(lua, PROC + """
      local h = proc.spawn("sleep 0.6; echo done", { stdin = true, stdout = true, callback = function() end })
      return h:wait()
    """)
    used = time.process_time() - before
    assert r == (True, b"exit", 0)
    assert used < 0.3, f"{used:.2f} s of CPU while the child slept 0.6 s"


# -- redirection to and from Lua files --------------------------------------------

def test_redirect_stdout_and_stderr_to_lua_files(lua, tmp_path):
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    r = run(lua, PROC + """
      local outname, errname = ...
      local o = assert(io.open(outname, "w"))
      local e = assert(io.open(errname, "w"))
      o:write("before\\n")                 -- buffered in Lua: flushed by spawn
      local h = proc.spawn("echo to-out; echo to-err >&2", { stdout = o, stderr = e })
      local ok, kind, code = h:wait()
      o:close(); e:close()
      return ok, kind, code
    """, b(str(out)), b(str(err)))
    assert r == (True, b"exit", 0)
    assert out.read_bytes() == b"before\nto-out\n"
    assert err.read_bytes() == b"to-err\n"


def test_redirect_stdin_from_lua_file(lua, tmp_path):
    src = tmp_path / "in.txt"
    data = bytes(range(256)) * 1000
    src.write_bytes(data)
    r = run(lua, PROC + COLLECT + """
      local f = assert(io.open(..., "rb"))
      local h = proc.spawn("cat", { stdin = f, stdout = true, callback = cb })
      f:close()                           -- the child has its own copy
      local ok = h:wait()
      return ok, table.concat(got.stdout)
    """, b(str(src)))
    assert r == (True, data)


def test_writing_without_a_stdin_pipe_is_an_error_with_a_file(lua, tmp_path):
    src = tmp_path / "in.txt"
    src.write_bytes(b"x")
    r = run(lua, PROC + """
      local f = assert(io.open(..., "rb"))
      local h = proc.spawn("cat >/dev/null", { stdin = f })
      local ok, err = pcall(h.write, h, "more")
      h:wait()
      return ok, err
    """, b(str(src)))
    assert r[0] is False and r[1].endswith(b"process stdin is not connected to a pipe")


# -- coroutines and interaction ------------------------------------------------

def test_callback_may_yield_inside_a_coroutine(lua):
    r = run(lua, PROC + """
      local h = proc.spawn("for i in 1 2 3 4 5; do echo line$i; sleep 0.02; done",
                           { stdout = true, callback = function(s, d)
                               coroutine.yield(s, d)
                             end })
      local co = coroutine.create(function() return "done", h:wait() end)
      local got, yields = {}, 0
      while true do
        local ok, a, b, c, d = coroutine.resume(co)
        assert(ok, a)
        if coroutine.status(co) == "dead" then
          return yields, table.concat(got), a, b, c, d
        end
        yields = yields + 1
        got[#got + 1] = b
      end
    """)
    yields, text, tag, ok, kind, code = r
    assert yields >= 1
    assert text == b"".join(b"line%d\n" % i for i in range(1, 6))
    assert (tag, ok, kind, code) == (b"done", True, b"exit", 0)


def test_two_processes_interleaved_in_coroutines(lua):
    r = run_one(lua, PROC + """
      local results = {}
      local function job(tag, cmd)
        return coroutine.wrap(function()
          local h = proc.spawn(cmd, { stdout = true, callback = function(s, d)
            results[#results + 1] = tag .. d
            coroutine.yield(false)
          end })
          local ok = h:wait()
          return true, ok
        end)
      end
      local a = job("a:", "echo 1; sleep 0.05; echo 2")
      local b = job("b:", "echo 3; sleep 0.05; echo 4")
      local done_a, done_b
      while not (done_a and done_b) do
        if not done_a then done_a = a() end
        if not done_b then done_b = b() end
      end
      table.sort(results)
      return table.concat(results)
    """)
    assert r == b"a:1\na:2\nb:3\nb:4\n"


def test_interactive_callback_writes_replies(lua):
    r = run(lua, PROC + """
      local h
      local transcript, buf, n = {}, "", 0
      h = proc.spawn("while read l; do echo \\"got $l\\"; done; echo bye",
                     { stdin = true, stdout = true, callback = function(s, d)
        buf = buf .. d
        for line in buf:gmatch("([^\\n]*)\\n") do
          transcript[#transcript + 1] = line
          n = n + 1
          if n < 5 then h:write(n + 1 .. "\\n") elseif n == 5 then h:write(proc.EOF) end
        end
        buf = buf:match("[^\\n]*$")
      end })
      h:write("1\\n")
      local ok = h:wait()
      return ok, table.concat(transcript, ",")
    """)
    assert r == (True, b"got 1,got 2,got 3,got 4,got 5,bye")


def test_callback_error_propagates_and_wait_resumes(lua):
    r = run(lua, PROC + """
      local seen = {}
      local boom = true
      local h = proc.spawn("printf abc; printf def >&2", { stdout = true, stderr = true,
        callback = function(s, d)
          if boom then boom = false; error("boom", 0) end
          seen[#seen + 1] = d
        end })
      local ok, err = pcall(h.wait, h)
      local r = { h:wait() }
      table.sort(seen)
      return ok, err, r[1], table.concat(seen, ",")
    """)
    assert r[0] is False and r[1] == b"boom" and r[2] is True
    # the chunk that raised is not redelivered; nothing after it is lost
    assert r[3] in (b"", b"abc", b"def", b"abc,def")


# -- misuse ------------------------------------------------------------------------

ERRORS = [
    ("proc.spawn()", "bad argument #1 to 'spawn' (string expected, got no value)"),
    ("proc.spawn({}, {})", "bad argument #1 to 'spawn' (string expected, got table)"),
    ("proc.spawn('true')", "bad argument #2 to 'spawn' (table expected, got no value)"),
    ("proc.spawn('true', 'x')", "bad argument #2 to 'spawn' (table expected, got string)"),
    ("proc.spawn('echo a\\0b', {})", "bad argument #1 to 'spawn' (command contains a zero byte)"),
    ("proc.spawn('true', { stdout = true })", "'callback' field required"),
    ("proc.spawn('true', { stderr = true, callback = 'f' })", "'callback' field required"),
    ("local f = io.tmpfile(); f:close(); proc.spawn('true', { stdout = f })",
     "attempt to use a closed file"),
    ("proc.spawn('true', {}):write('x')", "process stdin is not connected to a pipe"),
    ("local h = proc.spawn('cat', { stdin = true }); h:write('a', proc.EOF); h:wait(); h:write('x')",
     "attempt to use invalid process object"),
    ("local h = proc.spawn('cat', { stdin = true }); h:write('a', proc.EOF, 'b')",
     "pipe to stdin is already closed"),
    ("local h = proc.spawn('cat', { stdin = true }); h:write(proc.EOF); h:write(proc.EOF)",
     "pipe to stdin is already closed"),
    ("local h = proc.spawn('cat', { stdin = true }); h:write('a', {})",
     "bad argument #2 to 'write' (string expected, got table)"),
    ("local h = proc.spawn('cat', { stdin = true }); h:write(nil)",
     "bad argument #1 to 'write' (string expected, got nil)"),
    ("proc.spawn('true', {}):kill('hup')", "bad argument #1 to 'kill' (invalid option 'hup')"),
    ("proc.spawn('true', {}):kill()", "bad argument #1 to 'kill' (string expected, got no value)"),
    ("local h = proc.spawn('true', {}); h:wait(); h:wait()", "attempt to use invalid process object"),
    ("local h = proc.spawn('true', {}); h:wait(); h:kill('term')",
     "attempt to use invalid process object"),
    ("local h = proc.spawn('true', {}); h.wait({})",
     "bad argument #1 to 'wait' (ipc.proc expected, got table)"),
    ("local h = proc.spawn('true', {}); local t = { wait = h.wait }; t:wait()",
     "calling 'wait' on bad self (ipc.proc expected, got table)"),
]


@pytest.mark.parametrize(('code', 'message'), ERRORS)
def test_argument_errors(lua, code, message):
    ok, err = run(lua, PROC + f"""
      local ok, err = pcall(function()
        {code}
      end)
      collectgarbage(); collectgarbage()
      return ok, err
    """)
    assert ok is False
    text = err.decode()
    assert text.endswith(message), text
    # reported at the caller's line, as luaL_error does: never inside the face
    assert text.startswith('[string "<python>"]:4: '), text
    assert "ipc.proc]" not in text


# -- Ctrl-C --------------------------------------------------------------------------

@pytest.mark.parametrize(('cmd', 'opts'), [
    ("exec sleep 60", "{ stdout = true, callback = function() end }"),   # in step's read()
    # after a first chunk: in the reader's read() (the last pipe's fast path)
    ("echo started; exec sleep 60", "{ stdout = true, callback = function() end }"),
    ("exec sleep 60", ("{ stdin = true, stdout = true, stderr = true, "
                       "callback = function() end }")),                  # in poll()
    ("exec sleep 60", "{}")])                                             # in waitpid()
def test_ctrl_c_during_wait_interrupts_and_kills_child(engine, tmp_path, cmd, opts):
    script = tmp_path / "ctrlc.lua"
    script.write_text("""
      local proc = require "ipc.proc"
      local h = proc.spawn("CMD", OPTS)
      io.stdout:write(tostring(h):match("pid (%d+)"), "\\n")
      io.stdout:flush()
      h:wait()
      print("not reached")
    """.replace("CMD", cmd).replace("OPTS", opts))
    p = spawn_luaipc([script], engine=engine)
    child = int(read_line(p))
    out, _ = ctrl_c(p, blocked=0.3)  # once it blocks in h:wait()
    assert "not reached" not in out
    assert pid_gone(child), "the child outlived Ctrl-C"


def test_second_waiter_while_a_callback_is_suspended(lua):
    # A callback yields; the main thread waits on the same handle meanwhile:
    # every chunk is delivered once, in order, and both get the status.
    r = run(lua, PROC + """
      local got = {}
      local h = proc.spawn("printf a; sleep 0.05; printf b; sleep 0.05; printf c",
                           { stdout = true, callback = function(s, d)
        got[#got + 1] = d
        if #got == 1 then coroutine.yield() end
      end })
      local co = coroutine.create(function() return h:wait() end)
      assert(coroutine.resume(co))                  -- suspended in the callback
      local a = { h:wait() }                        -- the main thread takes over
      local ok, b1, b2, b3 = coroutine.resume(co)   -- the first waiter finishes too
      return table.concat(got), a[1], a[2], a[3], ok, b1, b2, b3, coroutine.status(co)
    """)
    assert r == (b"abc", True, b"exit", 0, True, True, b"exit", 0, b"dead")
