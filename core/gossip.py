"""Push/pull rumor gossip: the simulator's workload until membership lands.

Rumor mongering after Demers et al., "Epidemic algorithms for replicated database
maintenance" (PODC 1987): a node that learns a rumor pushes it to `fanout` random
peers for `hot_rounds` rounds (push, §1.4 "rumor mongering"); every
`pull_every_rounds` rounds it also sends a Digest to one random peer, which answers
with the rumors the digest lacks (anti-entropy, §1.3), so stragglers and nodes
that were partitioned or restarted catch up.

A rumor is `(origin, seq)` -> payload, with `seq` counting from 1 per origin. The
digest is a version vector: per origin, the highest `seq` below which the node
knows every rumor. Messages are small immutable Python objects.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from agentmesh.core.limits import DEFAULT_GOSSIP_LIMITS, GossipLimits
from agentmesh.core.node import ContractError, InvariantViolation, MachineBase, Send

RumorId = tuple[str, int]
Rumor = tuple[RumorId, str]

_TUPLE_TYPE, _STR_TYPE, _INT_TYPE = {tuple}, {str}, {int}


@dataclass(frozen=True, slots=True)
class Push:
    """Rumors pushed to a peer (or sent back in answer to a Digest)."""

    rumors: tuple[Rumor, ...]


@dataclass(frozen=True, slots=True)
class Digest:
    """Pull request: `(origin, seq)` pairs meaning "I know all of origin's rumors up to seq"."""

    vector: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Protocol parameters; bounds are in `limits`."""

    round_ms: int = 1000
    fanout: int = 3
    hot_rounds: int = 4
    pull_every_rounds: int = 2
    limits: GossipLimits = DEFAULT_GOSSIP_LIMITS

    def __post_init__(self) -> None:
        if self.round_ms < 1 or self.fanout < 0 or self.hot_rounds < 0:
            raise ContractError("round_ms must be >= 1, fanout and hot_rounds >= 0")
        if self.pull_every_rounds < 1:
            raise ContractError("pull_every_rounds must be >= 1")


@dataclass(frozen=True, slots=True)
class GossipDurable:
    """What survives a crash: every rumor known and the last sequence number used."""

    rumors: tuple[Rumor, ...]
    last_seq: int


class GossipNode(MachineBase):
    """One gossiping node. `peers` may include this node's own id (it is skipped)."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        peers: Sequence[str],
        config: GossipConfig | None = None,
        durable: GossipDurable | None = None,
    ) -> None:
        super().__init__(node_id, rng)
        self.config = config or GossipConfig()
        limits = self.config.limits
        self._rumors_max = limits.rumors_max
        self._batch_max = limits.rumors_per_message_max
        self._random = rng.random
        self._pull_every = self.config.pull_every_rounds
        self._fanout = self.config.fanout
        self._own_seq_max = 0  # highest own rumor seq known (> last_seq: a lost counter)
        self.peers = peers
        self.known: dict[RumorId, str] = {}
        self.hot: dict[RumorId, int] = {}  # rumor -> last round in which it is pushed
        self._push_message: Push | None = None  # cached Push of the hot rumors
        self._hot_expiry_min = 0  # earliest last-round among hot rumors
        self.last_seq = 0
        self._vector: dict[str, int] = {}
        # Known rumors above their origin's vector entry (learned out of order), in
        # learning order: with the vector, exactly the known rumors (see _learn).
        self._detached: dict[RumorId, None] = {}
        self._digest: Digest | None = None
        self._next_round_ms: int | None = None
        self._round = 0
        if durable is not None:
            self.last_seq = durable.last_seq
            for rumor_id, payload in durable.rumors:
                self._learn(rumor_id, payload, hot=False)

    # -- contract -----------------------------------------------------------------

    def start(self, now_ms: int) -> None:
        # A random first round keeps the nodes from ticking in lockstep.
        self._next_round_ms = now_ms + 1 + self.rng.randrange(self.config.round_ms)

    def next_deadline(self) -> int | None:
        return self._next_round_ms

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        kind = message.__class__
        if kind is Push:
            rumors = message.rumors
            if rumors.__class__ is not tuple or len(rumors) > self._batch_max:
                self.count("bad_message")
                return
            known = self.known
            # Fast path: rumors we already hold, the very same objects (the common case
            # once a rumor has spread). Anything else takes the validating path.
            try:
                for rumor_id, payload in rumors:
                    if known.get(rumor_id) is not payload:
                        self._on_push(rumors)
                        return
            except (TypeError, ValueError):
                self._on_push(rumors)
        elif kind is Digest:
            self._on_digest(message.vector, sender)
        else:
            self.count("bad_message")

    def tick(self, now_ms: int) -> None:
        due = self._next_round_ms
        if due is None or now_ms < due:
            return
        round_ms = self.config.round_ms
        # Missed rounds (a paused or slow clock) are skipped, not replayed in a burst.
        self._next_round_ms = due + round_ms if due + round_ms > now_ms else now_ms + round_ms
        self._round += 1
        if self.hot:
            self._push_round()
        if self._round % self._pull_every == 0:
            peer = self._pick_peer()
            if peer is not None:
                self._outbox.append(Send(peer, self._digest or self._current_digest()))

    def check_invariants(self) -> None:
        """O(1) checks, cheap enough to run after every delivery."""
        known_count = len(self.known)
        if (
            known_count <= self._rumors_max
            and len(self.hot) <= known_count
            and self._own_seq_max <= self.last_seq
        ):
            return
        if known_count > self._rumors_max:
            raise InvariantViolation(f"{self.node_id} knows {len(self.known)} rumors > bound")
        if len(self.hot) > len(self.known):
            raise InvariantViolation(f"{self.node_id} has more hot rumors than known ones")
        raise InvariantViolation(f"{self.node_id} knows own rumors it never originated")

    def check_invariants_full(self) -> None:
        """O(rumors) checks: hot is a subset of known; known is exactly the rumors the
        version vector covers (no holes) plus the detached ones above it."""
        self.check_invariants()
        known = self.known
        if not self.hot.keys() <= known.keys():
            raise InvariantViolation(f"{self.node_id} pushes rumors it does not know")
        vector = self._vector
        # Membership tests instead of building the set of covered ids (~3x cheaper; this
        # runs for every node at every global check). Origins are distinct, so the
        # covered ids number the sum of the positive vector entries.
        covered = 0
        for origin, seq in vector.items():
            for number in range(1, seq + 1):
                if (origin, number) not in known:
                    raise InvariantViolation(f"{self.node_id} vector claims ({origin}, {number})")
            if seq > 0:
                covered += seq
        detached = self._detached
        if (
            covered + len(detached) != len(known)
            or not detached.keys() <= known.keys()
            or any(rumor_id[1] <= vector.get(rumor_id[0], 0) for rumor_id in detached)
        ):
            raise InvariantViolation(f"{self.node_id} vector and detached rumors != known")

    def durable_state(self) -> GossipDurable:
        return GossipDurable(tuple(self.known.items()), self.last_seq)

    # -- commands -----------------------------------------------------------------

    def originate(self, payload: str, now_ms: int) -> RumorId | None:
        """Start a new rumor; None (and a counter) if the rumor table is full."""
        if len(payload) > self.config.limits.payload_chars_max:
            raise ContractError("payload longer than payload_chars_max")
        if len(self.known) >= self.config.limits.rumors_max:
            self.count("rumors_dropped_full")
            return None
        self.last_seq += 1
        rumor_id = (self.node_id, self.last_seq)
        self._learn(rumor_id, payload, hot=True)
        self.emit("rumor_originated", rumor=rumor_id, payload=payload, now_ms=now_ms)
        return rumor_id

    # -- protocol -----------------------------------------------------------------

    def _pick_peer(self) -> str | None:
        peers = self.peers
        count = len(peers)
        random = self._random
        for _ in range(4):  # a few draws to avoid self; with 1 node there is nobody
            peer = peers[int(random() * count)]
            if peer != self.node_id:
                return peer
        return None

    def _push_round(self) -> None:
        current = self._round
        if current > self._hot_expiry_min:
            self._expire_hot(current)
            if not self.hot:
                return
        message = self._push_message
        if message is None:
            known = self.known
            sent = list(self.hot)[: self._batch_max]
            message = Push(tuple([(rumor_id, known[rumor_id]) for rumor_id in sent]))
            self._push_message = message
        # _pick_peer inlined (the same draws): this runs for every hot node every round
        peers = self.peers
        count = len(peers)
        random = self._random
        node_id = self.node_id
        append = self._outbox.append
        for _ in range(self._fanout):
            for _ in range(4):
                peer = peers[int(random() * count)]
                if peer != node_id:
                    append(Send(peer, message))
                    break

    def _expire_hot(self, current: int) -> None:
        hot = self.hot
        for rumor_id in [r for r, last in hot.items() if last < current]:
            del hot[rumor_id]
        self._hot_expiry_min = min(hot.values(), default=0)
        self._push_message = None

    def _on_push(self, rumors: Any) -> None:
        if rumors.__class__ is not tuple or len(rumors) > self._batch_max:
            self.count("bad_message")
            return
        known = self.known
        limits = self.config.limits
        for entry in rumors:
            try:
                rumor_id, payload = entry
                held = known.get(rumor_id)
            except (TypeError, ValueError):
                self.count("bad_rumor")
                continue
            if held is not None:
                if held is not payload and held != payload:
                    self.count("conflicting_rumor")  # evidence of a lying or buggy peer
                continue
            if not _valid_rumor(rumor_id, payload, limits):
                self.count("bad_rumor")
                continue
            if len(known) >= limits.rumors_max:
                self.count("rumors_dropped_full")
                continue
            self._learn(rumor_id, payload, hot=True)

    def _on_digest(self, vector: Any, sender: str) -> None:
        limits = self.config.limits
        if vector.__class__ is not tuple or len(vector) > limits.origins_max:
            self.count("bad_message")
            return
        # Validate at C speed: every entry a tuple (str origin, int seq).
        try:
            theirs: dict[str, int] = dict(vector)
        except (TypeError, ValueError):
            self.count("bad_message")
            return
        if not (
            set(map(type, vector)) <= _TUPLE_TYPE
            and set(map(type, theirs)) <= _STR_TYPE
            and set(map(type, theirs.values())) <= _INT_TYPE
        ):
            self.count("bad_message")
            return
        mine = self._vector
        if theirs == mine:
            return  # in sync: the common case once a rumor has spread
        known = self.known
        batch_max = limits.rumors_per_message_max
        missing: list[Rumor] = []
        # Origins where we are ahead: every seq above theirs up to our vector entry.
        for origin, seq in sorted(mine.items() - theirs.items()):
            for number in range(max(theirs.get(origin, 0), 0) + 1, seq + 1):
                rumor_id = (origin, number)
                missing.append((rumor_id, known[rumor_id]))
            if len(missing) >= batch_max:
                break
        for rumor_id in self._detached:  # learned out of order, above our vector
            if rumor_id[1] > theirs.get(rumor_id[0], 0):
                missing.append((rumor_id, known[rumor_id]))
        if missing:
            self._outbox.append(Send(sender, Push(tuple(missing[:batch_max]))))

    def _learn(self, rumor_id: RumorId, payload: str, hot: bool) -> None:
        known = self.known
        known[rumor_id] = payload
        if hot and self.config.hot_rounds:
            last_round = self._round + self.config.hot_rounds
            if not self.hot or last_round < self._hot_expiry_min:
                self._hot_expiry_min = last_round
            self.hot[rumor_id] = last_round
            self._push_message = None
        origin, seq = rumor_id
        if origin == self.node_id and seq > self._own_seq_max:
            self._own_seq_max = seq
        vector = self._vector
        if seq == vector.get(origin, 0) + 1:
            detached = self._detached
            while (origin, seq + 1) in known:
                seq += 1
                detached.pop((origin, seq), None)  # now covered by the vector
            vector[origin] = seq
            self._digest = None
        else:
            self._detached[rumor_id] = None

    def _current_digest(self) -> Digest:
        if self._digest is None:
            # In the vector's insertion order (deterministic, no sort): the receiver
            # compares it as a mapping, so the order carries no meaning.
            self._digest = Digest(tuple(self._vector.items()))
        return self._digest


def _valid_rumor(rumor_id: Any, payload: Any, limits: GossipLimits) -> bool:
    return (
        rumor_id.__class__ is tuple
        and len(rumor_id) == 2
        and rumor_id[0].__class__ is str
        and rumor_id[1].__class__ is int
        and rumor_id[1] >= 1
        and payload.__class__ is str
        and len(payload) <= limits.payload_chars_max
    )
