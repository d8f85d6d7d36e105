"""Reading back a host's persisted PBFT records after a restart (rounds and tasks hosts).

`ReplicaDriver` writes every persist record of one genesis to a SQLite table
(`genesis`, `record`), oldest first. On restart a host rebuilds its replica from
the `DurableState` the records reduce to (so it never signs a second, different
vote: TOCS §4.2, §4.4) and its application state by replaying, in log order, the
decided batches and epoch changes among them. Each sequence number is replayed
once; a jump made through state transfer (`PersistSnapshot`) leaves a gap the
application cannot replay (counted in `gaps`).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass, field

from agentmesh.core.consensus import Committee, DurableState
from agentmesh.core.consensus.durable import PersistEpoch, PersistExecuted, PersistSnapshot
from agentmesh.core.rounds.pbft_wire import PbftWireError, from_wire
from agentmesh.core.wire import cbor

ReplayStep = PersistExecuted | PersistEpoch


class ReplicaLogError(ValueError):
    """The stored log cannot be read back (corrupt row): never start over on lost votes."""


@dataclass
class ReplicaLog:
    """What a restarted host rebuilds from: replica state and the decided steps in order."""

    durable: DurableState | None  # None: nothing was persisted for this genesis
    steps: list[ReplayStep] = field(default_factory=list)
    records: int = 0
    gaps: int = 0  # sequence ranges skipped by state transfer (not replayable here)

    @property
    def batches(self) -> int:
        return sum(1 for step in self.steps if isinstance(step, PersistExecuted))


def load_replica_log(
    connection: sqlite3.Connection, table: str, genesis_id: bytes, committee: Committee
) -> ReplicaLog:
    """The records of `genesis_id` in `table`, reduced and ordered for a replay."""
    rows = connection.execute(
        f"SELECT record FROM {table} WHERE genesis = ? ORDER BY id", (genesis_id,)
    ).fetchall()
    if not rows:
        return ReplicaLog(None)
    durable = DurableState(committee.epoch, committee.members)
    replay = ReplicaLog(durable, records=len(rows))
    executed, epoch = 0, committee.epoch
    for (row,) in rows:
        try:
            record = from_wire(cbor.decode(row))
        except (PbftWireError, ValueError) as error:
            raise ReplicaLogError(f"the PBFT log in {table} is corrupt: {error}") from None
        durable.apply(record)
        if isinstance(record, PersistExecuted) and record.seq > executed:
            if record.seq != executed + 1:
                replay.gaps += 1
            executed = record.seq
            replay.steps.append(record)
        elif isinstance(record, PersistEpoch) and record.epoch > epoch:
            epoch = record.epoch
            replay.steps.append(record)
        elif isinstance(record, PersistSnapshot) and record.snapshot.seq > executed:
            replay.gaps += 1
            executed = record.snapshot.seq
    return replay
