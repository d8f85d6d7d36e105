"""Reading back a host's persisted PBFT records after a restart (rounds and tasks hosts).

`ReplicaDriver` writes every persist record of one genesis to a SQLite table
(`genesis`, `record`), oldest first. This module reads them back and reduces
them (`core.rounds.replay.reduce_records`): the `DurableState` the replica
restarts from and the decided batches and epoch changes to replay, each once.
"""

from __future__ import annotations

import sqlite3

from agentmesh.core.consensus import Committee
from agentmesh.core.consensus.durable import PersistRecord
from agentmesh.core.rounds.pbft_wire import PbftWireError, from_wire
from agentmesh.core.rounds.replay import KeptLog, reduce_records
from agentmesh.core.wire import cbor

__all__ = ["KeptLog", "ReplicaLogError", "load_replica_log"]


class ReplicaLogError(ValueError):
    """The stored log cannot be read back (corrupt row): never start over on lost votes."""


def load_replica_log(
    connection: sqlite3.Connection, table: str, genesis_id: bytes, committee: Committee
) -> KeptLog:
    """The records of `genesis_id` in `table`, reduced and ordered for a replay."""
    rows = connection.execute(
        f"SELECT record FROM {table} WHERE genesis = ? ORDER BY id", (genesis_id,)
    ).fetchall()
    records: list[PersistRecord] = []
    for (row,) in rows:
        try:
            records.append(from_wire(cbor.decode(row)))
        except (PbftWireError, ValueError) as error:
            raise ReplicaLogError(f"the PBFT log in {table} is corrupt: {error}") from None
    return reduce_records(records, committee)
