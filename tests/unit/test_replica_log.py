"""Reading a host's PBFT log back from a real SQLite file (edge/replica_log.py)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.committee import COMMITTEE_ENTRY_KIND, encode_committee_entry
from agentmesh.core.consensus.durable import PersistEpoch, PersistExecuted
from agentmesh.core.consensus.testing import LocalNet
from agentmesh.core.rounds.pbft_wire import to_wire
from agentmesh.core.wire import cbor
from agentmesh.edge.replica_log import ReplicaLogError, load_replica_log

TABLE = "fl_pbft_log"
GENESIS = b"g" * 32


def _decided_with_an_epoch() -> tuple[LocalNet, str]:
    """Four replicas decide entries, a committee entry (epoch 1), then more entries."""
    net = LocalNet(4)
    peer = net.ids[1]
    for k in range(3):
        net.propose(net.ids[0], Entry("task", b"before %d" % k))
        net.run(200)
    change = encode_committee_entry({p: 1 for p in net.ids}, 4)
    net.propose(net.ids[0], Entry(COMMITTEE_ENTRY_KIND, change))
    net.run(400)
    primary = net.replicas[peer].committee.primary(0)
    for k in range(3):
        net.propose(primary, Entry("task", b"after %d" % k))
        net.run(200)
    return net, peer


def _write(path: Path, records: list[object], genesis: bytes = GENESIS) -> sqlite3.Connection:
    connection = sqlite3.connect(path, isolation_level=None)
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {TABLE} (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " genesis BLOB NOT NULL, record BLOB NOT NULL)"
    )
    connection.executemany(
        f"INSERT INTO {TABLE}(genesis, record) VALUES(?, ?)",
        [(genesis, cbor.encode(to_wire(r))) for r in records],
    )
    return connection


def _records(net: LocalNet, peer: str) -> list[object]:
    return [r for e in net.events[peer] if e.kind == "persist" for r in e.data["records"]]


def test_the_log_reduces_to_the_replicas_durable_state_and_replays_in_order(
    tmp_path: Path,
) -> None:
    net, peer = _decided_with_an_epoch()
    records = _records(net, peer)
    connection = _write(tmp_path / "state.sqlite", records)
    _write(tmp_path / "state.sqlite", records[:3], genesis=b"o" * 32)  # another genesis: ignored
    kept = load_replica_log(connection, TABLE, GENESIS, net.committee)
    live = net.replicas[peer].durable_state()
    assert kept.durable is not None
    assert (kept.durable.epoch, kept.durable.members) == (live.epoch, live.members)
    assert kept.durable.last_executed == live.last_executed > 0
    assert kept.durable.chain_hash == live.chain_hash
    assert kept.durable.votes == live.votes
    seqs = [s.seq for s in kept.steps if isinstance(s, PersistExecuted)]
    assert seqs == list(range(1, live.last_executed + 1))
    assert [seq for seq, _ in net.decided(peer)] == seqs
    epochs = [s for s in kept.steps if isinstance(s, PersistEpoch)]
    assert [e.epoch for e in epochs] == [1]
    position = kept.steps.index(epochs[0])
    before = kept.steps[position - 1]
    assert isinstance(before, PersistExecuted) and before.seq == epochs[0].start_seq
    assert (kept.batches, kept.gaps, kept.records) == (len(seqs), 0, len(records))


def test_an_empty_log_a_lost_batch_and_a_corrupt_row(tmp_path: Path) -> None:
    net, peer = _decided_with_an_epoch()
    records = _records(net, peer)
    empty = _write(tmp_path / "empty.sqlite", [])
    assert load_replica_log(empty, TABLE, GENESIS, net.committee).durable is None

    second = next(r for r in records if isinstance(r, PersistExecuted) and r.seq == 2)
    gapped = _write(tmp_path / "gap.sqlite", [r for r in records if r is not second])
    kept = load_replica_log(gapped, TABLE, GENESIS, net.committee)
    assert kept.gaps == 1
    assert 2 not in [s.seq for s in kept.steps if isinstance(s, PersistExecuted)]

    corrupt = _write(tmp_path / "corrupt.sqlite", records)
    corrupt.execute(f"INSERT INTO {TABLE}(genesis, record) VALUES(?, ?)", (GENESIS, b"\xff\x00"))
    with pytest.raises(ReplicaLogError):
        load_replica_log(corrupt, TABLE, GENESIS, net.committee)
