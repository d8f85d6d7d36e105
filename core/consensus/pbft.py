"""`Replica`: the PBFT machine a host drives (core/node.py contract).

    replica = Replica(signer, verify, genesis_committee, random.Random(seed))
    replica.start(now_ms)
    replica.propose(Entry("task", body), now_ms)
    replica.receive(message, sender, now_ms); replica.tick(now_ms)
    for output in replica.take_outbox(): ...   # persist events BEFORE the sends after them

Outputs: `Send(peer, message)`; `Event("persist", records=...)` (make durable
first, see durable.py); `Event("decided", epoch, seq, view, digest, entries,
certificate)` in sequence order; `Event("epoch")`, `Event("view_change")`,
`Event("new_view")`, `Event("state_gap")` and `Event("evidence", reason, sender)`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .durable import DurableState
from .messages import (
    Checkpoint,
    FetchState,
    NewView,
    PrePrepare,
    Request,
    StateReply,
    ViewChange,
    Vote,
)
from .transfer import TransferMixin


class Replica(TransferMixin):
    """One member (or observer) of the validator committee."""

    def start(self, now_ms: int) -> None:
        self.now_ms = now_ms
        if self.restarted:
            self.restore_view_change()
            self.request_state_from_all()
        self.observer_tick()
        self.member_poll_tick()
        self.flush_persist()

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        self.now_ms = now_ms
        handler = _HANDLERS.get(type(message))
        if handler is None:
            self.count("dropped_unknown_message")
        else:
            handler(self, message, sender)
        self.flush_persist()

    def tick(self, now_ms: int) -> None:
        self.now_ms = now_ms
        if self.timer_deadline is not None and now_ms >= self.timer_deadline:
            self.timer_deadline = None
            # TOCS §4.4: the timer expired in view v, so move to view v + 1.
            self.start_view_change(self.view + 1)
        if self.vc_resend_ms is not None and now_ms >= self.vc_resend_ms:
            self.vc_resend_ms = None
            if self.view_changing:
                self.resend_view_change()
        if self.fetch_retry and now_ms >= self.fetch_after_ms:
            self.request_state(self.fetch_retry_target)
        elif self.certified and min(self.certified) > self.last_executed + 1:
            self.request_state(None)
        self.observer_tick()
        self.member_poll_tick()
        self.flush_persist()

    def durable_state(self) -> DurableState:
        """What survives a crash: everything persisted so far (the simulator's hook)."""
        return self.durable.copy()

    def next_deadline(self) -> int | None:
        timers = (self.timer_deadline, self.observer_fetch_ms, self.vc_resend_ms, self.poll_at_ms)
        deadlines = [d for d in timers if d is not None]
        if self.fetch_retry or (self.certified and min(self.certified) > self.last_executed + 1):
            deadlines.append(max(self.fetch_after_ms, self.now_ms + 1))
        return min(deadlines, default=None)


_HANDLERS: dict[type, Callable[[Replica, Any, str], None]] = {
    Request: Replica.on_request,
    PrePrepare: Replica.on_pre_prepare,
    Vote: Replica.on_vote,
    Checkpoint: Replica.on_checkpoint,
    ViewChange: Replica.on_view_change,
    NewView: Replica.on_new_view,
    FetchState: Replica.on_fetch_state,
    StateReply: Replica.on_state_reply,
}
