"""Byzantine behaviours as plug-ins: a wrapper runs the honest replica and rewrites its output.

Each behaviour sees the honest replica's outgoing messages and may drop, alter,
duplicate or delay them, signing with the faulty replica's own key only (it
never holds another replica's key). `BEHAVIOURS` maps a name to its class, so a
scenario or a test picks behaviours by name; new attacks are one class each.
"""

from __future__ import annotations

import dataclasses
import heapq
import random
from typing import Any

from agentmesh.core.node import Output, Send, Signer

from .durable import DurableState
from .messages import (
    Checkpoint,
    Entry,
    NewView,
    PrePrepare,
    ViewChange,
    Vote,
    batch_digest,
    sha256,
)
from .pbft import Replica

REPLAY_STORE_MAX = 256


class Behaviour:
    """Default: behave honestly. Subclasses override `outgoing` and/or `incoming`."""

    name = "honest"

    def __init__(self, signer: Signer, rng: random.Random) -> None:
        self.signer = signer
        self.rng = rng

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        """Sends to emit, each with the local time at which to release it."""
        return [(now_ms, item)]

    def incoming(self, message: Any, sender: str) -> None:
        """Observe a delivered message (the replica still receives it)."""

    def resign(self, message: Any) -> Any:
        """The same message re-signed by this replica after its fields changed."""
        unsigned = dataclasses.replace(message, signature=b"")
        return dataclasses.replace(message, signature=self.signer.sign(unsigned.payload()))


class Silent(Behaviour):
    """Sends nothing at all (a crashed or mute replica that still counts as a member)."""

    name = "silent"

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        return []


class EquivocatingPrimary(Behaviour):
    """As primary, sends a different pre-prepare for the same (view, seq) to half the backups."""

    name = "equivocate"

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        pp = item.message
        if not isinstance(pp, PrePrepare) or sha256(item.to.encode())[0] % 2 == 0:
            return [(now_ms, item)]
        batch = (*pp.batch[:-1], Entry("junk", self.rng.randbytes(8)))
        other = self.resign(dataclasses.replace(pp, batch=batch, digest=batch_digest(batch)))
        return [(now_ms, Send(item.to, other))]


class ConflictingVotes(Behaviour):
    """Prepares and commits a random digest to a random half of the replicas."""

    name = "conflicting_votes"

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        vote = item.message
        if not isinstance(vote, Vote) or self.rng.random() < 0.5:
            return [(now_ms, item)]
        other = self.resign(dataclasses.replace(vote, digest=self.rng.randbytes(32)))
        return [(now_ms, Send(item.to, other))]


class WithheldVotes(Behaviour):
    """Withholds most of its prepares and commits (and all from one unlucky peer)."""

    name = "withhold"

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        if isinstance(item.message, (Vote, Checkpoint)) and self.rng.random() < 0.8:
            return []
        return [(now_ms, item)]


class InvalidSignatures(Behaviour):
    """Every signed message goes out with a corrupted signature."""

    name = "bad_signatures"

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        message = item.message
        signature = getattr(message, "signature", None)
        if isinstance(signature, bytes) and signature:
            bad = bytes([signature[0] ^ 0xFF]) + signature[1:]
            message = dataclasses.replace(message, signature=bad)
        return [(now_ms, Send(item.to, message))]


class Replayer(Behaviour):
    """Records what it hears and replays old messages (anyone's) to random peers."""

    name = "replay"

    def __init__(self, signer: Signer, rng: random.Random) -> None:
        super().__init__(signer, rng)
        self.store: list[tuple[str, Any]] = []

    def incoming(self, message: Any, sender: str) -> None:
        if len(self.store) < REPLAY_STORE_MAX:
            self.store.append((sender, message))
        else:
            self.store[self.rng.randrange(REPLAY_STORE_MAX)] = (sender, message)

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        out = [(now_ms, item)]
        if self.store and self.rng.random() < 0.3:
            _, old = self.rng.choice(self.store)
            out.append((now_ms, Send(item.to, old)))
        return out


class FutureViews(Behaviour):
    """Pushes votes and view-changes for views far ahead (and some just ahead)."""

    name = "future_views"

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        out = [(now_ms, item)]
        message = item.message
        jump = self.rng.choice((1, 2, 5, 1000, 2**40))
        if isinstance(message, Vote):
            out.append(
                (
                    now_ms,
                    Send(
                        item.to, self.resign(dataclasses.replace(message, view=message.view + jump))
                    ),
                )
            )
        elif isinstance(message, ViewChange):
            forged = dataclasses.replace(message, new_view=message.new_view + jump, prepared=())
            out.append((now_ms, Send(item.to, self.resign(forged))))
        return out


class SlowPrimary(Behaviour):
    """Holds each pre-prepare for just under the view-change timeout."""

    name = "slow_primary"

    def __init__(self, signer: Signer, rng: random.Random, delay_ms: int = 0) -> None:
        super().__init__(signer, rng)
        self.delay_ms = delay_ms

    def outgoing(self, item: Send, now_ms: int) -> list[tuple[int, Send]]:
        if isinstance(item.message, (PrePrepare, NewView)):
            return [(now_ms + self.delay_ms, item)]
        return [(now_ms, item)]


class TwinRelay(Behaviour):
    """One half of a twin pair: forwards everything it hears to the other node with its key."""

    name = "twins"

    def __init__(self, signer: Signer, rng: random.Random, twin_node: str = "") -> None:
        super().__init__(signer, rng)
        self.twin_node = twin_node
        self.relay: list[Any] = []

    def incoming(self, message: Any, sender: str) -> None:
        if self.twin_node:
            self.relay.append(message)


BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (
        Silent,
        EquivocatingPrimary,
        ConflictingVotes,
        WithheldVotes,
        InvalidSignatures,
        Replayer,
        FutureViews,
        SlowPrimary,
        TwinRelay,
    )
}


class ByzantineReplica:
    """A Machine: the honest `inner` replica whose outbox passes through `behaviour`."""

    def __init__(self, inner: Replica, behaviour: Behaviour) -> None:
        self.inner = inner
        self.behaviour = behaviour
        self.node_id = inner.node_id
        self._held: list[tuple[int, int, Send]] = []
        self._ready: list[Output] = []
        self._counter = 0
        self._now_ms = 0

    def start(self, now_ms: int) -> None:
        self._now_ms = now_ms
        self.inner.start(now_ms)
        self._filter()

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        self._now_ms = now_ms
        self.behaviour.incoming(message, sender)
        self.inner.receive(message, sender, now_ms)
        self._filter()

    def tick(self, now_ms: int) -> None:
        self._now_ms = now_ms
        deadline = self.inner.next_deadline()
        if deadline is not None and deadline <= now_ms:
            self.inner.tick(now_ms)
        self._filter()

    def next_deadline(self) -> int | None:
        deadlines = [self.inner.next_deadline()]
        if self._held:
            deadlines.append(self._held[0][0])
        return min((d for d in deadlines if d is not None), default=None)

    def _filter(self) -> None:
        for item in self.inner.take_outbox():
            if not isinstance(item, Send):
                self._ready.append(item)
                continue
            for release_ms, send in self.behaviour.outgoing(item, self._now_ms):
                self._counter += 1
                heapq.heappush(self._held, (release_ms, self._counter, send))
        if isinstance(self.behaviour, TwinRelay) and self.behaviour.relay:
            for message in self.behaviour.relay:
                self._ready.append(Send(self.behaviour.twin_node, message))
            self.behaviour.relay.clear()
        while self._held and self._held[0][0] <= self._now_ms:
            self._ready.append(heapq.heappop(self._held)[2])

    def take_outbox(self) -> list[Output]:
        out, self._ready = self._ready, []
        return out

    def check_invariants(self) -> None:
        self.inner.check_invariants()

    def durable_state(self) -> DurableState:
        return self.inner.durable_state()
