"""What a replica must keep across a crash, and the records that change it.

Sans-I/O like etcd raft's `Ready`: the replica puts `Event("persist",
{"records": [...]})` in its outbox; the host must make those records durable
BEFORE it sends any message that follows them in the same outbox. A restarted
replica is rebuilt from the `DurableState` the records reduce to
(`DurableState.apply`), so it never signs a second, different PRE-PREPARE,
PREPARE, COMMIT or VIEW-CHANGE for a position it already signed (TOCS §4.2 and
§4.4 rely on this, and on prepared certificates surviving a restart).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .messages import (
    GENESIS_CHAIN,
    CertifiedBatch,
    CheckpointProof,
    NewView,
    PreparedProof,
    Snapshot,
    ViewChange,
    state_digest,
)

VoteKey = tuple[bytes, int, int]  # (kind, view, seq)


@dataclass(frozen=True, slots=True)
class PersistView:
    view: int


@dataclass(frozen=True, slots=True)
class PersistVote:
    """A signed vote: never sign another digest at this (kind, view, seq)."""

    kind: bytes
    view: int
    seq: int
    digest: bytes


@dataclass(frozen=True, slots=True)
class PersistPrepared:
    proof: PreparedProof


@dataclass(frozen=True, slots=True)
class PersistExecuted:
    """A batch executed; batches below `retain_from_seq` are no longer served."""

    seq: int
    chain_hash: bytes
    certified: CertifiedBatch
    retain_from_seq: int


@dataclass(frozen=True, slots=True)
class PersistStable:
    """A stable checkpoint: drop votes and prepared proofs at or below it."""

    proof: CheckpointProof
    snapshot: Snapshot
    retain_from_seq: int


@dataclass(frozen=True, slots=True)
class PersistViewChange:
    """The VIEW-CHANGE this replica signed for `view_change.new_view` (resent after restart)."""

    view_change: ViewChange


@dataclass(frozen=True, slots=True)
class PersistEpoch:
    epoch: int
    members: tuple[str, ...]
    start_seq: int


@dataclass(frozen=True, slots=True)
class PersistNewView:
    new_view: NewView


@dataclass(frozen=True, slots=True)
class PersistSnapshot:
    """Adopted through state transfer: jump to the snapshot's position."""

    snapshot: Snapshot
    proof: CheckpointProof


PersistRecord = (
    PersistView
    | PersistVote
    | PersistPrepared
    | PersistExecuted
    | PersistStable
    | PersistViewChange
    | PersistEpoch
    | PersistNewView
    | PersistSnapshot
)


@dataclass
class DurableState:
    """The reduction of every persist record a replica emitted, oldest first."""

    epoch: int
    members: tuple[str, ...]
    epoch_start_seq: int = 0
    view: int = 0
    last_executed: int = 0
    chain_hash: bytes = GENESIS_CHAIN
    stable: CheckpointProof | None = None
    stable_snapshot: Snapshot | None = None
    view_change: ViewChange | None = None
    votes: dict[VoteKey, bytes] = field(default_factory=dict)
    prepared: dict[int, PreparedProof] = field(default_factory=dict)
    retained: dict[int, CertifiedBatch] = field(default_factory=dict)
    new_view: NewView | None = None
    start_chain: bytes = GENESIS_CHAIN  # chain hash at epoch_start_seq

    def snapshot(self) -> Snapshot:
        return Snapshot(
            self.epoch, self.last_executed, self.chain_hash, self.members, self.epoch_start_seq
        )

    def stable_proof(self) -> CheckpointProof:
        """The stable checkpoint, or the epoch's start (which needs no signatures)."""
        if self.stable is not None and self.stable.epoch == self.epoch:
            return self.stable
        start = self.stable_point()
        return CheckpointProof(self.epoch, self.epoch_start_seq, state_digest(start), ())

    def stable_point(self) -> Snapshot:
        """The snapshot the stable checkpoint certifies."""
        if self.stable_snapshot is not None and self.stable_snapshot.epoch == self.epoch:
            return self.stable_snapshot
        return Snapshot(
            self.epoch, self.epoch_start_seq, self.start_chain, self.members, self.epoch_start_seq
        )

    def copy(self) -> DurableState:
        """An independent copy (what survives a simulated crash)."""
        return _clone(self)

    def apply(self, record: PersistRecord) -> None:
        """Fold one record into the state (the host's durable store does the same)."""
        if isinstance(record, PersistView):
            self.view = max(self.view, record.view)
        elif isinstance(record, PersistVote):
            self.votes[(record.kind, record.view, record.seq)] = record.digest
        elif isinstance(record, PersistPrepared):
            self.prepared[record.proof.pre_prepare.seq] = record.proof
        elif isinstance(record, PersistExecuted):
            self.last_executed = record.seq
            self.chain_hash = record.chain_hash
            self.retained[record.seq] = record.certified
            if len(self.retained) > record.seq - record.retain_from_seq + 1:
                self.retained = {
                    seq: b for seq, b in self.retained.items() if seq >= record.retain_from_seq
                }
        elif isinstance(record, PersistStable):
            self._apply_stable(record)
        elif isinstance(record, PersistEpoch):
            self._apply_epoch(record)
        elif isinstance(record, PersistViewChange):
            self.view_change = record.view_change
            self.view = max(self.view, record.view_change.new_view)
        elif isinstance(record, PersistNewView):
            self._apply_new_view(record.new_view)
        elif isinstance(record, PersistSnapshot):
            self.last_executed = record.snapshot.seq
            self.chain_hash = record.snapshot.chain_hash
            self.stable = record.proof
            self.stable_snapshot = record.snapshot
            self._prune(record.snapshot.seq, record.snapshot.seq + 1)

    def _apply_new_view(self, new_view: NewView) -> None:
        self.new_view = new_view
        self.view = max(self.view, new_view.view)
        # Votes of older views can never be asked for again: a replica only
        # takes part in its current view (TOCS §4.2), which never goes back.
        self.votes = {key: d for key, d in self.votes.items() if key[1] >= new_view.view}

    def _apply_stable(self, record: PersistStable) -> None:
        self.stable = record.proof
        self.stable_snapshot = record.snapshot
        self._prune(record.proof.seq, record.retain_from_seq)

    def _apply_epoch(self, record: PersistEpoch) -> None:
        self.epoch = record.epoch
        self.members = record.members
        self.epoch_start_seq = record.start_seq
        self.start_chain = self.chain_hash
        self.view = 0
        self.votes.clear()
        self.prepared.clear()
        self.new_view = None
        self.view_change = None
        self.stable = None
        self.stable_snapshot = None

    def _prune(self, stable_seq: int, retain_from_seq: int) -> None:
        self.votes = {key: d for key, d in self.votes.items() if key[2] > stable_seq}
        self.prepared = {seq: p for seq, p in self.prepared.items() if seq > stable_seq}
        self.retained = {seq: b for seq, b in self.retained.items() if seq >= retain_from_seq}


def _clone(state: DurableState) -> DurableState:
    return DurableState(
        epoch=state.epoch,
        members=state.members,
        epoch_start_seq=state.epoch_start_seq,
        view=state.view,
        last_executed=state.last_executed,
        chain_hash=state.chain_hash,
        stable=state.stable,
        stable_snapshot=state.stable_snapshot,
        view_change=state.view_change,
        votes=dict(state.votes),
        prepared=dict(state.prepared),
        retained=dict(state.retained),
        new_view=state.new_view,
        start_chain=state.start_chain,
    )
