"""ipc.mq, the Lua face, on every engine: in a runtime of this process and
in luaipc child processes talking to Python ones."""
from __future__ import annotations

import time

import pytest
from helpers.children import ctrl_c, finish, spawn_lua, spawn_py, still_blocked, wait_line
from helpers.lua import lua_version, run
from helpers.names import queue_exists

from ipc import mq

ALL_BYTES = bytes(range(256))
#: The first line of every chunk run here.
MQ = 'local mq = require "ipc.mq"\n'


# -- open and its error triples ------------------------------------------------------

def test_open_error_triples(lua, name):
    missing, exists, badname, toolong, sizes = run(lua, MQ + """
      local name = ...
      local h = assert(mq.open(name, 2, 8))
      local function pack(...) return { n = select("#", ...), ... } end
      local r = { pack(mq.open(name .. "-none")), pack(mq.open(name, 2, 8)),
                  pack(mq.open("a/b", 1, 1)), pack(mq.open(("x"):rep(256), 1, 1)) }
      local o = assert(mq.open(name))
      assert(o:send("x") == true)
      local m = h:receive(0)
      o:close(); h:close()
      return r[1], r[2], r[3], r[4], m
    """, name.encode())

    def as_list(t) -> list:
        return [t[i] for i in range(1, t[b"n"] + 1)]

    assert as_list(missing) == [None, b"No such file or directory", 2]
    assert as_list(exists) == [None, b"File exists", 17]
    assert as_list(badname) == [None, b"Invalid argument", 22]
    assert as_list(toolong) == [None, b"File name too long", 36]
    assert sizes == b"x"
    assert not queue_exists(name)


@pytest.mark.parametrize("which", ["maxmsg", "msgsize"])
def test_over_the_system_limit_is_a_triple_naming_it(lua, name, which):
    key = {"maxmsg": "msg_max", "msgsize": "msgsize_max"}[which]
    limit = mq.limits()[key]
    if limit is None:
        pytest.skip(f"{mq.SYSCTL_DIR}/{key} is not readable")
    args = (limit + 1, 1) if which == "maxmsg" else (1, limit + 1)
    res = run(lua, MQ + "local h, msg, code = mq.open(...)\n"
                   "if h then h:close() return true end\n"
                   "return h, msg, code", name.encode(), *args)
    if mq._os._has_cap_sys_resource():
        assert res == (True,)   # CAP_SYS_RESOURCE lifts the sysctl limits
        return
    assert res == (None, f"{which} {limit + 1} exceeds the system limit {limit} "
                         f"({mq.SYSCTL_DIR}/{key})".encode(), 22)
    assert not queue_exists(name)


def test_misuse_raises_errors_in_luas_words(lua, name, unnamed):
    errors = run(lua, MQ + """
      local name = ...
      local h = assert(mq.open(name, 2, 8))
      local function e(f, ...) local ok, msg = pcall(f, ...) assert(not ok) return msg end
      local r = {
        e(mq.open),
        e(mq.open, name, 0),
        e(mq.open, name, 2, -1),
        e(mq.open, name, 1.5),
        e(mq.open, name, "many"),
        e(h.send, h),
        e(h.send, h, {}),
        e(h.send, h, "123456789"),
        e(h.send, h, "x", "soon"),
        e(h.send, h, "x", 0, -1),
        e(h.send, h, "x", 0, 32768),
        e(h.send, h, "x", 0, 1.5),
        e(h.receive, h, 0/0),
        e(h.receive, 42),
        e(h.receive, {}),
      }
      assert(h:count() == 0)              -- nothing was sent
      h:close()
      r[#r + 1] = e(h.send, h, "x")
      r[#r + 1] = e(h.receive, h)
      r[#r + 1] = e(h.count, h)
      return (unpack or table.unpack)(r)
    """, name.encode())
    # called by pcall, not by name: luaL_argerror's '?' (or 5.3+'s name from
    # package.loaded), and the methods count self (see test_argerrors.py)
    open_ = unnamed("ipc.mq.open")
    assert [m.decode() for m in errors] == [
        f"bad argument #1 to '{open_}' (string expected, got no value)",
        f"bad argument #2 to '{open_}' (maxmsg must be positive)",
        f"bad argument #3 to '{open_}' (msgsize must be positive)",
        f"bad argument #2 to '{open_}' (number has no integer representation)",
        f"bad argument #2 to '{open_}' (number expected, got string)",
        "bad argument #2 to '?' (string expected, got no value)",
        "bad argument #2 to '?' (string expected, got table)",
        "bad argument #2 to '?' (message of 9 bytes exceeds the queue's msgsize 8)",
        "bad argument #3 to '?' (number expected, got string)",
        "bad argument #4 to '?' (priority out of range 0..32767)",
        "bad argument #4 to '?' (priority out of range 0..32767)",
        "bad argument #4 to '?' (number has no integer representation)",
        "bad argument #2 to '?' (timeout is NaN)",
        "bad argument #1 to '?' (ipc.mq expected, got number)",
        "bad argument #1 to '?' (ipc.mq expected, got table)",
        "attempt to use a closed message queue",
        "attempt to use a closed message queue",
        "attempt to use a closed message queue",
    ]
    assert not queue_exists(name)


def test_errors_point_at_the_callers_line(lua, name):
    with pytest.raises(Exception, match=r'\]:3: bad argument #1 to \'send\''):
        lua.execute('local mq = require "ipc.mq"\n'
                    'local h = assert(mq.open(..., 1, 1))\n'
                    'local ok, err = pcall(function() h:send("too long") end)\n'
                    'h:close() error(err, 0)', name.encode())


# -- send and receive in one runtime --------------------------------------------------

def test_priorities_and_binary_payloads(lua, name):
    res = run(lua, MQ + """
      local name, blob = ...
      local h = assert(mq.open(name, 10, 300))
      local sent = { {"low", 0}, {blob, 7}, {"", 3}, {"\\0a\\0", 7}, {"top", 32767}, {"low2", 0} }
      for i = 1, #sent do assert(h:send(sent[i][1], nil, sent[i][2]) == true) end
      assert(h:count() == 6)
      local out = {}
      for i = 1, 6 do
        local msg, prio = h:receive(0)
        out[#out + 1] = msg; out[#out + 1] = prio
      end
      h:close()
      return (table.unpack or unpack)(out)
    """, name.encode(), ALL_BYTES)
    assert res == (b"top", 32767, ALL_BYTES, 7, b"\0a\0", 7, b"", 3, b"low", 0, b"low2", 0)


def test_timeouts_both_ways_give_false(lua, name):
    t0 = time.monotonic()
    res = run(lua, MQ + """
      local h = assert(mq.open(..., 1, 8))
      local function pack(...) return { n = select("#", ...), ... } end
      local r = { pack(h:receive(0)), pack(h:receive(0.2)) }
      assert(h:send("fill", 0) == true)
      r[3] = pack(h:send("more", 0)); r[4] = pack(h:send("more", 0.2, 5))
      r[5] = pack(h:receive(0.2))
      h:close()
      return r[1], r[2], r[3], r[4], r[5]
    """, name.encode())
    assert time.monotonic() - t0 >= 0.39
    got = [[t[i] for i in range(1, t[b"n"] + 1)] for t in res]
    assert got == [[False], [False], [False], [False], [b"fill", 0]]


def test_the_python_api_meets_the_lua_queue(lua, name):
    h = run(lua, MQ + "return assert(mq.open(..., 3, 64))", name.encode())[0]
    with mq.open(name) as q:
        assert (q.maxmsg, q.msgsize) == (3, 64)
        assert h.send(h, b"from lua", None, 4) is True
        assert q.receive(0) == (b"from lua", 4)
        q.send(b"from python\0", priority=2)
        assert h.receive(h, 0) == (b"from python\0", 2)


# -- closing, collection ---------------------------------------------------------------

def test_creator_close_and_collection_unlink(lua, make_name):
    a, b, c = make_name(), make_name(), make_name()
    res = run(lua, MQ + """
      local a, exists = ...
      local h = assert(mq.open(a, 1, 8))
      local o = assert(mq.open(a))
      local s1 = tostring(h):match("^ipc%.mq %(.+%)$") ~= nil
      assert(o:close() == true)
      local kept = exists(a)
      assert(h:close() == true and h:close() == true)
      return s1, kept, tostring(h), not exists(a)
    """, a.encode(), lambda n: queue_exists(n.decode()))
    assert res == (True, True, b"ipc.mq (closed)", True)
    run(lua, MQ + """
      local b = ...
      local h = assert(mq.open(b, 1, 8))
      h = nil
      collectgarbage(); collectgarbage()
    """, b.encode())
    assert not queue_exists(b)
    # An open handle outlives the creator's close.
    res = run(lua, MQ + """
      local c = ...
      local h = assert(mq.open(c, 1, 8))
      local o = assert(mq.open(c))
      h:close()
      assert(o:send("still") == true)
      local m = o:receive(0)
      o:close()
      return m, select("#", mq.open(c))
    """, c.encode())
    assert res == (b"still", 3)


def test_to_be_closed_variable(lua, engine, name):
    if lua_version(engine) < (5, 4):
        pytest.skip("<close> is Lua 5.4+")
    run(lua, MQ + """
      do
        local h <close> = assert(mq.open(..., 1, 8))
        h:send("x")
      end
    """, name.encode())
    assert not queue_exists(name)


# -- across processes: luaipc children ------------------------------------------------------

def test_echo_through_a_luaipc_child(engine, make_name):
    a, b = make_name(), make_name()
    payloads = [(ALL_BYTES, 1), (b"", 0), (b"\0\0", 9), (b"x" * 300, 32767),
                (bytes(reversed(ALL_BYTES)), 5)] * 4
    with mq.open(a, 10, 300) as qa, mq.open(b, 10, 300) as qb:
        p = spawn_lua("mq/echo.lua", a, b, engine=engine)
        wait_line(p)
        for data, prio in payloads:
            qa.send(data, priority=prio)
            assert qb.receive(30) == (data, prio)
        qa.send(b"STOP")
        rc, out, err = finish(p, timeout=30)
    assert rc == 0, err
    assert out.split() == ["done", str(len(payloads))]


def test_priority_order_from_a_luaipc_child(engine, name):
    sent = ["0:a", "5:b", "1:c", "5:d", "0:e", "32767:f", "3:"]
    with mq.open(name, 10, 16) as q:
        p = spawn_lua("mq/sender.lua", name, *sent, engine=engine)
        rc, _, err = finish(p, timeout=30)
        assert rc == 0, err
        got = list(q.messages(timeout=0))
    assert got == [b"f", b"b", b"d", b"", b"c", b"a", b"e"]


PY_ECHO = """
import sys
from ipc import mq
inq, outq = mq.open(sys.argv[1]), mq.open(sys.argv[2])
print("ready", flush=True)
while True:
    data, prio = inq.receive(30)
    if data == b"STOP":
        break
    outq.send(data, priority=prio)
"""


def test_lua_runtime_and_a_python_child(lua, make_name):
    a, b = make_name(), make_name()
    res = run(lua, MQ + """
      local a, b, blob, spawn = ...
      local qa = assert(mq.open(a, 10, 300))
      local qb = assert(mq.open(b, 10, 300))
      local p = spawn()
      local n = 0
      for i = 1, 20 do
        local msg = blob:sub(i) .. "\\0" .. i
        assert(qa:send(msg, nil, i % 4) == true)
        local got, prio = qb:receive(30)
        assert(got == msg and prio == i % 4, "mismatch at " .. i)
        n = n + 1
      end
      assert(qa:send("STOP") == true)
      return n, p
    """, a.encode(), b.encode(), ALL_BYTES,
        lambda: spawn_py(PY_ECHO, a, b))
    n, p = res
    assert n == 20
    _, err = p.communicate(timeout=30)
    assert p.returncode == 0, err


@pytest.mark.parametrize("verb", ["receive", "send"])
def test_blocking_until_the_other_side_acts(engine, name, verb):
    with mq.open(name, 1, 8) as q:
        if verb == "send":
            q.send(b"full")
        p = spawn_lua("mq/block.lua", name, verb, "-1", engine=engine)   # negative: blocks
        wait_line(p)
        assert still_blocked(p), "the call did not block"
        if verb == "receive":
            q.send(b"now", priority=2)
        else:
            assert q.receive(5) == (b"full", 0)
        rc, out, err = finish(p, timeout=30)
        assert rc == 0, err
        if verb == "receive":
            assert out.split() == ["receive", "now", "2"]
        else:
            assert out.split() == ["send", "true"]
            assert q.receive(5) == (b"late", 1)


@pytest.mark.parametrize("verb", ["receive", "send"])
def test_timeouts_in_a_child(engine, name, verb):
    with mq.open(name, 1, 8) as q:
        if verb == "send":
            q.send(b"full")
        p = spawn_lua("mq/block.lua", name, verb, "0.3", engine=engine)
        wait_line(p)
        rc, out, err = finish(p, timeout=30)
    assert rc == 0, err
    assert out.split() == ([verb, "false", "nil"] if verb == "receive" else [verb, "false"])


@pytest.mark.parametrize("verb", ["receive", "send"])
def test_ctrl_c_ends_a_blocked_call_with_interrupted(engine, name, verb):
    with mq.open(name, 1, 8) as q:
        if verb == "send":
            q.send(b"full")
        p = spawn_lua("mq/block.lua", name, verb, engine=engine)
        wait_line(p)
        ctrl_c(p, blocked=0.3)
        assert q.current_messages == (1 if verb == "send" else 0)
