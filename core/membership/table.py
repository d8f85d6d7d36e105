"""Member records, the snapshot a machine restores from, probe order and Lifeguard timers."""

from __future__ import annotations

import random
from collections.abc import Mapping
from typing import Final, NamedTuple

from agentmesh.core.membership.capabilities import CapabilityAdvert
from agentmesh.core.membership.config import (
    MembershipConfig,
    suspicion_confirmations_expected,
    suspicion_timeout_bounds_ms,
    suspicion_timeout_ms,
)

ALIVE: Final = "alive"
SUSPECT: Final = "suspect"
DEAD: Final = "dead"
LEFT: Final = "left"
STATES: Final = (ALIVE, SUSPECT, DEAD, LEFT)
LIVE_STATES: Final = frozenset({ALIVE, SUSPECT})

# How a record got into the table: every path is an admission or a vouch by an
# admitted member. Invariants reject anything else.
VIA_SELF: Final = "self"
VIA_SNAPSHOT: Final = "snapshot"  # restored from a table this node held earlier
VIA_CREDENTIAL: Final = "credential"  # this node checked the peer's credential
VIA_MEMBER: Final = "member"  # gossiped or synced by an admitted member
ADMITTED_VIA: Final = frozenset({VIA_SELF, VIA_SNAPSHOT, VIA_CREDENTIAL, VIA_MEMBER})


class Member(NamedTuple):
    """One member as this node sees it. Immutable: a change replaces the record, so
    the simulator can share one restored table between thousands of machines."""

    peer_id: str
    state: str
    incarnation: int
    advert: CapabilityAdvert | None
    changed_ms: int
    via: str


class MembershipSnapshot:
    """A member table to restore from (the host's SQLite snapshot, or a simulated
    formed mesh). Records are shared, never mutated; `live` is counted once."""

    __slots__ = ("live", "members")

    def __init__(self, members: Mapping[str, Member]) -> None:
        self.members = dict(members)
        self.live = sum(1 for member in self.members.values() if member.state in LIVE_STATES)


class ProbeOrder:
    """SWIM §4.3 randomized round-robin: each round is a fresh uniform permutation,
    drawn lazily (one Fisher-Yates step per probe), so a member is probed at most
    one round after it joined and time to first detection is bounded."""

    __slots__ = ("_index", "_order")

    def __init__(self, peer_ids: list[str]) -> None:
        self._order = peer_ids
        self._index = 0

    def __len__(self) -> int:
        return len(self._order)

    def entry(self, index: int) -> str:
        return self._order[index]

    def add(self, peer_id: str) -> None:
        """New members join the not-yet-probed part of the round (a random slot of it)."""
        self._order.append(peer_id)

    def next_candidate(self, rng: random.Random, members: Mapping[str, Member]) -> str | None:
        """The next peer id of the round; compacts stale entries when a round ends."""
        if self._index >= len(self._order) or len(self._order) > 2 * len(members) + 16:
            self._order = list(members)
            self._index = 0
        order = self._order
        if not order:
            return None
        index = self._index
        swap = rng.randrange(index, len(order))
        order[index], order[swap] = order[swap], order[index]
        self._index = index + 1
        return order[index]

    def random_entry(self, rng: random.Random) -> str | None:
        order = self._order
        return order[rng.randrange(len(order))] if order else None


class Suspicion:
    """Lifeguard §IV.B dynamic suspicion timeout for one suspected member."""

    __slots__ = (
        "confirmers",
        "deadline_ms",
        "expected",
        "incarnation",
        "max_ms",
        "min_ms",
        "start_ms",
    )

    def __init__(
        self,
        config: MembershipConfig,
        members_live: int,
        incarnation: int,
        first_from: str,
        now_ms: int,
    ) -> None:
        self.min_ms, self.max_ms = suspicion_timeout_bounds_ms(config, members_live)
        self.expected = suspicion_confirmations_expected(config, members_live)
        self.incarnation = incarnation
        self.start_ms = now_ms
        self.confirmers = {first_from}
        self.deadline_ms = now_ms + suspicion_timeout_ms(self.min_ms, self.max_ms, 0, self.expected)

    def confirm(self, from_peer: str) -> bool:
        """Count an independent confirmation; True if it was new (then re-gossip it)."""
        if from_peer in self.confirmers or len(self.confirmers) > self.expected:
            return False
        self.confirmers.add(from_peer)
        timeout = suspicion_timeout_ms(
            self.min_ms, self.max_ms, len(self.confirmers) - 1, self.expected
        )
        self.deadline_ms = self.start_ms + timeout
        return True


class Awareness:
    """Lifeguard §IV.A Local Health Multiplier: a saturating counter in [0, S-1] that
    scales probe interval and timeout by (score + 1) when this node itself is slow."""

    __slots__ = ("max_score", "score")

    def __init__(self, multiplier_max: int) -> None:
        self.max_score = multiplier_max - 1
        self.score = 0

    def apply(self, delta: int) -> None:
        self.score = min(self.max_score, max(0, self.score + delta))

    def scale(self, duration_ms: int) -> int:
        return duration_ms * (self.score + 1)
