"""ipc.loop with lindas and lanes: inside a task, a linda send at the key's
limit, a receive (or receive_batched) with nothing there and a lane's join
suspend only that task; a cancelled linda wait has taken nothing (counted,
with real processes on the other side); Ctrl-C; no CPU while idle; the
same calls outside a loop unchanged; and the asyncio face (``receive(l,
...)``, ``send(l, ...)``, ``receive_batched``), under anyio too."""
from __future__ import annotations

import asyncio
import sys
import threading
import time

import pytest
from helpers.aio import run as aio_run, ticker
from helpers.children import (
    ctrl_c,
    finish,
    read_line,
    spawn_luaipc,
    spawn_py,
    wait_line,
)
from helpers.lua import TWO_ENGINES, run, skip_if_missing

import ipc
import ipc.loop as aio
from ipc import linda, sem

pytestmark = pytest.mark.timeout(120)

HEAD = """
local loop = require "ipc.loop"
local linda = require "ipc.linda"
local lanes = require "ipc.lanes"
local sem = require "ipc.sem"
"""

#: A Python child that sends ``count`` distinct values ``"<tag>:<i>"`` to
#: key "k" of linda argv[1], pausing now and then, then says "sent".
SENDER = """
import sys, time, ipc.linda as L
l = L.open(sys.argv[1]); tag = sys.argv[2]; n = int(sys.argv[3])
print("ready", flush=True)
for i in range(n):
    l.send("k", f"{tag}:{i}")
    if i % 7 == 0:
        time.sleep(0.002)
print("sent", flush=True)
"""


def _helpers_gone(within: float = 5.0) -> bool:
    """Whether every ipc.loop helper thread of this process is done: ended,
    or idle (kept for the next wait, under another name)."""
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not any(t.name == "ipc.loop helper" for t in threading.enumerate()):
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def made(name):
    with linda.create(name) as ld:
        yield ld


# -- many tasks, many keys ----------------------------------------------------------

def test_tasks_on_different_keys_wake_in_the_order_of_the_sends(lua, made):
    """Six tasks wait at once on six keys (one task on two keys), two with
    timeouts that run out on the way; main sends to the keys in an order of
    its own, each send waking exactly the task of that key, then.  Main
    waits for each note it expects rather than for a time, so that a loaded
    machine cannot reorder the log; where t2's timeout falls among the sends
    depends on the clock, so it is checked apart."""
    r = run(lua, HEAD + """
      local l = assert(linda.open(...))
      local log, t2 = {}, nil
      local function note(x) log[#log + 1] = x end
      local function settle(n) while #log < n do loop.sleep(0.005) end end
      loop.run(function()
        for _, k in ipairs({ "a", "b", "c", "d" }) do
          loop.spawn(function() local key, v = l:receive(k); note(key .. "=" .. v) end)
        end
        loop.spawn(function() local key, v = l:receive("x", "y"); note("xy:" .. key .. "=" .. v) end)
        loop.spawn(function() note("t1:" .. tostring(select(2, l:receive(0.05, "never")))) end)
        local t2task = loop.spawn(function() t2 = select(2, l:receive(0.35, "never")) end)
        settle(1)                               -- t1 is out
        loop.sleep(0.05)                        -- (a wrong wake has its chance to show)
        for _, k in ipairs({ "c", "y", "a", "d", "b" }) do
          note("send " .. k)
          assert(l:send(k, k:upper()))
          settle(#log + 1)
          loop.sleep(0.05)                      -- t2's time runs out on the way
        end
        t2task:join()
      end)
      return table.concat(log, " "), tostring(t2)
    """, made.name)
    assert r == ((b"t1:timeout send c c=C send y xy:y=Y send a a=A send d d=D "
                  b"send b b=B"), b"timeout")
    assert not any(made.count().values())


def test_a_receiver_wakes_on_another_process_and_the_others_keep_running(lua, made):
    p = spawn_py("import sys, time, ipc.linda as L\nl = L.open(sys.argv[1])\n"
                 "print('ready', flush=True); time.sleep(0.3); l.send('k', 'from afar')\n",
                 made.name)
    try:
        wait_line(p)
        r = run(lua, HEAD + """
          local l = assert(linda.open(...))
          local ticks, got = 0, nil
          loop.run(function()
            local ticker = loop.spawn(function() while true do ticks = ticks + 1; loop.sleep(0.01) end end)
            local _, v = l:receive("k")
            got = v
            ticker:cancel()
          end)
          return got, ticks
        """, made.name)
        assert finish(p)[0] == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert r[0] == b"from afar"
    assert r[1] > 10, "the loop was blocked while the receive waited"


def test_send_at_the_limit_and_receive_batched_suspend_their_task(lua, made):
    r = run(lua, HEAD + """
      local l = assert(linda.open(...))
      local log = {}
      local function note(x) log[#log + 1] = x end
      l:limit("s", 2)
      loop.run(function()
        loop.spawn(function()
          assert(l:send("s", 1, 2)); note("sent 1 2")
          assert(l:send("s", 3)); note("sent 3")       -- waits: the key is full
          note("timed " .. tostring(select(2, l:send(0.05, "s", 4, 5, 6))))  -- more than the limit
        end)
        loop.spawn(function()
          local k, a, b, c = l:receive_batched("b", 3)
          note("batch " .. table.concat({ a, b, c }, ","))
        end)
        loop.sleep(0.05)
        note("recv " .. select(2, l:receive("s")))
        loop.sleep(0.1)
        l:send("b", "x"); l:send("b", "y"); loop.sleep(0.02)
        note("two in b")
        l:send("b", "z")
        loop.sleep(0.02)
      end)
      return table.concat(log, " "), l:count("s")
    """, made.name)
    assert r == (b"sent 1 2 recv 1 sent 3 timed timeout two in b batch x,y,z", 2)


# -- mixed waits -----------------------------------------------------------------------

def test_mixed_waits_linda_sem_and_sleep(lua, made, make_name):
    """A linda receive, a linda send at the limit, a semaphore and a sleep,
    each made ready in turn by main: the wake order is the order of the
    causes, and a timed wait on each kind runs out in its place."""
    s = make_name()
    r = run(lua, HEAD + """
      local lname, sname = ...
      local l = assert(linda.open(lname))
      local s = assert(sem.open(sname, 1)); assert(s:dec())
      local log = {}
      local function note(x) log[#log + 1] = x end
      l:limit("full", 0)
      loop.run(function()
        loop.spawn(function() assert(s:dec()); note("sem") end)
        loop.spawn(function() local _, v = l:receive("in"); note("recv " .. v) end)
        loop.spawn(function() assert(l:send("full", "v")); note("send") end)
        loop.spawn(function() loop.sleep(0.2); note("sleep") end)
        loop.spawn(function() note("timed sem " .. tostring(s:dec(0.03))) end)
        loop.spawn(function() note("timed linda " .. tostring(select(2, l:receive(0.06, "none")))) end)
        loop.sleep(0.1)
        s:inc(); loop.sleep(0.01)
        l:send("in", "x"); loop.sleep(0.01)
        l:limit("full", 1); loop.sleep(0.15)
        s:close()
      end)
      return table.concat(log, " "), l:count("full")
    """, made.name, s)
    assert r == (b"timed sem false timed linda timeout sem recv x send sleep", 1)


# -- cancellation takes nothing -------------------------------------------------------

def test_cancelled_receivers_take_nothing_with_processes_sending(lua, made):
    """Two processes send 150 distinct values each while tasks receive, and
    main cancels a receiver (and starts a new one) every few ms, then all
    of them: every value is received exactly once or is still in the
    linda."""
    n = 150
    senders = [spawn_py(SENDER, made.name, tag, n) for tag in ("p", "q")]
    try:
        for p in senders:
            wait_line(p)
        r = run(lua, HEAD + """
          local l = assert(linda.open(...))
          local got, dup, cancels = {}, 0, 0
          local function receiver(t)
            while true do
              local k, v = l:receive(t, "k")
              if k ~= nil then
                if got[v] then dup = dup + 1 end
                got[v] = true
              end
            end
          end
          loop.run(function()
            local tasks = {}
            -- half wait for ever, half in waits that time out at once
            local function start(i) return loop.spawn(receiver, i % 2 == 0 and 0.002 or nil) end
            for i = 1, 4 do tasks[i] = start(i) end
            for n = 1, 150 do                     -- about 0.5 s
              loop.sleep(0.003)
              local i = n % #tasks + 1
              if tasks[i]:cancel() then cancels = cancels + 1 end
              tasks[i] = start(i)
            end
            for i = 1, #tasks do tasks[i]:cancel() end
          end)
          local list = {}
          for v in pairs(got) do list[#list + 1] = v end
          table.sort(list)
          return table.concat(list, " "), dup, cancels
        """, made.name)
        for p in senders:
            code, _out, err = finish(p)
            assert code == 0, err
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
    received = r[0].decode().split()
    assert r[1] == 0, "a value was received twice"
    assert r[2] > 5, "too few cancels to test anything"
    left = []
    while True:
        try:
            left.append(made.receive("k", timeout=0)[1])
        except ipc.Timeout:
            break
    everything = sorted(received + left)
    assert everything == sorted(f"{t}:{i}" for t in ("p", "q") for i in range(n))


def test_cancelled_senders_send_nothing(lua, made):
    """Tasks send to a key of limit 1 that another process drains slowly;
    half of them are cancelled while they wait.  The values the process
    got are exactly those whose send returned true."""
    drain = spawn_py(
        "import sys, time, ipc, ipc.linda as L\nl = L.open(sys.argv[1])\n"
        "print('ready', flush=True)\ngot = []\n"
        "while True:\n"
        "    try:\n        got.append(l.receive('k', timeout=1)[1])\n"
        "    except ipc.Timeout:\n        break\n"
        "    time.sleep(0.01)\n"
        "print(' '.join(sorted(got)), flush=True)\n", made.name)
    try:
        made.limit("k", 1)
        wait_line(drain)
        r = run(lua, HEAD + """
          local l = assert(linda.open(...))
          local sent = {}
          loop.run(function()
            local tasks = {}
            for i = 1, 40 do
              local v = "v" .. i
              tasks[i] = loop.spawn(function() if l:send("k", v) == true then sent[#sent + 1] = v end end)
            end
            for i = 1, 40, 2 do loop.sleep(0.002); tasks[i]:cancel() end
            for i = 2, 40, 2 do tasks[i]:join() end
          end)
          table.sort(sent)
          return table.concat(sent, " ")
        """, made.name)
        code, out, err = finish(drain, 30)
        assert code == 0, err
    finally:
        if drain.poll() is None:
            drain.kill()
    sent = r[0].decode().split()
    assert sorted(out.split()) == sorted(sent)
    assert {f"v{i}" for i in range(2, 41, 2)} <= set(sent)
    assert len(sent) < 40, "no send was cancelled while it waited"


def test_a_run_ending_with_linda_waits_leaves_no_helper(lua, made):
    """A task cancelled, one timed out, two dropped when run ends with an
    error: no helper thread outlives the loop by long, and nothing was
    taken from the linda."""
    r = run(lua, HEAD + """
      local l = assert(linda.open(...))
      return pcall(loop.run, function()
        local a = loop.spawn(function() l:receive("k") end)
        loop.spawn(function() l:receive(0.02, "k") end)
        loop.spawn(function() l:receive("k") end)          -- dropped at the end
        loop.spawn(function() l:receive(5, "k") end)       -- dropped too
        loop.sleep(0.05)
        a:cancel()
        loop.sleep(0.01)
        error("the end", 0)
      end)
    """, made.name)
    assert r[0] is False and r[1].startswith(b"the end")
    assert _helpers_gone()
    made.send("k", 1)
    assert made.count("k") == 1


# -- lanes --------------------------------------------------------------------------

def test_lane_join_in_a_task_while_other_tasksaio_run(lua):
    r = run(lua, HEAD + """
      local ticks = 0
      local log = {}
      loop.run(function()
        local ticker = loop.spawn(function() while true do ticks = ticks + 1; loop.sleep(0.01) end end)
        local g = lanes.gen(function(x)
          local t0 = os.clock(); while os.clock() - t0 < 0.3 do end
          return x * 2, "two"
        end)
        local h = g(21)
        log[#log + 1] = tostring(select(2, h:join(0.01)))   -- timeout, while it runs
        local before = ticks
        local ok, a, b = h:join()
        log[#log + 1] = tostring(ok) .. " " .. a .. " " .. b
        log[#log + 1] = tostring(ticks - before > 5)
        log[#log + 1] = tostring(h[1])
        ticker:cancel()
      end)
      return table.concat(log, " ")
    """)
    assert r == (b"timeout true 42 two true 42",)


def test_lane_join_cancelled_in_a_task_keeps_the_result(lua):
    """A task joining a lane is cancelled; another joins it afterwards and
    gets the result (the cancelled join took nothing)."""
    r = run(lua, HEAD + """
      local out
      loop.run(function()
        local h = lanes.gen(function() local t0 = os.clock(); while os.clock() - t0 < 0.15 do end return "r" end)()
        local j = loop.spawn(function() return h:join() end)
        loop.sleep(0.02)
        j:cancel()
        local ok, v = h:join()
        out = tostring(ok) .. " " .. v .. " " .. j:status()
      end)
      return out
    """)
    assert r == (b"true r cancelled",)


# -- Ctrl-C, CPU ------------------------------------------------------------------------

def test_ctrl_c_ends_run_waiting_on_lindas_and_a_lane(engine, tmp_path, made):
    skip_if_missing(engine)
    made.limit("full", 0)
    script = tmp_path / "ctrlc.lua"
    script.write_text(HEAD + """
      local l = assert(linda.open(arg[1]))
      loop.run(function()
        for i = 1, 3 do loop.spawn(function() l:receive("k", "k" .. i) end) end
        loop.spawn(function() l:send("full", 1) end)
        local h = lanes.gen(function() require("ipc.loop").sleep(30) end)()
        loop.spawn(function() h:join() end)
        loop.sleep(0.1)                        -- every task in its wait
        print("waiting"); io.stdout:flush()
        l:receive("never")
      end)
      print("not reached")
    """)
    p = spawn_luaipc([script, made.name], engine=engine)
    assert read_line(p) == "waiting"
    out, _ = ctrl_c(p)
    assert "not reached" not in out
    # Nothing taken, nothing stuck: a value sent now stays for whoever asks.
    made.send("k", 1)
    assert made.receive("k", timeout=0) == ("k", 1)
    assert made.count("full") == 0


@pytest.mark.parametrize("engine", TWO_ENGINES)
def test_a_loop_waiting_on_lindas_uses_no_cpu(engine, tmp_path, made):
    skip_if_missing(engine)
    script = tmp_path / "idle.lua"
    script.write_text(HEAD + """
      local l = assert(linda.open(arg[1]))
      loop.run(function()
        for i = 1, 20 do loop.spawn(function() l:receive("k" .. i) end) end
        loop.spawn(function() l:receive("stop"); os.exit(0) end)
        loop.sleep(0.2)
        print("ready"); io.stdout:flush()
      end)
    """)
    p = spawn_luaipc([script, made.name], engine=engine)
    try:
        wait_line(p)
        import psutil
        ps = psutil.Process(p.pid)
        before = ps.cpu_times()
        time.sleep(1.5)
        after = ps.cpu_times()
        made.send("stop", True)
        code, _out, err = finish(p)
        assert code == 0, err
    finally:
        if p.poll() is None:
            p.kill()
    # 21 helper threads asleep on the futex (and their 1 s slices): a poll
    # of even 10 ms by any of them would cost far more than this.
    assert (after.user + after.system) - (before.user + before.system) < 0.05


# -- outside a loop: unchanged --------------------------------------------------------

def test_outside_a_loop_the_calls_block_as_before(lua, made):
    """No loop: receive waits its timeout, send at the limit waits for room
    made by another process, a lane's join blocks.  In a loop but in a
    coroutine of the task's own (not the task), the call blocks too."""
    p = spawn_py("import sys, time, ipc.linda as L\nl = L.open(sys.argv[1])\n"
                 "print('ready', flush=True); time.sleep(0.2); print(l.receive('full')[1])\n",
                 made.name)
    try:
        wait_line(p)
        r = run(lua, HEAD + """
          local l = assert(linda.open(...))
          local out = {}
          local a, b = l:receive(0.05, "none")     -- ipc.loop loaded, no loop running
          out[#out + 1] = tostring(a) .. " " .. tostring(b)
          l:limit("full", 1); assert(l:send("full", 1))
          assert(l:send("full", 2))        -- blocks until the process takes one
          out[#out + 1] = "sent"
          local h = lanes.gen(function() return "lane" end)()
          out[#out + 1] = select(2, h:join())
          loop.run(function()
            local co = coroutine.wrap(function() return select(2, l:receive(0.05, "none")) end)
            out[#out + 1] = "in a coroutine " .. tostring(co())
          end)
          return table.concat(out, " ")
        """, made.name)
        code, out, err = finish(p)
        assert code == 0, err
    finally:
        if p.poll() is None:
            p.kill()
    assert r == (b"nil timeout sent lane in a coroutine timeout",)
    assert out.strip() == "1"


# -- asyncio ---------------------------------------------------------------------------



def test_asyncio_receive_wakes_on_another_process(made):
    p = spawn_py("import sys, time, ipc.linda as L\nl = L.open(sys.argv[1])\n"
                 "print('ready', flush=True); time.sleep(0.3); l.send('b', {'n': 1})\n", made.name)
    try:
        wait_line(p)

        async def main():
            stop = asyncio.Event()
            tick = asyncio.ensure_future(ticker(stop))
            got = await aio.receive(made, "a", "b")
            stop.set()
            return got, await tick
        got, ticks = aio_run(main())
        assert finish(p)[0] == 0
    finally:
        if p.poll() is None:
            p.kill()
    assert got == ("b", {"n": 1})
    assert ticks > 10, "the event loop was blocked while receive waited"


def test_asyncio_send_receive_batched_and_timeouts(made):
    async def main():
        made.limit("s", 1)
        await aio.send(made, "s", "one")
        with pytest.raises(ipc.Timeout, match="room in key 's'"):
            await aio.send(made, "s", "two", timeout=0.05)
        late = asyncio.ensure_future(aio.send(made, "s", "two"))
        await asyncio.sleep(0.05)
        assert not late.done()
        assert made.receive("s") == ("s", "one")
        await late
        with pytest.raises(ipc.Timeout, match="a value in linda"):
            await aio.receive(made, "none", timeout=0.05)
        with pytest.raises(ipc.Timeout):
            await aio.receive(made, "none", timeout=0)
        batch = asyncio.ensure_future(aio.receive_batched(made, "b", 2, 3))
        made.send("b", 1)
        await asyncio.sleep(0.05)
        assert not batch.done()
        made.send("b", 2, 3, 4)
        return await batch
    assert aio_run(main()) == [1, 2, 3]
    assert made.count("b") == 1 and made.get("s") == "two"
    with pytest.raises(ValueError):
        aio_run(aio.receive(made))
    with pytest.raises(TypeError):
        aio_run(aio.receive(made, object()))
    with pytest.raises(TypeError):
        aio_run(aio.receive_batched(object(), "k", 1))  # type: ignore[arg-type]


def test_asyncio_cancel_and_wait_for_lose_nothing(made):
    """Two processes send while coroutines receive, some under
    asyncio.wait_for with short timeouts and some cancelled at random:
    every value is received once or still in the linda."""
    n = 150
    senders = [spawn_py(SENDER, made.name, tag, n) for tag in ("p", "q")]
    try:
        for p in senders:
            wait_line(p)

        async def main():
            got: list[str] = []
            cancels = 0

            async def receiver(t):
                while True:
                    try:
                        if t is None:
                            got.append((await aio.receive(made, "k"))[1])
                        else:
                            got.append((await asyncio.wait_for(aio.receive(made, "k"), t))[1])
                    except asyncio.TimeoutError:
                        pass

            # half wait for ever, half under wait_for timeouts of a moment
            def start(i):
                return asyncio.ensure_future(receiver(0.002 if i % 2 else None))
            tasks = [start(i) for i in range(4)]
            for n in range(150):                           # about 0.5 s
                await asyncio.sleep(0.003)
                i = n % len(tasks)
                if tasks[i].cancel():
                    cancels += 1
                tasks[i] = start(i)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            return got, cancels
        got, cancels = aio_run(main())
        for p in senders:
            code, _out, err = finish(p)
            assert code == 0, err
    finally:
        for p in senders:
            if p.poll() is None:
                p.kill()
    assert cancels > 5
    assert len(got) == len(set(got)), "a value was received twice"
    left = []
    while True:
        try:
            left.append(made.receive("k", timeout=0)[1])
        except ipc.Timeout:
            break
    assert sorted(got + left) == sorted(f"{t}:{i}" for t in ("p", "q") for i in range(n))
    assert _helpers_gone()


def test_asyncio_mixed_with_a_semaphore(made, make_name):
    s = sem.open(make_name(), 1)
    s.dec()
    try:
        async def main():
            log = []

            async def on_sem():
                await aio.acquire(s)
                log.append("sem")

            async def on_linda():
                log.append((await aio.receive(made, "k"))[1])
            ts = [asyncio.ensure_future(on_sem()), asyncio.ensure_future(on_linda())]
            await asyncio.sleep(0.05)
            made.send("k", "linda")
            await asyncio.sleep(0.05)
            s.inc()
            await asyncio.gather(*ts)
            return log
        assert aio_run(main()) == ["linda", "sem"]
    finally:
        s.close()


def test_asyncio_under_anyio(made):
    anyio = pytest.importorskip("anyio")

    async def main():
        got = []

        async def receiver():
            got.append(await aio.receive(made, "k"))
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.sleep(0.05)
            made.send("k", 1)
        with anyio.move_on_after(0.05) as scope:
            await aio.receive(made, "k")
        made.send("k", 2)                            # the cancelled wait took nothing
        return got, scope.cancelled_caught, made.count("k")
    assert anyio.run(main, backend="asyncio") == ([("k", 1)], True, 1)


def test_asyncio_queue_calls_unchanged(make_name):
    """receive/send still take a queue, positional timeout included."""
    from ipc import mq
    q = mq.open(make_name(), 2, 16)
    try:
        async def main():
            await aio.send(q, b"a", 1.0, 3)
            return await aio.receive(q, 1.0)
        assert aio_run(main()) == (b"a", 3)
    finally:
        q.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))
