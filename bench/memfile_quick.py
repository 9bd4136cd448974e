"""Quick standalone measurement of the memfile Lua face (not a test).

    python bench/memfile_quick.py [engine ...]

Per engine: microseconds per loop of seek+write(8 bytes)+seek+read(8) on an
ipc.shm handle, and MB/s of writing then reading 1 MiB in one call each.
Each figure is the best of several runs (the machine is shared).
"""
from __future__ import annotations

import sys
import uuid

from ipc.lua import ENGINES, new_runtime

BENCH = r"""
local shm = require "ipc.shm"
local name, loops, reps = ...
local clock = os.clock
local h = assert(shm.create(name, 2 * 1024 * 1024))
local best, acc = math.huge, 0
for r = 1, reps do
  local t = clock()
  for i = 1, loops do   -- the result is used, so no JIT can drop the read
    h:seek("set", 64); h:write("abcdefgh"); h:seek("set", 64); acc = acc + #h:read(8)
  end
  t = clock() - t
  if t < best then best = t end
end
local us = best / loops * 1e6
local MiB = string.rep("x", 1024 * 1024)
local bestmb = math.huge
for r = 1, reps do
  local t = clock()
  for i = 1, 20 do h:seek("set", 0); h:write(MiB); h:seek("set", 0); h:read(#MiB) end
  t = (clock() - t) / 20
  if t < bestmb then bestmb = t end
end
h:close()
assert(acc == 8 * loops * reps)
return us, 2 / bestmb          -- MB moved (1 written + 1 read) per second
"""


def main(engines):
    print(f"{'engine':10} {'us/loop':>8} {'MB/s (1 MiB w+r)':>17}")
    for engine in engines:
        rt = new_runtime(engine)
        name = "luaipcb-" + uuid.uuid4().hex[:12]
        us, mbs = rt.execute(BENCH, name.encode(), 200000, 5)
        print(f"{engine:10} {us:8.3f} {mbs:17.0f}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(ENGINES))
