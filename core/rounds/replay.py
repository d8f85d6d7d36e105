"""Rebuilding a restarted agent's replica and rounds state from its kept PBFT records (pure).

A host persists every record its replica emits (persist-before-send, durable.py),
oldest first. After a crash, `reduce_records` folds them into the `DurableState`
the replica restarts from (so it never signs a second, different vote: TOCS §4.2,
§4.4) and picks the decided batches and epoch changes, each once and in log
order. `replay_decided` feeds those to the epoch tracker and the round machine
with exactly the calls they got when the replica executed them; the replica then
resumes after the last one, so no entry is applied twice. A jump made through
state transfer (`PersistSnapshot`) leaves a gap no replay can fill (`gaps`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from agentmesh.core.consensus import Committee, DurableState
from agentmesh.core.consensus.committee import COMMITTEE_ENTRY_KIND
from agentmesh.core.consensus.durable import (
    PersistEpoch,
    PersistExecuted,
    PersistRecord,
    PersistSnapshot,
)
from agentmesh.core.node import Output

from .epochs import EpochTracker
from .machine import RoundsMachine

ReplayStep = PersistExecuted | PersistEpoch


@dataclass
class KeptLog:
    """What a restart rebuilds from: the replica's durable state and the decided steps."""

    durable: DurableState | None  # None: nothing was persisted
    steps: list[ReplayStep] = field(default_factory=list)
    records: int = 0
    gaps: int = 0  # sequence ranges skipped by state transfer (not replayable)

    @property
    def batches(self) -> int:
        return sum(1 for step in self.steps if isinstance(step, PersistExecuted))


def reduce_records(records: Iterable[PersistRecord], committee: Committee) -> KeptLog:
    """Fold records (oldest first) of a replica that started on `committee`."""
    kept = KeptLog(DurableState(committee.epoch, committee.members))
    durable = kept.durable
    assert durable is not None
    executed, epoch = 0, committee.epoch
    for record in records:
        kept.records += 1
        durable.apply(record)
        if isinstance(record, PersistExecuted) and record.seq > executed:
            if record.seq != executed + 1:
                kept.gaps += 1
            executed = record.seq
            kept.steps.append(record)
        elif isinstance(record, PersistEpoch) and record.epoch > epoch:
            epoch = record.epoch
            kept.steps.append(record)
        elif isinstance(record, PersistSnapshot) and record.snapshot.seq > executed:
            kept.gaps += 1
            executed = record.snapshot.seq
    if kept.records == 0:
        kept.durable = None
    return kept


def replay_decided(
    steps: Iterable[ReplayStep],
    tracker: EpochTracker | None,
    machine: RoundsMachine,
    now_ms: int,
    on_epoch: Callable[[PersistEpoch], None],
    on_output: Callable[[Output], None],
) -> int:
    """Feed kept steps as the replica executed them; returns the entries replayed.

    For a batch: the replica's `reconfigure` calls (every entry, with the epoch
    it was in), then the tracker's hash chain, then the round machine. For an
    epoch change: `on_epoch` (the host derives the roles and switches the round
    machine, as on the replica's `epoch` event). The machine's outputs after
    each step go to `on_output` (stale proposals, trainings and fetches: a host
    keeps only what it records).
    """
    epoch, entries = 0, 0
    for step in steps:
        if isinstance(step, PersistExecuted):
            batch, certificate = step.certified.batch, step.certified.certificate
            if tracker is not None:
                for entry in batch:
                    if entry.kind != COMMITTEE_ENTRY_KIND:
                        tracker.reconfigure(entry, epoch)
                tracker.on_decided(step.seq, certificate.digest)
            machine.on_decided(batch, now_ms)
            entries += len(batch)
        else:
            epoch = step.epoch
            on_epoch(step)
        for item in machine.take_outbox():
            on_output(item)
    return entries
