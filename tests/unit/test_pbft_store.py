"""Consensus durability in a real SQLite file: what a replica persisted is what it reloads."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from agentmesh.core.consensus import Committee, ConsensusConfig, Entry
from agentmesh.core.consensus.codec import CodecError, decode, encode
from agentmesh.core.consensus.messages import (
    KIND_PREPARE,
    PrePrepare,
    Vote,
    batch_digest,
    signed_payload,
)
from agentmesh.core.consensus.replica import Slot
from agentmesh.core.consensus.testing import LocalNet
from agentmesh.edge import consensus_host
from agentmesh.edge.consensus_host import (
    BENCH_LIMITS,
    ConsensusHost,
    ConsensusStore,
    bench_identity,
)
from agentmesh.edge.state import StateStore
from agentmesh.edge.transport import QuicTransport

CONFIG = ConsensusConfig(
    checkpoint_interval=4,
    window=8,
    batch_entries_max=2,
    retained_batches_max=8,
    view_change_timeout_ms=200,
)


def _run_and_persist(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_max: int
) -> tuple[LocalNet, Path]:
    monkeypatch.setattr(consensus_host, "LOG_RECORDS_MAX", log_max)
    net = LocalNet(4, CONFIG)
    state = StateStore(tmp_path)
    store = ConsensusStore(state.connection)
    replica = net.replicas["r2"]
    store.save_base(replica.durable.copy())
    written = 0
    for i in range(14):
        net.propose("r1", Entry("task", b"%d" % i))
        net.run(40)
        for event in net.events["r2"][written:]:
            if event.kind == "persist":
                store.write(event.data["records"], replica.durable)
        written = len(net.events["r2"])
    state.close()
    return net, tmp_path


@pytest.mark.parametrize("log_max", [10_000, 7])
def test_reloaded_state_equals_what_the_replica_persisted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, log_max: int
) -> None:
    net, path = _run_and_persist(tmp_path, monkeypatch, log_max)
    reopened = StateStore(path)
    loaded = ConsensusStore(reopened.connection).load()
    reopened.close()
    assert loaded == net.replicas["r2"].durable
    assert loaded is not None and loaded.last_executed == net.replicas["r2"].last_executed > 8


def test_garbage_in_the_store_is_a_typed_error(tmp_path: Path) -> None:
    state = StateStore(tmp_path)
    store = ConsensusStore(state.connection)
    state.connection.execute("INSERT INTO consensus_log(record) VALUES(?)", (b"\x83\x01\x02",))
    with pytest.raises(CodecError):
        store.load()
    state.close()
    for junk in (b"", b"\xff", encode(Entry("a", b"b"))[:-1], b"\x82\x63\x01\x02"):
        with pytest.raises(CodecError):
            decode(junk)


def test_a_receive_that_prepares_and_commits_is_one_transaction(tmp_path: Path) -> None:
    """Group commit: the PREPARE and COMMIT votes of one drain share one SQLite commit."""
    identities = [bench_identity(i) for i in range(4)]
    ids = tuple(identity.peer_id for identity in identities)

    async def scenario() -> tuple[int, int]:
        transport = QuicTransport(identities[1], "127.0.0.1", 0, BENCH_LIMITS)
        await transport.start()
        state = StateStore(tmp_path)
        host = ConsensusHost(
            identities[1], Committee(0, ids), {}, transport, ConsensusStore(state.connection)
        )
        batch = (Entry("task", b"one"),)
        digest = batch_digest(batch)
        pp = PrePrepare(0, 0, 1, digest, batch, ids[0], b"")
        pp = PrePrepare(0, 0, 1, digest, batch, ids[0], identities[0].sign(pp.payload()))
        prepare = Vote(
            KIND_PREPARE,
            0,
            0,
            1,
            digest,
            ids[2],
            identities[2].sign(signed_payload(KIND_PREPARE, 0, 0, 1, digest)),
        )
        host.replica.receive(prepare, ids[2], 0)  # a PREPARE that overtook its PRE-PREPARE
        host.replica.receive(pp, ids[0], 0)  # now PREPARE and COMMIT, in one outbox
        before = host.counters.get("transactions", 0)
        host._drain()
        slot = host.replica.slots[1]
        assert isinstance(slot, Slot) and slot.commit_sent
        transactions = host.counters["transactions"] - before
        await host.close()
        await transport.close()
        reloaded = ConsensusStore(state.connection).load()
        state.close()
        assert reloaded is not None
        return transactions, len(reloaded.votes)

    transactions, votes = asyncio.run(scenario())
    assert transactions == 1
    assert votes == 2  # both signed votes durable
