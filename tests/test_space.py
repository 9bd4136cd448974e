"""Space: shm.create reserves its pages (issue 11 point 6).

Every test really fills a filesystem: its body runs in a child under
``unshare -m`` with a private 4 MiB tmpfs mounted on /dev/shm, so names
live in that mount and the machine's /dev/shm is never touched (the mount
goes with the child's mount namespace).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest
from helpers.children import LUAIPC

MIB = 1 << 20
#: Run "$@" with a private 4 MiB tmpfs on /dev/shm.
PRIVATE_SHM = ["unshare", "-m", "--propagation", "private", "sh", "-c",
               'mount -t tmpfs -o size=4m tmpfs /dev/shm && exec "$@"', "sh"]

_private_ok: bool | None = None


def in_small_shm(*cmd: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run cmd in a private mount namespace whose /dev/shm is 4 MiB."""
    global _private_ok
    if _private_ok is None:
        _private_ok = bool(shutil.which("unshare")) and subprocess.run(
            [*PRIVATE_SHM, "true"], capture_output=True, timeout=30,
            check=False).returncode == 0
    if not _private_ok:
        pytest.skip("needs root and unshare -m (a private tmpfs on /dev/shm)")
    full_env = dict(os.environ)
    full_env.pop("LUAIPC_ENGINE", None)
    full_env.update(env or {})
    return subprocess.run([*PRIVATE_SHM, *cmd], capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL, env=full_env, check=False)


PY_BODY = r"""
import errno, os, sys
import ipc, ipc.shm
MIB = 1 << 20
assert os.statvfs("/dev/shm").f_blocks * os.statvfs("/dev/shm").f_frsize == 4 * MIB

# bigger than the free space: ENOSPC, and nothing left behind
try:
    ipc.shm.create("big", 8 * MIB)
    raise SystemExit("a segment larger than /dev/shm was created")
except ipc.IPCError as exc:
    assert exc.errno == errno.ENOSPC, exc
    assert exc.strerror == os.strerror(errno.ENOSPC), exc.strerror
assert os.listdir("/dev/shm") == [], os.listdir("/dev/shm")

# one that fits can be written in full (no SIGBUS), and then a second one
# that no longer fits fails at once, leaving the first intact
h = ipc.shm.create("fits", 3 * MIB)
h.write(b"\xab" * (3 * MIB))
try:
    ipc.shm.create("second", 2 * MIB)
    raise SystemExit("a segment past the free space was created")
except ipc.IPCError as exc:
    assert exc.errno == errno.ENOSPC, exc
assert os.listdir("/dev/shm") == ["fits"], os.listdir("/dev/shm")
g = ipc.shm.attach("fits")
assert g.read() == b"\xab" * (3 * MIB)
g.close()
h.close()
assert os.listdir("/dev/shm") == []
print("ok")
"""


def test_python_create_fails_with_enospc_and_writes_in_full():
    r = in_small_shm(sys.executable, "-c", PY_BODY)
    assert r.returncode == 0 and r.stdout == "ok\n", (r.returncode, r.stdout, r.stderr)


LUA_BODY = r"""
local shm = require "ipc.shm"
local MIB = 1024 * 1024
local function ls()
  local p = assert(io.popen("ls -A /dev/shm"))
  local out = p:read("*a")
  p:close()
  return out
end

local h, msg, code = shm.create("big", 8 * MIB)
assert(h == nil and msg == "No space left on device" and code == 28,
       tostring(h) .. " " .. tostring(msg) .. " " .. tostring(code))
assert(ls() == "", ls())

h = assert(shm.create("fits", 3 * MIB))
assert(h:write(string.rep("\171", 3 * MIB)) == h)
local h2, msg2, code2 = shm.create("second", 2 * MIB)
assert(h2 == nil and code2 == 28, tostring(msg2))
assert(ls() == "fits\n", ls())
local g = assert(shm.attach("fits"))
assert(g:read(3 * MIB) == string.rep("\171", 3 * MIB))
g:close()
h:close()
assert(ls() == "", ls())
print("ok")
"""


def test_lua_create_returns_the_enospc_triple_and_writes_in_full(engine):
    r = in_small_shm(*LUAIPC, "-e", LUA_BODY, env={"LUAIPC_ENGINE": engine})
    assert r.returncode == 0 and r.stdout == "ok\n", (r.returncode, r.stdout, r.stderr)


# What still gives SIGBUS, as with C LuaIPC and Python's mmap (documented):
# a mapping whose file has no page to give.  Here a sparse file on the full
# tmpfs, mapped by ipc.mmap (which maps a file as it is: reserving its holes
# would allocate a sparse file in full behind its owner's back).
SPARSE_MMAP = r"""
import os, ipc.mmap
path = "/dev/shm/sparse"
with open(path, "wb") as f:
    f.truncate(8 << 20)                      # a hole larger than the tmpfs
h = ipc.mmap.open(path, "rw")
print("mapped", flush=True)
h.write(b"\1" * (8 << 20))                   # a page past the free space: SIGBUS
print("not reached", flush=True)
"""


def test_mmap_of_a_sparse_file_on_a_full_filesystem_still_gets_sigbus():
    r = in_small_shm(sys.executable, "-c", SPARSE_MMAP)
    assert r.stdout == "mapped\n", (r.stdout, r.stderr)
    assert r.returncode == -signal.SIGBUS, (r.returncode, r.stderr)


LINDA_BODY = r"""
import errno, os
import ipc, ipc.linda
MIB = 1 << 20
l = ipc.linda.create("full", capacity=8 * MIB)   # more than the 4 MiB tmpfs holds
sent = 0
try:
    while True:
        l.send("k", os.urandom(256 << 10))
        sent += 1
except ipc.IPCError as exc:
    assert exc.errno == errno.ENOSPC, exc
print("full after", sent)
assert l.count("k") == sent                      # nothing half-written
got = [l.receive("k", timeout=0)[1] for _ in range(sent)]
assert all(len(v) == 256 << 10 for v in got)
l.send("k", b"small again")                      # usable once there is room
assert l.receive("k", timeout=0) == ("k", b"small again")
l.close()
assert not os.path.exists("/dev/shm/linda.full")
print("ok")
"""


def test_a_linda_on_a_full_tmpfs_fails_cleanly_and_stays_whole():
    """Space is reserved (posix_fallocate) before it is written: a full
    tmpfs is ENOSPC from send, never SIGBUS, and the committed state is
    intact and usable."""
    r = in_small_shm(sys.executable, "-c", LINDA_BODY)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert "ok" in lines and int(lines[2]) >= 1
