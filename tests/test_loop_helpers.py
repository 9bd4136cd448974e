"""ipc.loop's helper threads (ipc/loop/_standin.py), which stand in for a
descriptor while a task waits on a semaphore, an fcntl lock or a linda:
a helper that is done is kept for the next wait (starting a thread costs
more than a wake), at most IDLE_MAX of them and each at most IDLE_SECONDS,
and a child made by fork() starts its own."""
from __future__ import annotations

import asyncio
import os
import threading
import time

import pytest
from helpers.aio import run as aio_run

import ipc.loop as aio
from ipc import sem
from ipc.loop import _standin

pytestmark = pytest.mark.timeout(60)


def _helpers(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def _until(cond, within: float = 5.0) -> bool:
    end = time.monotonic() + within
    while not cond():
        if time.monotonic() > end:
            return False
        time.sleep(0.01)
    return True


def _one_wait(s) -> threading.Thread:
    """One acquire that has to wait (a thread gives the unit after it
    started); the helper thread that waited."""
    seen: list[threading.Thread] = []

    def give() -> None:
        assert _until(lambda: bool(_helpers(_standin.BUSY)))
        seen.extend(_helpers(_standin.BUSY))
        s.inc()

    async def main() -> None:
        t = threading.Thread(target=give)
        t.start()
        await aio.acquire(s, timeout=10)
        await asyncio.get_running_loop().run_in_executor(None, t.join)
    aio_run(main())
    assert len(seen) == 1
    return seen[0]


@pytest.fixture(autouse=True)
def _quiet():
    """No helper of an earlier test still at work (a cancelled wait's may
    finish its slice): each test sees only its own."""
    assert _until(lambda: not _helpers(_standin.BUSY), within=10)


@pytest.fixture
def s(make_name):
    h = sem.open(make_name(), 1)
    h.dec()
    yield h
    h.close()


def test_a_done_helper_is_kept_and_serves_the_next_wait(s):
    first = _one_wait(s)
    assert _until(lambda: first.name == _standin.IDLE)   # kept, not ended
    assert first.is_alive()
    second = _one_wait(s)
    assert second is first                               # no new thread
    assert s.value == 0


def test_idle_helpers_end_after_idle_seconds(s, monkeypatch):
    monkeypatch.setattr(_standin, "IDLE_SECONDS", 0.2)
    helper = _one_wait(s)
    assert _until(lambda: not helper.is_alive(), within=5)
    assert helper not in _helpers(_standin.IDLE)


def test_at_most_idle_max_helpers_are_kept(make_name, monkeypatch):
    monkeypatch.setattr(_standin, "IDLE_MAX", 8)
    n = _standin.IDLE_MAX + 4
    sems = [sem.open(make_name(), 1) for _ in range(n)]
    try:
        for h in sems:
            h.dec()

        async def main() -> None:
            waits = [asyncio.ensure_future(aio.acquire(h, timeout=10)) for h in sems]
            assert await asyncio.get_running_loop().run_in_executor(
                None, lambda: _until(lambda: len(_helpers(_standin.BUSY)) >= n))
            for h in sems:
                h.inc()
            await asyncio.gather(*waits)
        aio_run(main())
        assert _until(lambda: not _helpers(_standin.BUSY))
        assert len(_helpers(_standin.IDLE)) <= _standin.IDLE_MAX
        assert all(h.value == 0 for h in sems)
    finally:
        for h in sems:
            h.close()


def test_a_forked_child_starts_its_own_helpers(s):
    """The parent's idle helpers do not exist in a child made by fork():
    a wait there must start a thread, not hand its job to a dead one."""
    _one_wait(s)
    assert _helpers(_standin.IDLE)
    pid = os.fork()
    if pid == 0:                                  # the child
        code = 1
        try:
            code = 0 if _one_wait(s).is_alive() else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert s.value == 0
