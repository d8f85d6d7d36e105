"""State transfer: a replica that fell behind or restarted fetches what it missed.

Simplified from TOCS §5.3 (which transfers partitions of the service state): a
replica asks a peer for certified batches after its last executed sequence
number. Each batch comes with its commit certificate, so the reply is checked
against the committee alone and one honest responder suffices. When the gap
reaches past what peers retain, the reply carries the stable checkpoint proof
(quorum signed CHECKPOINTs) and the consensus snapshot it certifies; the
replica jumps there and emits `Event("state_gap")` so the host fetches its
application state for that checkpoint.
"""

from __future__ import annotations

from . import wellformed
from .durable import PersistSnapshot
from .messages import (
    CertifiedBatch,
    FetchState,
    NewView,
    StateReply,
    batch_digest,
    state_digest,
)
from .proofs import verify_certificate, verify_checkpoint_proof
from .viewchange import ViewChangeMixin

OBSERVER_FETCH_FACTOR = 4  # observers poll the committee every 4 fetch intervals
MEMBER_POLL_FACTOR = 4  # a member that decided nothing for 4 fetch intervals polls a peer
SERVED_PEERS_MAX = 1024  # peers remembered for the per-peer reply rate limit


class TransferMixin(ViewChangeMixin):
    """Fetching and serving certified batches, checkpoints and the current NEW-VIEW."""

    def request_state(self, target: str | None) -> None:
        """Ask `target` (or a random member) for what follows our last executed batch."""
        if self.now_ms < self.fetch_after_ms:
            self.count("fetch_rate_limited")
            self.fetch_retry = True  # ask once more when the rate limit allows (tick)
            self.fetch_retry_target = target
            return
        self.fetch_retry = False
        others = [m for m in self.committee.members if m != self.node_id]
        if not others:
            return
        if target is None or target == self.node_id:
            target = self.rng.choice(others)
        self.fetch_after_ms = self.now_ms + self.config.fetch_interval_ms
        self.count("fetches_sent")
        self.send_to(target, FetchState(self.epoch, self.last_executed + 1))

    def request_state_from_all(self) -> None:
        """After a restart: ask every member once, bypassing the rate limit."""
        self.fetch_after_ms = self.now_ms + self.config.fetch_interval_ms
        message = FetchState(self.epoch, self.last_executed + 1)
        for member in self.committee.members:
            if member != self.node_id:
                self.send_to(member, message)
        self.count("fetches_sent")

    def on_other_epoch(self, epoch: int, sender: str) -> None:
        """A message from another epoch: if it is ahead, we missed a reconfiguration."""
        self.count("other_epoch")
        if epoch > self.epoch:
            self.request_state(sender)

    def on_fetch_state(self, fetch: FetchState, sender: str) -> None:
        if not (wellformed.position(fetch.epoch) and wellformed.position(fetch.from_seq)):
            self.count("malformed_fetch")
            return
        # Replies are large: serve each peer at most once per half fetch interval.
        last = self.served_at.pop(sender, None)
        if last is not None and self.now_ms - last < self.config.fetch_interval_ms // 2:
            self.served_at[sender] = last
            self.count("fetch_from_peer_rate_limited")
            return
        self.served_at[sender] = self.now_ms
        while len(self.served_at) > SERVED_PEERS_MAX:
            del self.served_at[next(iter(self.served_at))]
        retained = self.durable.retained
        batches: list[CertifiedBatch] = []
        seq = fetch.from_seq
        while seq in retained and len(batches) < self.config.fetch_batches_max:
            batches.append(retained[seq])
            seq += 1
        checkpoint = snapshot = None
        stable = self.stable
        if not batches and fetch.from_seq <= stable.seq and stable.checkpoints:
            checkpoint, snapshot = stable, self.durable.stable_point()
        new_view = self.durable.new_view
        if new_view is not None and new_view.epoch != self.epoch:
            new_view = None
        if not batches and checkpoint is None and new_view is None:
            self.count("fetch_nothing_to_send")
            return
        self.count("state_replies_sent")
        self.send_to(sender, StateReply(tuple(batches), checkpoint, snapshot, new_view))

    def on_state_reply(self, reply: StateReply, sender: str) -> None:
        if (
            type(reply.batches) is not tuple
            or len(reply.batches) > self.config.fetch_batches_max
            or not all(type(b) is CertifiedBatch for b in reply.batches)
        ):
            self.count("malformed_state_reply")
            return
        if reply.checkpoint is not None and reply.snapshot is not None:
            self._adopt_snapshot(reply, sender)
        for certified in reply.batches:
            if not self._execute_fetched(certified, sender):
                break
        if isinstance(reply.new_view, NewView):
            self._adopt_new_view(reply.new_view)

    def _adopt_snapshot(self, reply: StateReply, sender: str) -> None:
        proof, snapshot = reply.checkpoint, reply.snapshot
        size = self.committee.size
        if not wellformed.checkpoint_proof(proof, size) or not wellformed.snapshot(
            snapshot, self.config.committee_size_max
        ):
            self.count("malformed_state_reply")
            return
        assert proof is not None and snapshot is not None
        if proof.epoch != self.epoch or proof.seq <= self.last_executed:
            return
        if (
            snapshot.epoch != self.epoch
            or snapshot.seq != proof.seq
            or snapshot.members != self.committee.members
            or snapshot.epoch_start_seq != self.durable.epoch_start_seq
            or state_digest(snapshot) != proof.state_digest
            or not verify_checkpoint_proof(
                proof, self.committee, self.durable.epoch_start_seq, self.verify
            )
        ):
            self.evidence("bad_state_reply", sender, seq=proof.seq)
            return
        first_missing = self.last_executed + 1
        self.persist(PersistSnapshot(snapshot, proof))
        self.stable = proof
        self.low_mark = max(self.low_mark, proof.seq)
        self.slots = {s: slot for s, slot in self.slots.items() if s > self.low_mark}
        self.held = {s: pp for s, pp in self.held.items() if s > self.low_mark}
        self.certified = {s: c for s, c in self.certified.items() if s > proof.seq}
        self.checkpoint_votes = {s: v for s, v in self.checkpoint_votes.items() if s > proof.seq}
        self.next_seq = max(self.next_seq, self.low_mark + 1)
        self.count("snapshots_adopted")
        self.event(
            "state_gap",
            epoch=self.epoch,
            from_seq=first_missing,
            to_seq=proof.seq,
            chain_hash=snapshot.chain_hash,
        )

    def _execute_fetched(self, certified: CertifiedBatch, sender: str) -> bool:
        cert = certified.certificate
        if not wellformed.certificate(cert, self.committee.size) or not wellformed.batch(
            certified.batch, self.config.batch_entries_max, self.config.entry_body_bytes_max
        ):
            self.count("malformed_state_reply")
            return False
        if cert.seq <= self.last_executed:
            return True
        if cert.seq != self.last_executed + 1:
            return False
        if (
            cert.epoch != self.epoch
            or batch_digest(certified.batch) != cert.digest
            or not verify_certificate(cert, self.committee, self.verify)
        ):
            self.evidence("bad_state_reply", sender, seq=cert.seq)
            return False
        self.count("batches_fetched")
        self.certified[cert.seq] = certified
        self.execute_ready()
        return True

    def _adopt_new_view(self, nv: NewView) -> None:
        """Catch up with the committee's current view through its self-certifying NEW-VIEW."""
        if nv.epoch != self.epoch or nv.view < self.view:
            return
        if nv.view == self.view and not self.view_changing:
            return
        self.on_new_view(nv, nv.sender)

    def poll_interval_ms(self) -> int:
        """Doubles per poll that brought nothing new, up to the longest view-change timer."""
        base = MEMBER_POLL_FACTOR * self.config.fetch_interval_ms
        cap = max(base, self.config.view_change_timeout_max_ms)
        return min(base << min(self.poll_backoff, 16), cap)

    def member_poll_tick(self) -> None:
        """Retransmission for lossy links: a quiet member asks a random peer what it missed.

        PBFT assumes messages are eventually delivered; its library retransmits through
        periodic status messages (Castro & Liskov, TOCS 2002, §5). Without this, a
        replica whose state reply and the last round's messages were lost (a restart
        while peers still send on their connection to the old process) stays behind
        for as long as nothing else is proposed. Any decided batch resets the backoff.
        """
        if not self.is_member:
            self.poll_at_ms = None
            return
        if self.poll_at_ms is None:
            self.poll_at_ms = self.now_ms + self.poll_interval_ms()
            return
        if self.now_ms >= self.poll_at_ms:
            self.count("polls_sent")
            self.request_state(None)
            self.poll_backoff += 1
            self.poll_at_ms = self.now_ms + self.poll_interval_ms()

    def observer_tick(self) -> None:
        """Non-members follow the log by polling a random member."""
        if self.is_member:
            self.observer_fetch_ms = None
            return
        due = self.observer_fetch_ms
        if due is None:
            self.observer_fetch_ms = (
                self.now_ms + OBSERVER_FETCH_FACTOR * self.config.fetch_interval_ms
            )
            return
        if self.now_ms >= due:
            self.request_state(None)
            self.observer_fetch_ms = (
                self.now_ms + OBSERVER_FETCH_FACTOR * self.config.fetch_interval_ms
            )
