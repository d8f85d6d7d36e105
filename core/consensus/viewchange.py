"""PBFT view change: VIEW-CHANGE, NEW-VIEW with the V and O sets (TOCS §4.4, §4.5.2)."""

from __future__ import annotations

from . import wellformed
from .checkpoints import CheckpointMixin
from .durable import PersistNewView, PersistViewChange
from .messages import (
    KIND_PRE_PREPARE,
    NewView,
    PrePrepare,
    Request,
    ViewChange,
)
from .proofs import (
    new_view_plan,
    plan_digest,
    verify_pre_prepare,
    verify_view_change,
)
from .replica import Slot


class ViewChangeMixin(CheckpointMixin):
    """Moves the committee to a new primary when the current one stops making progress."""

    def restore_view_change(self) -> None:
        """After a restart, resume the view change we had signed, if any (never a second one)."""
        vc = self.durable.view_change
        new_view = self.durable.new_view
        if vc is None or vc.epoch != self.epoch or vc.new_view != self.view:
            return
        if new_view is not None and new_view.view >= vc.new_view:
            return
        self.view_changing = True
        self.view_changes.setdefault(vc.new_view, {})[self.node_id] = vc
        self.broadcast(vc)
        self.timer_deadline = None
        self.vc_resend_ms = self.now_ms + self.config.view_change_timeout_ms
        self.arm_view_change_timer()

    def start_view_change(self, new_view: int) -> None:
        """Stop accepting messages of the old view; ask for `new_view` (TOCS §4.4)."""
        if new_view <= self.view and (self.view_changing or new_view < self.view):
            return
        if not self.is_member:
            return
        signed = self.durable.view_change
        self.view = new_view
        self.view_changing = True
        self.vc_attempts += 1
        self.slots.clear()
        self.held.clear()
        if signed is not None and signed.epoch == self.epoch and signed.new_view == new_view:
            vc = signed  # signed before a restart: resend it unchanged
        else:
            stable = self.stable
            prepared = tuple(
                self.durable.prepared[seq]
                for seq in sorted(self.durable.prepared)
                if stable.seq < seq <= stable.seq + self.config.window
            )
            unsigned = ViewChange(self.epoch, new_view, stable, prepared, self.node_id, b"")
            signature = self.signer.sign(unsigned.payload())
            vc = ViewChange(self.epoch, new_view, stable, prepared, self.node_id, signature)
            self.persist(PersistViewChange(vc))
        self.view_changes.setdefault(new_view, {})[self.node_id] = vc
        self._prune_view_changes()
        self.broadcast(vc)
        self.resend_requests()
        self.timer_deadline = None
        self.vc_resend_ms = self.now_ms + self.config.view_change_timeout_ms
        self.count("view_changes_started")
        self.event("view_change", epoch=self.epoch, view=new_view)
        self.arm_view_change_timer()
        self._try_new_view()

    def arm_view_change_timer(self) -> None:
        """TOCS §4.5.2: wait for NEW-VIEW only once quorum VIEW-CHANGEs for this view arrived.

        A replica alone in a view change (partitioned, restarted) therefore does not
        race ahead through views the others never reach; it follows them instead.
        """
        if not self.view_changing or self.timer_deadline is not None:
            return
        if len(self.view_changes.get(self.view, {})) >= self.committee.quorum:
            self.timer_deadline = self.now_ms + self.timeout_ms()

    def resend_requests(self) -> None:
        """Clients retransmit on timeout (TOCS §4.5.2); we do it for our oldest requests
        so that a request that reached no one else (a partition) is not stranded here."""
        for entry in list(self.pending.values())[: self.config.batch_entries_max]:
            self.broadcast(Request(entry))

    def _prune_view_changes(self) -> None:
        low = self.view if self.view_changing else self.view + 1
        self.view_changes = {v: t for v, t in self.view_changes.items() if v >= low}

    def on_view_change(self, vc: ViewChange, sender: str) -> None:
        config = self.config
        size = self.committee.size
        if not wellformed.view_change(
            vc, size, config.window, config.batch_entries_max, config.entry_body_bytes_max
        ):
            self.count("malformed_view_change")
            return
        if vc.epoch != self.epoch:
            self.on_other_epoch(vc.epoch, sender)
            return
        if not self.is_member or vc.sender not in self.committee:
            self.count("not_from_member")
            return
        if vc.new_view < self.view or (vc.new_view == self.view and not self.view_changing):
            self._help_lagging(vc.sender)
            return
        if vc.new_view > self.view + config.future_views_max:
            self.count("view_change_too_far_ahead")
            return
        table = self.view_changes.setdefault(vc.new_view, {})
        previous = table.get(vc.sender)
        if previous is not None:
            if previous.content_digest() != vc.content_digest():
                self.evidence("conflicting_view_change", vc.sender, view=vc.new_view)
            return
        if not verify_view_change(
            vc, self.committee, self.durable.epoch_start_seq, config.window, self.verify
        ):
            self.evidence("bad_view_change", vc.sender, view=vc.new_view)
            if not table:
                del self.view_changes[vc.new_view]
            return
        table[vc.sender] = vc
        self._join_higher_views()
        self.arm_view_change_timer()
        self._try_new_view()

    def _help_lagging(self, peer: str) -> None:
        """A peer asks for a view below ours: send our NEW-VIEW, or our own VIEW-CHANGE."""
        new_view = self.durable.new_view
        if self.view_changing:
            own = self.view_changes.get(self.view, {}).get(self.node_id)
            if own is not None:
                self.count("view_change_resent")
                self.send_to(peer, own)
        elif new_view is not None and new_view.epoch == self.epoch and new_view.view == self.view:
            self.count("new_view_resent")
            self.send_to(peer, new_view)

    def resend_view_change(self) -> None:
        """Retransmit our VIEW-CHANGE while the view change lasts (messages may be lost)."""
        own = self.view_changes.get(self.view, {}).get(self.node_id)
        if self.view_changing and own is not None:
            self.count("view_change_resent")
            self.broadcast(own)
            self.resend_requests()
            self.request_state(None)  # the others may be deciding without us
        self.vc_resend_ms = self.now_ms + self.config.view_change_timeout_ms

    def _join_higher_views(self) -> None:
        """TOCS §4.5.2: f+1 replicas ask for views above ours, so join the smallest we can."""
        highest: dict[str, int] = {}
        for view, table in self.view_changes.items():
            if view > self.view:
                for peer in table:
                    highest[peer] = max(highest.get(peer, 0), view)
        if len(highest) < self.committee.f + 1:
            return
        target = sorted(highest.values(), reverse=True)[self.committee.f]
        self.start_view_change(target)

    def _try_new_view(self) -> None:
        """The new primary sends NEW-VIEW once it holds quorum VIEW-CHANGEs (TOCS §4.4)."""
        if not self.view_changing or not self.is_primary or self.new_view_sent_for == self.view:
            return
        table = self.view_changes.get(self.view, {})
        if len(table) < self.committee.quorum or self.node_id not in table:
            return
        others = sorted(peer for peer in table if peer != self.node_id)
        chosen = [self.node_id, *others[: self.committee.quorum - 1]]
        view_changes = tuple(table[peer] for peer in chosen)
        _, plan = new_view_plan(view_changes)
        pre_prepares = []
        for seq, source in plan.items():
            batch = () if source is None else source.batch
            digest = plan_digest(source)
            signature = self.sign_vote(KIND_PRE_PREPARE, self.view, seq, digest)
            if signature is None:
                return  # would contradict a pre-prepare we signed before a restart
            pre_prepares.append(
                PrePrepare(self.epoch, self.view, seq, digest, batch, self.node_id, signature)
            )
        unsigned = NewView(
            self.epoch, self.view, view_changes, tuple(pre_prepares), self.node_id, b""
        )
        signature = self.signer.sign(unsigned.payload())
        new_view = NewView(
            self.epoch, self.view, view_changes, tuple(pre_prepares), self.node_id, signature
        )
        self.new_view_sent_for = self.view
        self.count("new_views_sent")
        # NEW-VIEW goes out before the pre-prepares entering the view may trigger.
        self.persist(PersistNewView(new_view))
        self.broadcast(new_view)
        self.enter_new_view(new_view)

    def on_new_view(self, nv: NewView, sender: str) -> None:
        config = self.config
        if not wellformed.new_view(
            nv,
            self.committee.size,
            config.window,
            config.batch_entries_max,
            config.entry_body_bytes_max,
        ):
            self.count("malformed_new_view")
            return
        if nv.epoch != self.epoch:
            self.on_other_epoch(nv.epoch, sender)
            return
        if nv.view < self.view or (nv.view == self.view and not self.view_changing):
            self.count("stale_new_view")
            return
        if not self.verify_new_view(nv):
            self.evidence("bad_new_view", nv.sender, view=nv.view)
            return
        self.enter_new_view(nv)

    def verify_new_view(self, nv: NewView) -> bool:
        """Recompute O from V and compare with what the primary sent (TOCS §4.4)."""
        committee = self.committee
        if nv.sender != committee.primary(nv.view) or nv.sender not in committee:
            return False
        if not self.verify(nv.sender, nv.payload(), nv.signature):
            return False
        senders = {vc.sender for vc in nv.view_changes}
        if len(senders) != len(nv.view_changes) or len(senders) < committee.quorum:
            return False
        for vc in nv.view_changes:
            if vc.new_view != nv.view or not verify_view_change(
                vc, committee, self.durable.epoch_start_seq, self.config.window, self.verify
            ):
                return False
        _, plan = new_view_plan(nv.view_changes)
        if [pp.seq for pp in nv.pre_prepares] != list(plan):
            return False
        for pp in nv.pre_prepares:
            if pp.view != nv.view or pp.digest != plan_digest(plan[pp.seq]):
                return False
            if not verify_pre_prepare(pp, committee, self.verify):
                return False
        return True

    def enter_new_view(self, nv: NewView) -> None:
        """Adopt min-s and the pre-prepares in O, then prepare them as in the normal case."""
        checkpoint, _ = new_view_plan(nv.view_changes)
        if self.durable.new_view is not nv:
            self.persist(PersistNewView(nv))
        self.view = nv.view
        self.view_changing = False
        self._prune_view_changes()
        self.slots.clear()
        self.held.clear()
        if checkpoint.seq > self.low_mark:
            self.low_mark = checkpoint.seq
            self.certified = {s: c for s, c in self.certified.items() if s > self.low_mark}
            if checkpoint.seq > self.last_executed:
                self.request_state(nv.sender)
        assigned: set[bytes] = set()
        top = self.low_mark
        for pp in nv.pre_prepares:
            top = max(top, pp.seq)
            if pp.seq <= self.low_mark:
                continue
            assigned.update(entry.entry_id() for entry in pp.batch)
            self.slots[pp.seq] = Slot()
            self.accept_pre_prepare(pp)
        self.next_seq = max(top, self.last_executed) + 1
        self.queue = {i: e for i, e in self.pending.items() if i not in assigned}
        self.timer_deadline = None
        self.arm_request_timer()
        self.count("new_views_entered")
        self.event("new_view", epoch=self.epoch, view=nv.view, primary=nv.sender)
        self.replay_early()
        self._maybe_propose()
