"""asyncio in the tests: one way to run a coroutine with a deadline, and a
ticker that shows the event loop ran while something was awaited."""
from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["run", "ticker"]


def run(coro: Any) -> Any:
    """``asyncio.run`` with a 60 s deadline: a hang fails, never stalls."""
    return asyncio.run(asyncio.wait_for(coro, 60))


async def ticker(stop: asyncio.Event) -> int:
    """Count 5 ms ticks until ``stop``: more than a few means the loop went
    on while another task awaited."""
    n = 0
    while not stop.is_set():
        n += 1
        await asyncio.sleep(0.005)
    return n
