"""PBFT checkpoints: CHECKPOINT messages, stable checkpoints, watermarks, GC (TOCS §4.3)."""

from __future__ import annotations

from . import wellformed
from .durable import PersistStable
from .messages import Checkpoint, CheckpointProof, Snapshot, state_digest
from .replica import ReplicaCore


class CheckpointMixin(ReplicaCore):
    """Every K sequence numbers: prove the state, then forget what lies below it."""

    def send_checkpoint(self, seq: int) -> None:
        d = self.durable
        snapshot = Snapshot(self.epoch, seq, d.chain_hash, d.members, d.epoch_start_seq)
        self.own_checkpoints[seq] = snapshot
        digest = state_digest(snapshot)
        signature = self.signer.sign(Checkpoint(self.epoch, seq, digest, "", b"").payload())
        checkpoint = Checkpoint(self.epoch, seq, digest, self.node_id, signature)
        if self.is_member:
            self.broadcast(checkpoint)
            self.checkpoint_votes.setdefault(seq, {})[self.node_id] = checkpoint
        self._check_stable(seq, None)

    def on_checkpoint(self, checkpoint: Checkpoint, sender: str) -> None:
        if not wellformed.checkpoint(checkpoint):
            self.count("malformed_checkpoint")
            return
        if checkpoint.epoch != self.epoch:
            self.on_other_epoch(checkpoint.epoch, sender)
            return
        if checkpoint.sender not in self.committee:
            self.count("not_from_member")
            return
        if checkpoint.seq % self.config.checkpoint_interval:
            self.count("malformed_checkpoint")
            return
        if checkpoint.seq <= self.stable.seq:
            self.count("checkpoint_outside_window")
            return
        if not self.verify(checkpoint.sender, checkpoint.payload(), checkpoint.signature):
            self.evidence("bad_signature", checkpoint.sender, seq=checkpoint.seq)
            return
        if checkpoint.seq > self.low_mark + 2 * self.config.window:
            self.count("checkpoint_outside_window")
            self.request_state(sender)  # far ahead of us: we fell behind (TOCS §5.3)
            return
        votes = self.checkpoint_votes.setdefault(checkpoint.seq, {})
        previous = votes.get(checkpoint.sender)
        if previous is not None:
            if previous.state_digest != checkpoint.state_digest:
                self.evidence("conflicting_checkpoint", checkpoint.sender, seq=checkpoint.seq)
            return
        votes[checkpoint.sender] = checkpoint
        self._check_stable(checkpoint.seq, sender)

    def _check_stable(self, seq: int, sender: str | None) -> None:
        votes = self.checkpoint_votes.get(seq, {})
        if len(votes) < self.committee.quorum or seq <= self.stable.seq:
            return
        if seq > self.last_executed:
            self.request_state(sender)  # a quorum is ahead of us (TOCS §4.3, §5.3)
            return
        own = self.own_checkpoints.get(seq)
        if own is None:
            return
        digest = state_digest(own)
        matching = sorted(
            (c for c in votes.values() if c.state_digest == digest), key=lambda c: c.sender
        )
        if len(matching) < self.committee.quorum:
            return
        proof = CheckpointProof(self.epoch, seq, digest, tuple(matching[: self.committee.quorum]))
        self.make_stable(proof, own)

    def make_stable(self, proof: CheckpointProof, snapshot: Snapshot) -> None:
        """Move h to the stable checkpoint and garbage-collect below it."""
        retain_from = self.last_executed - self.config.retained_batches_max + 1
        self.persist(PersistStable(proof, snapshot, retain_from))
        self.stable = proof
        seq = proof.seq
        self.low_mark = max(self.low_mark, seq)
        self.slots = {s: slot for s, slot in self.slots.items() if s > self.low_mark}
        self.held = {s: pp for s, pp in self.held.items() if s > self.low_mark}
        self.certified = {s: c for s, c in self.certified.items() if s > seq}
        self.checkpoint_votes = {s: v for s, v in self.checkpoint_votes.items() if s > seq}
        self.own_checkpoints = {s: c for s, c in self.own_checkpoints.items() if s > seq}
        self.next_seq = max(self.next_seq, self.low_mark + 1)
        self.count("stable_checkpoints")
        self._maybe_propose()
