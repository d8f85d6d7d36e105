"""Timed waits: results, timeouts, and a cancellation racing completion is never lost."""

from __future__ import annotations

import asyncio

import pytest

from agentmesh.edge.waiting import wait_event, wait_within


async def _loop_on(event: asyncio.Event) -> None:
    while True:
        event.clear()
        await wait_event(event, 10.0)


def test_wait_event_reports_set_and_timeout() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        event = asyncio.Event()
        timed_out = await wait_event(event, 0.01)
        asyncio.get_running_loop().call_later(0.01, event.set)
        woken = await wait_event(event, 5.0)
        already = await wait_event(event, 0.0)
        return timed_out, woken, already

    assert asyncio.run(scenario()) == (False, True, True)


def test_cancel_in_the_turn_the_event_is_set_ends_the_loop() -> None:
    """The race that made `asyncio.wait_for` loops hang close() on CPython < 3.12."""

    async def scenario() -> None:
        for _ in range(50):
            event = asyncio.Event()
            task = asyncio.create_task(_loop_on(event))
            for _ in range(3):
                await asyncio.sleep(0)
            event.set()
            task.cancel()
            done, _ = await asyncio.wait((task,), timeout=2.0)
            assert done, "the waiting loop swallowed its cancellation"
            assert task.cancelled()

    asyncio.run(scenario())


def test_wait_within_returns_times_out_and_cancels() -> None:
    async def scenario() -> None:
        assert await wait_within(asyncio.sleep(0.001, result=7), 5.0) == 7
        slow = asyncio.ensure_future(asyncio.sleep(10))
        with pytest.raises(TimeoutError):
            await wait_within(slow, 0.01)
        assert slow.cancelled()

    asyncio.run(scenario())


def test_wait_within_propagates_the_callers_cancellation() -> None:
    async def scenario() -> None:
        inner = asyncio.ensure_future(asyncio.sleep(10))
        outer = asyncio.create_task(wait_within(inner, 10.0))
        await asyncio.sleep(0.01)
        outer.cancel()
        with pytest.raises(asyncio.CancelledError):
            await outer
        await asyncio.sleep(0)
        assert inner.cancelled()

    asyncio.run(scenario())
