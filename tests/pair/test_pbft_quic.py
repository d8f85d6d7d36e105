"""Four replica hosts over real QUIC on 127.0.0.1 with real SQLite; one restarts from disk."""

from __future__ import annotations

import asyncio
from pathlib import Path

from agentmesh.core.consensus import Committee, ConsensusConfig, Entry
from agentmesh.core.node import Event
from agentmesh.edge.consensus_host import ConsensusHost, ConsensusStore, bench_identity
from agentmesh.edge.state import StateStore
from agentmesh.edge.transport import QuicTransport

CONFIG = ConsensusConfig(
    checkpoint_interval=4,
    window=8,
    batch_entries_max=4,
    retained_batches_max=16,
    view_change_timeout_ms=1000,
)
TIMEOUT_S = 30.0


class Node:
    def __init__(self, index: int, root: Path, ids: list[str], ports: dict[str, int]) -> None:
        self.identity = bench_identity(index)
        self.root = root / f"n{index}"
        self.root.mkdir(exist_ok=True)
        self.ids = ids
        self.ports = ports
        self.decided: list[tuple[int, bytes]] = []
        self.host: ConsensusHost | None = None
        self.crashed = False

    def on_decided(self, event: Event) -> None:
        self.decided.append((event.data["seq"], event.data["digest"]))

    async def start(self) -> None:
        port = self.ports.get(self.identity.peer_id, 0)
        for _ in range(50):  # the crashed socket's port is released asynchronously
            self.transport = QuicTransport(self.identity, "127.0.0.1", port)
            try:
                await self.transport.start()
                break
            except OSError:
                await asyncio.sleep(0.05)
        self.ports[self.identity.peer_id] = self.transport.local_address[1]
        self.state = StateStore(self.root)

    async def run(self) -> None:
        addresses = {peer: ("127.0.0.1", port) for peer, port in self.ports.items()}
        self.host = ConsensusHost(
            self.identity,
            Committee(0, tuple(self.ids)),
            addresses,
            self.transport,
            ConsensusStore(self.state.connection),
            CONFIG,
            self.on_decided,
        )
        await self.host.start()

    async def crash(self) -> None:
        """Stop without a last flush: only what was committed to SQLite survives."""
        assert self.host is not None
        for task in self.host._tasks:
            task.cancel()
        await asyncio.gather(*self.host._tasks, return_exceptions=True)
        await self.transport.close()
        self.state.close()
        self.crashed = True


def _describe(nodes: list[Node]) -> str:
    """Each replica's position, counters and connections: what a timeout needs explained."""
    lines = []
    for i, node in enumerate(nodes):
        if node.host is None:
            continue
        r = node.host.replica
        lines.append(
            f"n{i}: view={r.view} changing={r.view_changing} executed={r.last_executed} "
            f"stable={r.stable.seq} low={r.low_mark} pending={len(r.pending)} "
            f"replica={r.counters} host={node.host.counters} "
            f"transport={node.transport.counters} connected={node.transport.connected_peers()}"
        )
    return "\n".join(lines)


async def _until(predicate: object, what: str, nodes: list[Node]) -> None:
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while not predicate():  # type: ignore[operator]
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{_describe(nodes)}")
        await asyncio.sleep(0.02)


async def _scenario(root: Path) -> None:
    ids = [bench_identity(i).peer_id for i in range(4)]
    ports: dict[str, int] = {}
    nodes = [Node(i, root, ids, ports) for i in range(4)]
    for node in nodes:
        await node.start()
    for node in nodes:
        await node.run()
    try:
        for i in range(6):
            assert nodes[1].host is not None
            nodes[1].host.propose(Entry("task", b"before-%d" % i))
        await _until(
            lambda: (
                all(
                    len(n.decided) >= 1
                    and sum(1 for _ in n.decided) == len(nodes[0].decided)
                    and nodes[0].decided
                    for n in nodes
                )
                and sum(1 for _ in nodes[0].decided) >= 2
            ),
            "first decisions",
            nodes,
        )
        await _until(
            lambda: all(
                n.host is not None
                and n.host.replica.last_executed == nodes[0].host.replica.last_executed
                and not n.host.replica.pending
                for n in nodes
            ),
            "all six entries",
            nodes,
        )  # type: ignore[union-attr]
        signed = dict(nodes[3].host.replica.durable.votes)  # type: ignore[union-attr]
        await nodes[3].crash()
        nodes[3] = restarted = Node(3, root, ids, ports)
        await restarted.start()
        await restarted.run()
        assert restarted.host is not None
        assert restarted.host.replica.durable.votes.items() >= signed.items()
        for i in range(6):
            assert nodes[2].host is not None
            nodes[2].host.propose(Entry("task", b"after-%d" % i))
        # Every replica, not only the restarted one: the logs are compared below.
        await _until(
            lambda: all(
                n.host is not None
                and not n.host.replica.pending
                and n.host.replica.last_executed == nodes[0].host.replica.last_executed
                for n in nodes
            ),
            "the restarted replica to catch up",
            nodes,
        )  # type: ignore[union-attr]
        logs = [dict(n.decided) for n in nodes[:3]]
        assert logs[0] == logs[1] == logs[2]
        assert dict(restarted.decided).items() <= logs[0].items()
    finally:
        for node in nodes:
            if node.host is not None and not node.crashed:
                await node.host.close()
                await node.transport.close()
                node.state.close()


def test_four_hosts_over_quic_decide_and_a_restarted_one_catches_up(tmp_path: Path) -> None:
    asyncio.run(_scenario(tmp_path))
