"""The agent's send backlog: a peer's share counts sends that wait, not a burst's tail."""

from __future__ import annotations

import asyncio

from agentmesh.edge import agent as agent_module
from agentmesh.edge.agent import Agent

SHARE = agent_module._SENDS_IN_FLIGHT_PER_PEER_MAX


def _bare_agent() -> Agent:
    """Only the send-backlog state of an Agent (no transport, no membership)."""
    agent = Agent.__new__(Agent)
    agent._sends = set()
    agent._sends_per_peer = {}
    agent.counters = {}
    return agent


async def _scenario() -> tuple[Agent, list[int], int]:
    agent = _bare_agent()
    delivered: list[int] = []
    never = asyncio.Event()

    async def instant(n: int) -> None:  # a live peer: the frame goes out in the first step
        delivered.append(n)

    async def stuck() -> None:  # a dead peer: waits for ACKs that never come
        await never.wait()

    burst = 3 * SHARE  # e.g. a view change's VIEW-CHANGE plus 64 resent requests, and more
    for n in range(burst):  # one synchronous pass, as a replica's drain sends them
        agent._spawn_send("live", instant(n))
    for _ in range(2 * SHARE):
        agent._spawn_send("dead", stuck())
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    agent._spawn_send("live", instant(burst))  # live peers still get through
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    waiting_dead = agent._sends_per_peer.get("dead", 0)
    for task in list(agent._sends):
        task.cancel()
    await asyncio.sleep(0)
    return agent, delivered, waiting_dead


def test_a_burst_to_a_live_peer_is_not_cut_while_a_dead_peer_keeps_only_its_share() -> None:
    agent, delivered, waiting_dead = asyncio.run(_scenario())
    assert delivered == list(range(3 * SHARE + 1)), f"{len(delivered)} delivered"
    assert waiting_dead == SHARE  # the dead peer's sends wait, at most its share of them
    assert agent.counters.get("drop_send_peer_backlog") == SHARE
    assert not agent._sends and not agent._sends_per_peer
