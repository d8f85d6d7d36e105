"""What the rounds and tasks hosts share: driving a PBFT replica beside an application
machine with the persist-before-send rule (etcd raft's Ready: durable first, then send).

A subclass sets `replica`, `machine`, `genesis` (anything with `genesis_id`),
`_log_connection` (its own SQLite connection) and `_log_table`, and implements
`_on_decided`, `_machine_output` and `_send_pbft`.
"""

from __future__ import annotations

import logging
import sqlite3
from typing import Any

from agentmesh.core.consensus.durable import PersistExecuted, PersistStable
from agentmesh.core.node import Event, Send
from agentmesh.core.rounds.pbft_wire import to_wire
from agentmesh.core.wire import cbor

# Records a crash may lose (the replica fetches those batches again): they ride
# along with the next write instead of forcing one before a send.
_DEFERRABLE = (PersistExecuted, PersistStable)
# ...but at most this many: an observer emits nothing else, and its executed batches
# would otherwise wait in memory (unbounded) and all be lost in a crash.
UNWRITTEN_RECORDS_MAX = 64
_DRAIN_PASSES_MAX = 256

log = logging.getLogger("agentmesh.consensus")


class ReplicaDriver:
    """Drains replica and machine outboxes until quiet; writes before sends."""

    replica: Any
    machine: Any
    genesis: Any
    _log_connection: sqlite3.Connection
    _log_table: str
    _evidence_label = "consensus evidence"

    def _init_log(self) -> None:
        self._unwritten: list[Any] = []
        self._must_write = False

    def drain(self) -> None:
        """Both outboxes until quiet: persist before send, decided batches to the machine."""
        replica, machine = self.replica, self.machine
        if replica is None or machine is None:
            return
        for _ in range(_DRAIN_PASSES_MAX):
            replica_out = replica.take_outbox()
            machine_out = machine.take_outbox()
            if not replica_out and not machine_out:
                break
            for item in replica_out:
                self._replica_output(item)
            for item in machine_out:
                self._machine_output(item)
        if self._must_write:
            self._flush()

    def _replica_output(self, item: Send | Event) -> None:
        if isinstance(item, Send):
            if self._must_write:
                self._flush()
            self._send_pbft(item.to, item.message)
            return
        if item.kind == "persist":
            records = item.data["records"]
            self._unwritten.extend(records)
            self._must_write = (
                self._must_write
                or len(self._unwritten) >= UNWRITTEN_RECORDS_MAX
                or not all(isinstance(r, _DEFERRABLE) for r in records)
            )
        elif item.kind == "decided":
            self._on_decided(item)
        elif item.kind == "evidence":
            log.warning("%s %s", self._evidence_label, dict(item.data))

    def _flush(self) -> None:
        genesis = self.genesis
        assert genesis is not None
        if self._unwritten:
            rows = [(genesis.genesis_id, cbor.encode(to_wire(r))) for r in self._unwritten]
            with self._log_connection as connection:
                connection.execute("BEGIN IMMEDIATE")
                connection.executemany(
                    f"INSERT INTO {self._log_table}(genesis, record) VALUES(?, ?)", rows
                )
        self._unwritten = []
        self._must_write = False

    def _on_decided(self, event: Event) -> None:
        raise NotImplementedError

    def _machine_output(self, item: Send | Event) -> None:
        raise NotImplementedError

    def _send_pbft(self, peer: str, message: Any) -> None:
        raise NotImplementedError
