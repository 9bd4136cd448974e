"""ipc.loop for Python: asyncio coroutines over semaphores, queues,
processes and file locks, with real other processes on the far side, and
cancellation (task.cancel, asyncio.wait_for) that loses no unit, message or
lock."""
from __future__ import annotations

import asyncio
import sys

import psutil
import pytest
from helpers.aio import run as aio_run, ticker
from helpers.children import finish, spawn_py, wait_line

import ipc
import ipc.loop as aio
from ipc import mq, proc, sem

pytestmark = pytest.mark.timeout(120)



def _helpers_done(within: float = 5.0) -> None:
    """Wait for the helper threads of cancelled waits to be done (idle or
    ended: helpers are kept for the next wait, under another name).  One
    still inside its dec() slice (up to SEM_SLICE) may take a unit that
    was given meanwhile; it hands it straight back, but until then the
    unit is away."""
    import threading
    import time
    end = time.monotonic() + within
    while (any(t.name == "ipc.loop helper" for t in threading.enumerate())
           and time.monotonic() < end):
        time.sleep(0.01)



def test_acquire_wakes_on_another_process_while_the_loop_runs(make_name):
    s = sem.open(make_name(), 1)
    s.dec()
    p = spawn_py("import ipc, sys, time\ns = ipc.sem.open(sys.argv[1])\n"
                 "print('ready', flush=True); time.sleep(0.3); s.inc()\n", s.name)
    try:
        wait_line(p)

        async def main():
            stop = asyncio.Event()
            tick = asyncio.ensure_future(ticker(stop))
            await aio.acquire(s)
            stop.set()
            return await tick
        ticks = aio_run(main())
        assert ticks > 10, "the loop was blocked while acquire waited"
        assert finish(p)[0] == 0
        assert s.value == 0
    finally:
        s.close()


def test_acquire_timeout_and_holding(make_name):
    s = sem.open(make_name(), 1)
    try:
        async def main():
            async with aio.holding(s):
                with pytest.raises(ipc.Timeout, match="semaphore"):
                    await aio.acquire(s, timeout=0.05)
                with pytest.raises(ipc.Timeout):
                    await aio.acquire(s, timeout=0)
            await asyncio.get_running_loop().run_in_executor(None, _helpers_done)
            await aio.acquire(s, 0)           # given back by holding
            s.inc()
        aio_run(main())
        _helpers_done()                       # the timed-out acquire's, at most 1 s
        assert s.value == 1
    finally:
        s.close()


@pytest.mark.timeout(180)
def test_racing_cancels_and_timeouts_lose_no_unit(make_name):
    """Another process gives 200 units while 6 coroutines take them with
    short wait_for timeouts and a seventh cancels them at random."""
    s = sem.open(make_name(), 1)
    s.dec()
    p = spawn_py("import ipc, sys, time, random\ns = ipc.sem.open(sys.argv[1])\n"
                 "print('ready', flush=True)\n"
                 "for i in range(200):\n    s.inc(); time.sleep(random.random() * 0.004)\n",
                 s.name)
    try:
        wait_line(p)
        took = 0

        async def taker():
            nonlocal took
            while True:
                try:
                    await asyncio.wait_for(aio.acquire(s), 0.01)
                except asyncio.TimeoutError:
                    continue
                took += 1

        async def main():
            import random
            ts = [asyncio.ensure_future(taker()) for _ in range(6)]
            cancels = 0
            while p.poll() is None:
                await asyncio.sleep(random.random() * 0.01)
                i = random.randrange(6)
                ts[i].cancel()
                cancels += 1
                ts[i] = asyncio.ensure_future(taker())
            for t in ts:
                t.cancel()
            await asyncio.gather(*ts, return_exceptions=True)
            await asyncio.sleep(1.5)              # stray helpers give back (1 s slices)
            return cancels
        cancels = aio_run(main())
        _helpers_done()
        assert p.wait(10) == 0
        left = 0
        while s.dec(0):
            left += 1
        assert took + left == 200, (took, left)
        assert cancels > 0
    finally:
        s.close()


def test_many_receives_on_few_queues_each_message_once(make_name):
    names = [make_name() for _ in range(3)]
    qs = [mq.open(n, 10, 64) for n in names]
    p = spawn_py("import ipc, sys\nqs = [ipc.mq.open(n) for n in sys.argv[1:]]\n"
                 "print('ready', flush=True)\n"
                 "for i in range(300):\n    qs[i % 3].send(str(i).encode())\n", *names)
    try:
        wait_line(p)

        async def main():
            rs = [aio.receive(qs[i % 3]) for i in range(300)]
            return await asyncio.gather(*rs)
        got = aio_run(main())
        assert finish(p)[0] == 0
        assert sorted(int(d) for d, _prio in got) == list(range(300))
    finally:
        for q in qs:
            q.close()


def test_a_cancelled_receive_leaves_the_message_and_send_waits_for_room(make_name):
    q = mq.open(make_name(), 1, 16)
    try:
        async def main():
            t = asyncio.ensure_future(aio.receive(q))
            await asyncio.sleep(0.05)
            t.cancel()
            await asyncio.gather(t, return_exceptions=True)
            await aio.send(q, b"one")
            with pytest.raises(ipc.Timeout, match="room"):
                await aio.send(q, b"two", timeout=0.05)   # full
            later = asyncio.ensure_future(aio.send(q, b"three"))
            await asyncio.sleep(0.05)
            first = await aio.receive(q)
            await later
            return first, await aio.receive(q, timeout=1)
        assert aio_run(main()) == ((b"one", 0), (b"three", 0))
        with pytest.raises(ipc.Timeout):
            q.receive(0)
    finally:
        q.close()


def test_a_woken_receive_cancelled_before_it_tries_hands_its_turn_on(make_name):
    """A message wakes one waiter of its queue, not all (ipc/loop/__init__.py,
    _Ready); if that one is cancelled before it has tried, the next waiter
    gets the message: no wake-up is lost."""
    q = mq.open(make_name(), 4, 16)
    try:
        async def main():
            from ipc.loop import _ready
            from ipc.loop._standin import mq_fd
            first = asyncio.ensure_future(aio.receive(q))
            second = asyncio.ensure_future(aio.receive(q))
            await asyncio.sleep(0.02)                 # both wait
            q.send(b"one")
            await asyncio.sleep(0)                    # the reader fires: `first` is woken
            await asyncio.sleep(0)
            waiters = _ready[asyncio.get_running_loop()].waiting[(mq_fd(q), False)]
            woken = (waiters.woken, len(waiters.futs))
            first.cancel()                            # before it could try
            await asyncio.gather(first, return_exceptions=True)
            return woken, first.cancelled(), await asyncio.wait_for(second, 5)
        assert aio_run(main()) == ((1, 1), True, (b"one", 0))
    finally:
        q.close()


def test_wait_drives_many_processes_at_once():
    async def main():
        out: dict[int, bytes] = {}

        def cb(i):
            return lambda _stream, data: out.__setitem__(i, out.get(i, b"") + data)
        hs = [proc.spawn(["sh", "-c", f"sleep 0.2; cat; exit {i}"], stdin=True, stdout=True,
                         callback=cb(i)) for i in range(5)]
        for i, h in enumerate(hs):
            h.write(b"x" * (100000 * (i + 1)))
            h.close_stdin()
        codes = await asyncio.gather(*(aio.wait(h) for h in hs))
        return codes, {i: len(v) for i, v in out.items()}
    codes, sizes = aio_run(main())
    assert codes == [0, 1, 2, 3, 4]
    assert sizes == {i: 100000 * (i + 1) for i in range(5)}


def test_wait_timeout_leaves_the_process_to_wait_again():
    h = proc.spawn(["sleep", "0.3"])
    try:
        async def main():
            with pytest.raises(ipc.Timeout):
                await aio.wait(h, timeout=0.05)
            return await aio.wait(h)
        assert aio_run(main()) == 0
    finally:
        h.close()


def test_locked_waits_for_another_process_and_cancel_takes_nothing(tmp_path):
    path = tmp_path / "data"
    path.write_bytes(b"x" * 8)
    holder = spawn_py("import fcntl, sys, time\nf = open(sys.argv[1], 'r+b')\n"
                      "fcntl.lockf(f, fcntl.LOCK_EX); print('ready', flush=True)\n"
                      "time.sleep(0.4)\n", path)
    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'r+b')\n"
             "try:\n    fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except OSError:\n    print('locked')\nelse:\n    print('free')")
    try:
        wait_line(holder)
        with open(path, "r+b") as f:
            async def main():
                t = asyncio.ensure_future(aio.locked(f, "w").__aenter__())
                await asyncio.sleep(0.05)
                t.cancel()                                  # while the holder has it
                await asyncio.gather(t, return_exceptions=True)
                with pytest.raises(ipc.Timeout, match="lock"):
                    async with aio.locked(f, "w", timeout=0.05):
                        pass
                async with aio.locked(f, "w"):             # once the holder is gone
                    during = finish(spawn_py(probe, path))[1].strip()
                return during
            assert aio_run(main()) == "locked"
        assert finish(holder)[0] == 0
        assert finish(spawn_py(probe, path))[1].strip() == "free"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


@pytest.mark.parametrize(("fn", "args"), [
    (aio.acquire, (1,)), (aio.receive, ("q",)), (aio.send, (None, b"x")),
    (aio.wait, (object(),)), (aio.acquire, (None, "x")),
])
def test_bad_arguments_are_type_errors(fn, args):
    with pytest.raises(TypeError):
        aio_run(fn(*args))


def test_bad_lock_mode_changes_nothing(tmp_path):
    path = tmp_path / "d"
    path.write_bytes(b"x")

    async def main():
        with open(path, "r+b") as f:
            async with aio.locked(f, "x"):
                pass
    with pytest.raises(ValueError, match="mode"):
        aio_run(main())


def test_under_anyio_asyncio_backend(make_name):
    """The same calls from anyio code (its asyncio backend), with anyio's
    own cancel scopes doing the timing out."""
    anyio = pytest.importorskip("anyio")
    s = sem.open(make_name(), 1)
    q = mq.open(make_name(), 4, 64)
    try:
        async def main():
            got = []
            async with anyio.create_task_group() as tg:
                async def rx():
                    got.append(await aio.receive(q))
                for _ in range(3):
                    tg.start_soon(rx)
                await anyio.sleep(0.05)
                for m in (b"a", b"b", b"c"):
                    await aio.send(q, m)
            async with aio.holding(s):
                with anyio.move_on_after(0.05) as scope:
                    await aio.acquire(s)          # held: cancelled by the scope
            h = proc.spawn(["true"])
            return sorted(d for d, _ in got), scope.cancelled_caught, await aio.wait(h)
        assert anyio.run(main, backend="asyncio") == ([b"a", b"b", b"c"], True, 0)
        _helpers_done()
        assert s.value == 1                       # the cancelled acquire took nothing
    finally:
        s.close()
        q.close()


def test_run_collects_output_while_other_tasks_go_on():
    async def main():
        stop = asyncio.Event()
        ticks = asyncio.ensure_future(ticker(stop))
        r1, r2 = await asyncio.gather(
            aio.run([sys.executable, "-c", ("import sys, time; time.sleep(0.3); "
                     "sys.stdout.write(sys.stdin.read().upper()); sys.stderr.write('e')")],
                    b"abc"),
            aio.run([["printf", "b\\na\\n"], ["sort"]]))
        stop.set()
        return r1, r2, await ticks

    r1, r2, ticks = aio_run(main())
    assert (r1.returncode, r1.stdout, r1.stderr) == (0, b"ABC", b"e")
    assert (r2.returncode, r2.stdout) == (0, b"a\nb\n")
    assert ticks >= 3                        # the loop ran meanwhile


def test_run_timeout_and_cancel_kill_the_tree():
    code = "import os, time; print(os.getpid(), flush=True); time.sleep(60)"

    async def timed():
        return await aio.run([sys.executable, "-c", code], timeout=0.3)

    with pytest.raises(ipc.Timeout):
        aio_run(timed())

    async def cancelled():
        task = asyncio.ensure_future(aio.run([sys.executable, "-c", code]))
        await asyncio.sleep(0.3)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    before = {c.pid for c in psutil.Process().children(recursive=True)}
    aio_run(cancelled())
    left = [c for c in psutil.Process().children(recursive=True)
            if c.pid not in before and c.status() != psutil.STATUS_ZOMBIE]
    assert not left


def test_run_check_raises_called_process_error():
    with pytest.raises(proc.CalledProcessError):
        aio_run(aio.run([sys.executable, "-c", "raise SystemExit(3)"], check=True))
