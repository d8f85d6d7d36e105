"""The agent's send backlog: a dead peer's stuck sends never starve the live peers."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentmesh.edge.agent import (
    _SENDS_IN_FLIGHT_MAX,
    _SENDS_IN_FLIGHT_PER_PEER_MAX,
    Agent,
    AgentConfig,
)


def test_stuck_sends_to_one_peer_are_capped_and_others_still_go(tmp_path: Path) -> None:
    async def scenario() -> None:
        agent = Agent(AgentConfig(state_dir=tmp_path, admission="open", loopback=True))
        stuck = asyncio.Event()  # never set: each send waits like one to a dead peer
        for _ in range(_SENDS_IN_FLIGHT_MAX):
            agent._spawn_send("dead-peer", stuck.wait())
        # The share is taken at a send's first step, not at spawn; the dropped sends
        # leave the backlog in their done callbacks, one loop turn later.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert agent.counters["drop_send_peer_backlog"] == (
            _SENDS_IN_FLIGHT_MAX - _SENDS_IN_FLIGHT_PER_PEER_MAX
        )
        delivered = asyncio.Event()

        async def deliver() -> None:
            delivered.set()

        agent._spawn_send("live-peer", deliver())
        await asyncio.wait_for(delivered.wait(), 2.0)
        await asyncio.sleep(0)
        assert agent._sends_per_peer == {"dead-peer": _SENDS_IN_FLIGHT_PER_PEER_MAX}
        assert "drop_send_backlog" not in agent.counters
        for task in list(agent._sends):
            task.cancel()
        await asyncio.gather(*agent._sends, return_exceptions=True)
        await asyncio.sleep(0)
        assert agent._sends_per_peer == {} and not agent._sends
        agent.store.close()

    asyncio.run(scenario())
