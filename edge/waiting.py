"""Timed waits that never swallow a cancellation.

On CPython before 3.12, `asyncio.wait_for` returns normally when the task is
cancelled in the same loop turn as the awaited thing completes (CPython
gh-86296): the cancellation is lost. A loop such as `while True: await
wait_for(event.wait(), t)` then never ends, and `gather()` on it in a close()
hangs for ever. Every timed wait in the agent goes through these two instead;
`asyncio.wait` propagates a cancellation of the waiter unconditionally.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def wait_event(event: asyncio.Event, timeout_s: float) -> bool:
    """Wait until `event` is set or `timeout_s` passes; True when it was set."""
    if event.is_set():
        return True
    if timeout_s <= 0:
        return False
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((waiter,), timeout=timeout_s)
    finally:
        waiter.cancel()
    return event.is_set()


async def wait_within(awaitable: Awaitable[T], timeout_s: float) -> T:
    """`await awaitable`, raising TimeoutError after `timeout_s` (it is cancelled then)."""
    task = asyncio.ensure_future(awaitable)
    try:
        done, _ = await asyncio.wait((task,), timeout=max(timeout_s, 0.0))
    except asyncio.CancelledError:
        task.cancel()
        raise
    if not done:
        task.cancel()
        await asyncio.wait((task,))  # a cancellation of ours still propagates from here
        raise TimeoutError(f"not done within {timeout_s:.3f} s")
    return task.result()
