"""Descriptors: under ``ulimit -n`` exhaustion every module says EMFILE
(issue 11 points 6 and 7).

Each test runs a real child under ``ulimit -n 64`` (the shell lowers
RLIMIT_NOFILE, so the child itself never imports ``resource``: an import
that the error path of mq.open used to need).  The child prepares what
needs a descriptor beforehand (modules imported, a segment to attach, a
file to lock, a running process), opens descriptors until EMFILE, then
calls every module and reports what each call gave.
"""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

from helpers.names import leftovers

EMFILE = errno.EMFILE
TEXT = os.strerror(EMFILE)


def under_ulimit(code: str, *args: str) -> dict:
    r = subprocess.run(["sh", "-c", 'ulimit -n 64 && exec "$@"', "sh",
                        sys.executable, "-c", code, *args],
                       capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL, check=False)
    assert r.returncode == 0 and r.stdout.startswith("{"), (r.returncode, r.stdout, r.stderr)
    return json.loads(r.stdout)


# Fill the descriptor table; then everything below runs with none left.
EXHAUST = r"""
import errno, os
def exhaust():
    fds = []
    try:
        while True:
            fds.append(os.open(os.devnull, os.O_RDONLY))
    except OSError as exc:
        assert exc.errno == errno.EMFILE, exc
    return fds
"""

PY_CHILD = EXHAUST + r"""
import json, signal, sys
import ipc, ipc.filelock, ipc.mmap, ipc.mq, ipc.proc, ipc.sem, ipc.shm, ipc.strfile
name, path = sys.argv[1:3]
with open(path, "wb") as f:
    f.write(b"x" * 8192)
h = ipc.shm.create(name, 4096)
sleeper = ipc.proc.spawn(["sleep", "60"])
q = ipc.mq.open(name + "q", 4, 100)
fds = exhaust()

out = {}
def call(label, f):
    try:
        f()
        out[label] = "no error"
    except Exception as exc:
        out[label] = [isinstance(exc, ipc.IPCError), getattr(exc, "errno", None),
                      getattr(exc, "strerror", None), type(exc).__name__]

call("shm.create", lambda: ipc.shm.create(name + "x", 4096))
call("shm.attach", lambda: ipc.shm.attach(name))
call("sem.open create", lambda: ipc.sem.open(name, 1))
call("sem.open", lambda: ipc.sem.open(name))
call("mq.open create", lambda: ipc.mq.open(name, 4, 100))
call("mq.open", lambda: ipc.mq.open(name))
call("mmap.open", lambda: ipc.mmap.open(path, "r"))
call("filelock.PathLock", lambda: ipc.filelock.PathLock(path + ".lock").acquire())
call("proc.spawn", lambda: ipc.proc.spawn(["true"]))
call("proc.run", lambda: ipc.proc.run(["true"]))
# pickle is imported at the first send_obj (start-up time): under EMFILE
# too, the import's failure is the IPCError
call("mq.send_obj", lambda: q.send_obj([1, 2]))
out["strfile"] = ipc.strfile.open(b"abc").read().decode()
# an error path of proc: shutdown() must end the child with no descriptor
# left (psutil cannot even be imported now)
sleeper.shutdown(0.1)
out["shutdown"] = sleeper.returncode
for fd in fds:
    os.close(fd)
h.close()
q.close()
os.unlink(path)
print(json.dumps(out))
"""


def test_python_every_module_raises_emfile(name, tmp_path):
    out = under_ulimit(PY_CHILD, name, str(tmp_path / "data"))
    expected = [True, EMFILE, TEXT]
    for label in ("shm.create", "shm.attach", "sem.open create", "sem.open", "mq.open create",
                  "mq.open", "mmap.open", "filelock.PathLock", "proc.spawn", "proc.run",
                  "mq.send_obj"):
        assert out[label][:3] == expected, (label, out[label])
    assert out["strfile"] == "abc"                  # needs no descriptor: works
    assert out["shutdown"] == -15, "the child did not end on shutdown() under EMFILE"
    assert leftovers(name) == [] and leftovers(name + "x") == [] and leftovers(name + "q") == []


LUA_CHILD = EXHAUST + r"""
import json, sys
from ipc.lua import new_runtime
engine, name, path = sys.argv[1:4]
with open(path, "wb") as f:
    f.write(b"x" * 8192)
rt = new_runtime(engine)
rt.execute('''
  local name, path = ...
  shm, sem, mq, mmap = require "ipc.shm", require "ipc.sem", require "ipc.mq", require "ipc.mmap"
  filelock, proc, strfile = require "ipc.filelock", require "ipc.proc", require "ipc.strfile"
  H = assert(shm.create(name, 4096))
  F = assert(io.open(path, "r+b"))
''', name.encode(), path.encode())
fds = exhaust()
results = rt.execute(r'''
  local name, path = ...
  local out = {}
  local function call(label, f, ...)
    local ok, a, b, c = pcall(f, ...)
    out[#out + 1] = { label, ok, a == nil and "nil" or type(a), b, c }
  end
  call("shm.create", shm.create, name .. "x", 4096)
  call("shm.attach", shm.attach, name)
  call("sem.open create", sem.open, name, 1)
  call("sem.open", sem.open, name)
  call("mq.open create", mq.open, name, 4, 100)
  call("mq.open", mq.open, name)
  call("mmap.open", mmap.open, path, "r")
  call("proc.spawn", proc.spawn, "true", {})
  -- a lock on an open file needs no descriptor: it works
  local locked = filelock.lock(F, "w") == true and filelock.unlock(F) == true
  local io_ok, io_msg, io_code = io.open(path .. ".lock", "a+")   -- Lua's own triple
  local text = strfile.open("abc"):read(3)
  local function str(v)       -- a JSON string
    return '"' .. tostring(v):gsub('[%c"\\]', function(c)
      return string.format("\\u%04x", c:byte())
    end) .. '"'
  end
  local s = {}
  for i, r in ipairs(out) do
    s[i] = str(r[1]) .. ":[" .. tostring(r[2]) .. "," .. str(r[3]) .. "," .. str(r[4]) ..
           "," .. (tonumber(r[5]) and tostring(r[5]) or str(r[5])) .. "]"
  end
  return "{" .. table.concat(s, ",") .. ',"locked":' .. tostring(locked) ..
         ',"io.open":' .. tostring(io_code) .. ',"strfile":' .. str(text) .. "}"
''', name.encode(), path.encode())
for fd in fds:
    os.close(fd)
rt.execute("H:close(); F:close()")
os.unlink(path)
print(results.decode())
"""


def test_lua_every_module_returns_the_emfile_triple(engine, name, tmp_path):
    out = under_ulimit(LUA_CHILD, engine, name, str(tmp_path / "data"))
    for label in ("shm.create", "shm.attach", "sem.open create", "sem.open", "mq.open create",
                  "mq.open", "mmap.open", "proc.spawn"):
        # pcall succeeded (no Lua error), and the call returned nil, msg, errno
        assert out[label] == [True, "nil", TEXT, EMFILE], (label, out[label])
    assert out["locked"] is True
    assert out["io.open"] == EMFILE
    assert out["strfile"] == "abc"
    assert leftovers(name) == [] and leftovers(name + "x") == []
