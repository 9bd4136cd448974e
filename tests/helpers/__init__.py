"""What the test modules share, each defined once (no test module imports
another):

* ``lua``: the engines (``ipc.lua.ENGINES``, which of them this lupa has,
  the subsets slow tests run on) and running Lua code in a runtime;
* ``children``: ``luaipc``, ``ipcctl`` and Python children, their lines
  read with a real timeout, their ends;
* ``names``: the session's name prefix, and whether a name is gone;
* ``nobody``: running children as the unprivileged user;
* ``proc``: the callback that collects a child's output, and a child that
  floods both outputs.
"""
import os

# Every core function called from Lua, in the suite and in every child,
# checks the crossing rule (ipc/lua/crossing.py).  It is read when ipc.lua
# is imported, so it is set here, by the first import of conftest.py.
os.environ["LUAIPC_CHECK_CROSSINGS"] = "1"
