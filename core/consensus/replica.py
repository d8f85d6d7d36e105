"""A PBFT replica (Castro & Liskov, OSDI'99; TOCS 2002) as a sans-I/O machine.

Normal case (TOCS §4.2): the primary batches requests into PRE-PREPAREs; a
backup accepts one per (view, seq) and PREPAREs it; quorum-1 matching prepares
make it prepared and the replica COMMITs; quorum matching commits are a commit
certificate, and batches execute in sequence order (`Event("decided")`).
Checkpoints (§4.3) every K sequence numbers move the low watermark h and
garbage-collect the log; view changes (§4.4, §4.5.2) live in `viewchange.py`,
state transfer (§5.3, simplified to certified batches) in `transfer.py`.

Every signed message this replica sends is preceded in the outbox by an
`Event("persist")` holding the records that must be durable first.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from agentmesh.core.node import ContractError, InvariantViolation, MachineBase, Signer

from . import wellformed
from .committee import (
    COMMITTEE_ENTRY_KIND,
    Committee,
    decode_committee_entry,
    epoch_randomness,
    select_committee,
)
from .config import ConsensusConfig
from .durable import (
    DurableState,
    PersistEpoch,
    PersistExecuted,
    PersistPrepared,
    PersistRecord,
    PersistVote,
)
from .messages import (
    KIND_COMMIT,
    KIND_PRE_PREPARE,
    KIND_PREPARE,
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    CommitCertificate,
    Entry,
    PreparedProof,
    PrePrepare,
    Request,
    Snapshot,
    VerifyFn,
    ViewChange,
    Vote,
    batch_digest,
    chain_next,
)
from .proofs import verify_pre_prepare

# True: valid; False: invalid (the batch is refused, the primary blamed); None: not yet
# decidable here (the pre-prepare is held until the host calls `recheck`).
EntryValidator = Callable[[Entry], bool | None]
# (entry, current epoch) -> (candidates with scores, size) when a host's own entry kind
# reconfigures the committee at the end of its batch (e.g. rounds_epoch), else None.
Reconfigure = Callable[[Entry, int], tuple[dict[str, int], int] | None]
EARLY_VIEWS_MAX = 2  # keep messages for views up to view + this until their NEW-VIEW


class Slot:
    """What one sequence number holds in the current view (bounded by the committee)."""

    __slots__ = ("commit_sent", "commits", "pre_prepare", "prepares")

    def __init__(self) -> None:
        self.pre_prepare: PrePrepare | None = None
        self.prepares: dict[str, Vote] = {}
        self.commits: dict[str, Vote] = {}
        self.commit_sent = False


def default_entry_validator(entry: Entry) -> bool:
    """Consensus itself only understands committee entries; the rest is the host's."""
    if entry.kind == COMMITTEE_ENTRY_KIND:
        return decode_committee_entry(entry.body) is not None
    return True


class ReplicaCore(MachineBase):
    """State and normal-case protocol; view change and state transfer are mixed in."""

    def __init__(
        self,
        signer: Signer,
        verify: VerifyFn,
        genesis: Committee,
        rng: random.Random,
        config: ConsensusConfig | None = None,
        durable: DurableState | None = None,
        validate_entry: EntryValidator = default_entry_validator,
        reconfigure: Reconfigure | None = None,
    ) -> None:
        super().__init__(signer.peer_id, rng)
        self.reconfigure = reconfigure
        self.signer = signer
        self.verify = verify
        self.config = config or ConsensusConfig()
        self.validate_entry = validate_entry
        self.restarted = durable is not None
        self.durable = (
            durable if durable is not None else DurableState(genesis.epoch, genesis.members)
        )
        d = self.durable
        self.committee = Committee(d.epoch, d.members)
        self.view = d.view
        self.stable: CheckpointProof = d.stable_proof()
        self.low_mark = self.stable.seq  # h (TOCS §4.3); may run ahead of `stable` after NEW-VIEW
        self.slots: dict[int, Slot] = {}
        self.certified: dict[int, CertifiedBatch] = {}  # committed, not yet executed
        self.pending: dict[bytes, Entry] = {}  # entry id -> entry, not yet decided
        self.queue: dict[bytes, Entry] = {}  # primary: pending and not in any pre-prepare
        self.executed_ids: dict[bytes, None] = {}
        self.checkpoint_votes: dict[int, dict[str, Checkpoint]] = {}
        self.own_checkpoints: dict[int, Snapshot] = {}
        self.view_changes: dict[int, dict[str, ViewChange]] = {}
        self.early: list[tuple[PrePrepare | Vote, str]] = []
        self.held: dict[int, PrePrepare] = {}  # pre-prepares whose entries are "not yet" valid
        self.view_changing = False
        self.new_view_sent_for = -1
        self.vc_attempts = 0
        self.timer_deadline: int | None = None
        self.vc_resend_ms: int | None = None
        self.fetch_after_ms = 0
        self.fetch_retry = False
        self.served_at: dict[str, int] = {}  # peer -> when we last sent it a state reply
        self.fetch_retry_target: str | None = None
        self.observer_fetch_ms: int | None = None
        self.poll_at_ms: int | None = None  # members: ask a peer if nothing was decided by then
        self.poll_backoff = 0
        self.next_seq = max(d.last_executed, self.low_mark) + 1
        self.now_ms = 0
        self._persist_buffer: list[PersistRecord] = []
        self._restore_votes()
        for certified in d.retained.values():  # a restart keeps recent duplicates out
            for entry in certified.batch:
                self.executed_ids[entry.entry_id()] = None

    # ------------------------------------------------------------ small helpers

    @property
    def last_executed(self) -> int:
        return self.durable.last_executed

    @property
    def epoch(self) -> int:
        return self.committee.epoch

    @property
    def is_member(self) -> bool:
        return self.node_id in self.committee

    @property
    def is_primary(self) -> bool:
        return bool(self.committee.primary(self.view) == self.node_id)

    def _restore_votes(self) -> None:
        """After a restart, never reuse a sequence number this primary already assigned."""
        for kind, view, seq in self.durable.votes:
            if kind == KIND_PRE_PREPARE and view == self.view:
                self.next_seq = max(self.next_seq, seq + 1)

    def persist(self, record: PersistRecord) -> None:
        self.durable.apply(record)
        self._persist_buffer.append(record)

    def flush_persist(self) -> None:
        if self._persist_buffer:
            records, self._persist_buffer = tuple(self._persist_buffer), []
            self.emit("persist", records=records)

    def send_to(self, peer: str, message: Any) -> None:
        self.flush_persist()
        self.send(peer, message)

    def broadcast(self, message: Any) -> None:
        self.flush_persist()
        for member in self.committee.members:
            if member != self.node_id:
                self.send(member, message)

    def event(self, kind: str, **data: Any) -> None:
        self.flush_persist()
        self.emit(kind, **data)

    def evidence(self, reason: str, sender: str, **data: Any) -> None:
        """Peer misbehaviour: count it and report it; the message is dropped."""
        self.count(f"evidence_{reason}")
        self.event("evidence", reason=reason, sender=sender, **data)

    def timeout_ms(self) -> int:
        base = self.config.view_change_timeout_ms << min(self.vc_attempts, 16)
        return min(base, self.config.view_change_timeout_max_ms)

    def in_window(self, seq: int) -> bool:
        return self.low_mark < seq <= self.low_mark + self.config.window

    def sign_vote(self, kind: bytes, view: int, seq: int, digest: bytes) -> bytes | None:
        """Sign once per (kind, view, seq): a second digest would contradict us (durable)."""
        key = (kind, view, seq)
        signed = self.durable.votes.get(key)
        if signed is not None and signed != digest:
            self.count("refused_contradicting_vote")
            return None
        if signed is None:
            self.persist(PersistVote(kind, view, seq, digest))
        signature: bytes = self.signer.sign(
            Vote(kind, self.epoch, view, seq, digest, "", b"").payload()
        )
        return signature

    def arm_request_timer(self) -> None:
        """TOCS §4.5.2: a timer runs while some request waits to be executed."""
        if self.view_changing:
            return
        if self.pending and self.is_member:
            if self.timer_deadline is None:
                self.timer_deadline = self.now_ms + self.timeout_ms()
        else:
            self.timer_deadline = None

    # ------------------------------------------------------------ requests

    def propose(self, entry: Entry, now_ms: int) -> bool:
        """Submit an entry for ordering; False if a duplicate, invalid or the queue is full."""
        self.now_ms = now_ms
        if not wellformed.entry(entry, self.config.entry_body_bytes_max):
            raise ContractError("propose() needs an Entry within the size bounds")
        accepted = self._accept_request(entry)
        # Every backup then guards the request with its timer (TOCS §4.5.2). A primary
        # orders its own entries directly; if it fails, its proposals die with it.
        if (accepted and not (self.is_primary and not self.view_changing)) or not self.is_member:
            self.broadcast(Request(entry))
        self._maybe_propose()
        self.flush_persist()
        return accepted

    def _accept_request(self, entry: Entry) -> bool:
        if not self.is_member:
            return False
        entry_id = entry.entry_id()
        if entry_id in self.pending or entry_id in self.executed_ids:
            self.count("duplicate_request")
            return False
        if self.validate_entry(entry) is False:
            self.count("invalid_request")
            return False
        if len(self.pending) >= self.config.pending_entries_max:
            self.count("dropped_request_queue_full")
            return False
        self.pending[entry_id] = entry
        self.queue[entry_id] = entry
        self.arm_request_timer()
        return True

    def on_request(self, message: Request, sender: str) -> None:
        if not wellformed.entry(message.entry, self.config.entry_body_bytes_max):
            self.count("malformed_request")
            return
        self._accept_request(message.entry)
        self._maybe_propose()

    def _maybe_propose(self) -> None:
        """The primary assigns the next sequence numbers to batches (TOCS §4.2, §5.1.4)."""
        if not self.is_member or not self.is_primary or self.view_changing:
            return
        config = self.config
        sent = []
        while self.queue and self.in_window(self.next_seq):
            if self.next_seq - 1 - self.last_executed >= config.inflight_batches_max:
                break
            ids = list(self.queue)[: config.batch_entries_max]
            batch = tuple(self.queue.pop(entry_id) for entry_id in ids)
            if self._send_pre_prepare(self.next_seq, batch) is not None:
                sent.append(self.next_seq)
            self.next_seq += 1
        if self.committee.quorum == 1:
            # n = 1: no backup will ever prepare, so the pre-prepare alone prepares it
            # (quorum - 1 = 0 prepares); checked after the loop, which it may re-enter.
            for seq in sent:
                slot = self.slots.get(seq)  # an executed epoch change clears the slots
                if slot is not None:
                    self._check_prepared(seq, slot)

    def _send_pre_prepare(self, seq: int, batch: tuple[Entry, ...]) -> PrePrepare | None:
        digest = batch_digest(batch)
        signature = self.sign_vote(KIND_PRE_PREPARE, self.view, seq, digest)
        if signature is None:
            return None
        pp = PrePrepare(self.epoch, self.view, seq, digest, batch, self.node_id, signature)
        self.broadcast(pp)
        self.slots.setdefault(seq, Slot()).pre_prepare = pp
        self.count("pre_prepares_sent")
        return pp

    # ------------------------------------------------------------ normal case

    def on_pre_prepare(self, pp: PrePrepare, sender: str) -> None:
        config = self.config
        if not wellformed.pre_prepare(pp, config.batch_entries_max, config.entry_body_bytes_max):
            self.count("malformed_pre_prepare")
            return
        if not self._current(pp.epoch, pp.view, pp.sender, sender, pp):
            return
        if not self.in_window(pp.seq):
            self.count("pre_prepare_outside_window")
            if pp.seq > self.low_mark:
                self.request_state(sender)
            return
        if not verify_pre_prepare(pp, self.committee, self.verify):
            self.evidence("bad_pre_prepare", pp.sender, seq=pp.seq)
            return
        slot = self.slots.setdefault(pp.seq, Slot())
        if slot.pre_prepare is not None:
            if slot.pre_prepare.digest != pp.digest:
                self.evidence("equivocation", pp.sender, view=pp.view, seq=pp.seq)
            return
        held = self.held.get(pp.seq)
        if held is not None:
            if held.digest != pp.digest:
                self.evidence("equivocation", pp.sender, view=pp.view, seq=pp.seq)
            return
        self._judge_pre_prepare(pp)

    def _judge_pre_prepare(self, pp: PrePrepare) -> None:
        verdicts = [self.validate_entry(entry) for entry in pp.batch]
        if False in verdicts:
            self.held.pop(pp.seq, None)
            self.evidence("invalid_batch", pp.sender, seq=pp.seq)
        elif None in verdicts:
            self.held[pp.seq] = pp  # within the window, one per seq: bounded
            self.count("pre_prepares_held")
        else:
            self.held.pop(pp.seq, None)
            self.accept_pre_prepare(pp)

    def recheck(self, now_ms: int) -> None:
        """The host learned something (a blob arrived): judge held pre-prepares again."""
        self.now_ms = now_ms
        for seq in sorted(self.held):
            pp = self.held[seq]
            slot = self.slots.get(seq)
            current = pp.view == self.view and not self.view_changing and self.in_window(seq)
            if not current or (slot is not None and slot.pre_prepare is not None):
                del self.held[seq]
                continue
            self._judge_pre_prepare(pp)
        self.flush_persist()

    def accept_pre_prepare(self, pp: PrePrepare) -> None:
        """Log the pre-prepare and, as a backup, PREPARE it (TOCS §4.2)."""
        slot = self.slots.setdefault(pp.seq, Slot())
        if self.is_primary:
            slot.pre_prepare = pp
            self._check_prepared(pp.seq, slot)
            return
        signature = self.sign_vote(KIND_PREPARE, pp.view, pp.seq, pp.digest)
        if signature is None:
            return
        slot.pre_prepare = pp
        # The batch's entries are requests waiting to execute: guard them with the
        # timer even if their request reached only the primary (TOCS §4.5.2).
        for entry in pp.batch:
            entry_id = entry.entry_id()
            self.queue.pop(entry_id, None)
            if entry_id not in self.executed_ids and entry_id not in self.pending:
                if len(self.pending) < self.config.pending_entries_max:
                    self.pending[entry_id] = entry
        self.arm_request_timer()
        vote = Vote(KIND_PREPARE, self.epoch, pp.view, pp.seq, pp.digest, self.node_id, signature)
        slot.prepares.setdefault(self.node_id, vote)
        self.broadcast(vote)
        self._check_prepared(pp.seq, slot)

    def _keep_early(self, message: PrePrepare | Vote, sender: str) -> None:
        """Messages for the view we are entering arrive before its NEW-VIEW: keep a few."""
        if len(self.early) >= self.config.window * 4:
            self.count("dropped_early_message")
            return
        self.early.append((message, sender))

    def replay_early(self) -> None:
        """Feed the kept messages of the view just entered through the normal checks."""
        now = [(m, s) for m, s in self.early if m.view == self.view]
        self.early = [(m, s) for m, s in self.early if m.view > self.view]
        for message, sender in now:
            if isinstance(message, PrePrepare):
                self.on_pre_prepare(message, sender)
            else:
                self.on_vote(message, sender)

    def _current(
        self,
        epoch: int,
        view: int,
        signer: str,
        sender: str,
        message: PrePrepare | Vote | None = None,
    ) -> bool:
        """Normal-case messages count only in this epoch and view, outside a view change."""
        if epoch != self.epoch:
            self.on_other_epoch(epoch, sender)
            return False
        if signer not in self.committee or not self.is_member:
            self.count("not_from_member")
            return False
        if view != self.view or self.view_changing:
            self.count("wrong_view")
            if self.view <= view <= self.view + EARLY_VIEWS_MAX and message is not None:
                self._keep_early(message, sender)
            if view > self.view or self.view_changing:
                # Others are ahead, or progress without us: certified batches do not
                # depend on the view, so catch up through state transfer.
                self.request_state(sender)
            return False
        return True

    def on_vote(self, vote: Vote, sender: str) -> None:
        if not wellformed.vote(vote):
            self.count("malformed_vote")
            return
        if not self._current(vote.epoch, vote.view, vote.sender, sender, vote):
            return
        if not self.in_window(vote.seq):
            self.count("vote_outside_window")
            return
        if vote.kind == KIND_PREPARE and vote.sender == self.committee.primary(vote.view):
            self.count("prepare_from_primary")
            return
        if self._vote_is_late(vote):
            # Nothing this vote could change: skip the signature check (the largest
            # CPU cost of a vote). Each replica gets one such PREPARE and one such
            # COMMIT per batch at n = 4 (it needs quorum - 1 of n - 1 peers).
            self.count("late_vote_ignored")
            return
        if not self.verify(vote.sender, vote.payload(), vote.signature):
            self.evidence("bad_signature", vote.sender, seq=vote.seq)
            return
        slot = self.slots.setdefault(vote.seq, Slot())
        table = slot.prepares if vote.kind == KIND_PREPARE else slot.commits
        previous = table.get(vote.sender)
        if previous is not None:
            if previous.digest != vote.digest:
                self.evidence("conflicting_vote", vote.sender, view=vote.view, seq=vote.seq)
            return
        table[vote.sender] = vote
        if vote.kind == KIND_PREPARE:
            self._check_prepared(vote.seq, slot)
        else:
            self._check_committed(vote.seq, slot, vote.sender)

    def _vote_is_late(self, vote: Vote) -> bool:
        """A PREPARE after we committed the slot, or a COMMIT after it was certified."""
        if vote.kind == KIND_PREPARE:
            slot = self.slots.get(vote.seq)
            return slot is not None and slot.commit_sent
        return vote.seq <= self.last_executed or vote.seq in self.certified

    def _check_prepared(self, seq: int, slot: Slot) -> None:
        pp = slot.pre_prepare
        if pp is None or slot.commit_sent:
            return
        primary = self.committee.primary(pp.view)
        matching = sorted(
            (v for v in slot.prepares.values() if v.digest == pp.digest and v.sender != primary),
            key=lambda v: v.sender,
        )
        if len(matching) < self.committee.quorum - 1:
            return
        signature = self.sign_vote(KIND_COMMIT, pp.view, seq, pp.digest)
        if signature is None:
            return
        proof = PreparedProof(pp, tuple(matching[: self.committee.quorum - 1]))
        self.persist(PersistPrepared(proof))
        slot.commit_sent = True
        vote = Vote(KIND_COMMIT, self.epoch, pp.view, seq, pp.digest, self.node_id, signature)
        slot.commits.setdefault(self.node_id, vote)
        self.broadcast(vote)
        self._check_committed(seq, slot, self.node_id)

    def _check_committed(self, seq: int, slot: Slot, sender: str) -> None:
        if seq <= self.last_executed or seq in self.certified:
            return
        digests = [v.digest for v in slot.commits.values()]
        pp = slot.pre_prepare
        digest = pp.digest if pp is not None else max(set(digests), key=digests.count)
        matching = sorted(
            (v for v in slot.commits.values() if v.digest == digest), key=lambda v: v.sender
        )
        if len(matching) < self.committee.quorum:
            return
        if pp is None:
            self.request_state(sender)  # decided without us: fetch the batch
            return
        quorum = matching[: self.committee.quorum]
        cert = CommitCertificate(
            self.epoch, pp.view, seq, digest, tuple((v.sender, v.signature) for v in quorum)
        )
        self.certified[seq] = CertifiedBatch(pp.batch, cert)
        self.execute_ready()

    # ------------------------------------------------------------ execution

    def execute_ready(self) -> None:
        """Execute certified batches in sequence order (TOCS §4.2: in order, no gaps)."""
        while True:
            certified = self.certified.pop(self.last_executed + 1, None)
            if certified is None:
                break
            self._execute(certified)
        if self.certified and min(self.certified) > self.last_executed + 1:
            self.request_state(None)
        self._maybe_propose()

    def _execute(self, certified: CertifiedBatch) -> None:
        cert = certified.certificate
        seq = cert.seq
        chain_hash = chain_next(self.durable.chain_hash, seq, cert.digest)
        retain_from = seq - self.config.retained_batches_max + 1
        self.persist(PersistExecuted(seq, chain_hash, certified, retain_from))
        for entry in certified.batch:
            entry_id = entry.entry_id()
            self.pending.pop(entry_id, None)
            self.queue.pop(entry_id, None)
            self.executed_ids[entry_id] = None
        while len(self.executed_ids) > self.config.executed_ids_max:
            del self.executed_ids[next(iter(self.executed_ids))]
        self.count("batches_decided")
        self.count("entries_decided", len(certified.batch))
        self.event(
            "decided",
            epoch=cert.epoch,
            seq=seq,
            view=cert.view,
            digest=cert.digest,
            entries=certified.batch,
            certificate=cert,
        )
        self.poll_backoff = 0
        self.poll_at_ms = self.now_ms + self.poll_interval_ms()
        # Progress: restart the timer and reset the backoff (TOCS §4.5.2).
        if not self.view_changing:
            self.vc_attempts = 0
            self.timer_deadline = None
            self.arm_request_timer()
        changes = [c for c in map(self._committee_change, certified.batch) if c is not None]
        if changes:
            self._change_epoch(seq, changes[-1])
        elif seq % self.config.checkpoint_interval == 0:
            self.send_checkpoint(seq)

    def _committee_change(self, entry: Entry) -> tuple[dict[str, int], int] | None:
        """Candidates and size if `entry` reconfigures the committee (checked in log order)."""
        if entry.kind == COMMITTEE_ENTRY_KIND:
            decoded = decode_committee_entry(entry.body)
            assert decoded is not None, "validated before it was prepared"
            return decoded
        return None if self.reconfigure is None else self.reconfigure(entry, self.epoch)

    def _change_epoch(self, seq: int, change: tuple[dict[str, int], int]) -> None:
        """Reconfiguration at an epoch boundary: the next committee starts after `seq`."""
        candidates, size = change
        randomness = epoch_randomness(self.epoch, seq, self.durable.chain_hash)
        members = select_committee(candidates, randomness, size)
        self.persist(PersistEpoch(self.epoch + 1, members, seq))
        self.committee = Committee(self.epoch + 1, members)
        self.view = 0
        self.view_changing = False
        self.vc_attempts = 0
        self.stable = self.durable.stable_proof()
        self.low_mark = seq
        self.next_seq = seq + 1
        self.slots.clear()
        self.early.clear()
        self.held.clear()
        self.certified.clear()
        self.checkpoint_votes.clear()
        self.own_checkpoints.clear()
        self.view_changes.clear()
        self.new_view_sent_for = -1
        if not self.is_member:
            self.pending.clear()
        self.queue = dict(self.pending)
        self.timer_deadline = None
        self.arm_request_timer()
        self.count("epochs")
        self.event("epoch", epoch=self.epoch, members=members, start_seq=seq)

    # ------------------------------------------------------------ hooks for the mixins

    def on_other_epoch(self, epoch: int, sender: str) -> None:
        raise NotImplementedError

    def send_checkpoint(self, seq: int) -> None:
        raise NotImplementedError

    def request_state(self, target: str | None) -> None:
        raise NotImplementedError

    def poll_interval_ms(self) -> int:
        raise NotImplementedError

    # ------------------------------------------------------------ invariants

    def check_invariants(self) -> None:
        """Cheap bounds, run after every step (the simulator does so after each delivery)."""
        config = self.config
        problems = []
        slots = self.slots
        if slots and (min(slots) <= self.low_mark or max(slots) > self.low_mark + config.window):
            problems.append("a slot outside the watermarks")
        if len(self.pending) > config.pending_entries_max:
            problems.append("pending requests above the bound")
        if len(self.view_changes) > config.future_views_max + 1:
            problems.append("view-change table above the bound")
        if len(self.early) > config.window * 4:
            problems.append("early messages above the bound")
        if len(self.held) > config.window:
            problems.append("held pre-prepares above the window")
        if len(self.durable.retained) > config.retained_batches_max:
            problems.append("retained batches above the bound")
        if self.stable.seq > self.last_executed:
            problems.append("stable checkpoint ahead of execution")
        if problems:
            raise InvariantViolation(f"{self.node_id}: " + "; ".join(problems))

    def check_invariants_full(self) -> None:
        """Everything, including per-entry checks (the scenario's periodic global check)."""
        self.check_invariants()
        problems = []
        if any(len(t) > self.committee.size for t in self.view_changes.values()):
            problems.append("more view-changes in a view than members")
        if any(len(s.prepares) > self.committee.size for s in self.slots.values()):
            problems.append("more prepares in a slot than members")
        for seq, certified in self.certified.items():
            if (
                batch_digest(certified.batch) != certified.certificate.digest
                or seq <= self.last_executed
            ):
                problems.append(f"bad certified batch at {seq}")
        # A new primary signs O's pre-prepares even below a checkpoint that became
        # stable meanwhile; the next stable checkpoint prunes them, so at most a window.
        floor = self.stable.seq - self.config.window
        for key in self.durable.votes:
            if key[2] <= floor:
                problems.append(f"vote {key} kept a window below the stable checkpoint")
                break
        if problems:
            raise InvariantViolation(f"{self.node_id}: " + "; ".join(problems))
