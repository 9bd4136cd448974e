"""lupa's behaviour with ``max_memory``, shown with lupa alone: a Python
result whose Lua string would pass the limit hangs the call for good.

Lua raises its memory error while lupa converts the result, and the error
unwinds (longjmp) through lupa's C code, past the release of the runtime's
lock; the next acquire, still inside that call, waits forever.  luaipc's
memory faces therefore never copy through Lua's C API in such a runtime
(ipc/lua/capi.py: copiers), but a big ``h:read`` in a runtime with a low
``max_memory`` meets this bug on lupa's own path.

These tests document lupa 2.8, not luaipc: they assert that the bug is
still there, and fail once a lupa release fixes it (then the note in
capi.py and the README's caveat can go).
"""
from __future__ import annotations

import subprocess
import sys

import pytest
from helpers.children import child_env

pytestmark = pytest.mark.lupa_behaviour

CHILD = """
import lupa.lua54 as L
rt = L.LuaRuntime(max_memory=8 << 20)
call = rt.eval("function(g) local ok, e = pcall(g) return ok, tostring(e) end")
print("small", call(lambda: b"x" * (1 << 20)), flush=True)
print("big", call(lambda: b"x" * (10 << 20)), flush=True)
"""


def test_a_result_past_max_memory_hangs_the_call():
    p = subprocess.Popen([sys.executable, "-c", CHILD], env=child_env(),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, _ = p.communicate(timeout=5)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
        hung = True
    else:
        hung = False
    assert out.startswith("small (True,"), out    # a result under the limit crosses
    assert hung, f"lupa no longer hangs here: {out!r} (see the module docstring)"
