"""Quick standalone measurement of the memfile Lua face (not a test).

    python bench/memfile_quick.py [engine ...]

Per engine: microseconds per loop of seek+write(8 bytes)+seek+read(8) on an
ipc.shm handle, and MiB/s of write(1 MiB) and read(1 MiB) calls.
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
local bw, br = math.huge, math.huge
for r = 1, reps do
  local t = clock()
  for i = 1, 20 do h:seek("set", 0); h:write(MiB) end
  t = (clock() - t) / 20
  if t < bw then bw = t end
  t = clock()
  for i = 1, 20 do h:seek("set", 0); acc = acc + #h:read(#MiB) end
  t = (clock() - t) / 20
  if t < br then br = t end
end
h:close()
return us, 1 / bw, 1 / br, 2 / (bw + br)      -- MiB/s
"""


def main(engines):
    print(f"{'engine':10} {'us/loop':>8} {'write MiB/s':>12} {'read MiB/s':>11} {'w+r MiB/s':>10}")
    for engine in engines:
        rt = new_runtime(engine)
        name = "luaipcb-" + uuid.uuid4().hex[:12]
        us, w, r, wr = rt.execute(BENCH, name.encode(), 200000, 5)
        print(f"{engine:10} {us:8.3f} {w:12.0f} {r:11.0f} {wr:10.0f}")


if __name__ == "__main__":
    main(sys.argv[1:] or list(ENGINES))
