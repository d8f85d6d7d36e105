"""Membership tuning and bounds, with the Lifeguard/SWIM formulas that use them.

Defaults follow HashiCorp memberlist's LAN profile (which implements SWIM with
Lifeguard) except the probe interval, which is 1 s as in the SWIM paper.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from agentmesh.core.limits import DEFAULT_LIMITS


@dataclass(frozen=True, slots=True)
class MembershipConfig:
    """Timers in ms, counts, and every table bound of the membership machine."""

    probe_interval_ms: int = 1_000
    probe_timeout_ms: int = 500
    indirect_checks: int = 3  # SWIM §3.1 "k" members asked to ping-req
    suspicion_mult: int = 4  # Lifeguard §IV.B "alpha" (memberlist SuspicionMult)
    suspicion_max_timeout_mult: int = 6  # Lifeguard §IV.B "beta"
    retransmit_mult: int = 4  # SWIM §4.1 lambda: retransmit limit = lambda * log(n)
    awareness_max_multiplier: int = 8  # Lifeguard §IV.A LHM saturation "S"
    # A separate fast gossip timer (memberlist GossipInterval/GossipNodes): SWIM's
    # piggybacking alone spreads news at the probe rate (1 hop per second); pushing
    # queued updates to `gossip_fanout` random members every 200 ms reaches 10,000
    # nodes in about 8 rounds. It only fires while the queue is non-empty.
    gossip_interval_ms: int = 200
    gossip_fanout: int = 3
    piggyback_updates_max: int = 8
    gossip_updates_max: int = 16
    join_timeout_ms: int = 3_000
    join_attempts_max: int = 5
    join_sync_chunk: int = 64
    # Periodic push-pull anti-entropy with one random member (memberlist PushPullInterval),
    # stretched in large meshes as memberlist's pushPullScale does.
    push_pull_interval_ms: int = 30_000
    dead_retention_ms: int = 60_000  # how long dead/left records are kept before reaping
    # bounds
    members_max: int = DEFAULT_LIMITS.peers_max
    gossip_queue_max: int = 4_096
    suspicions_max: int = 4_096
    pending_joins_max: int = 64
    candidates_max: int = 256
    indirect_probes_max: int = 256
    rejected_cache_max: int = 256

    def __post_init__(self) -> None:
        positive = (
            self.probe_interval_ms,
            self.probe_timeout_ms,
            self.gossip_interval_ms,
            self.gossip_fanout,
            self.piggyback_updates_max,
            self.gossip_updates_max,
            self.join_timeout_ms,
            self.join_attempts_max,
            self.join_sync_chunk,
            self.members_max,
            self.gossip_queue_max,
            self.awareness_max_multiplier,
            self.suspicion_mult,
        )
        if min(positive) <= 0 or self.indirect_checks < 0:
            raise ValueError("membership timers, counts and bounds must be positive")
        if self.probe_timeout_ms >= self.probe_interval_ms:
            raise ValueError("probe_timeout_ms must be shorter than probe_interval_ms")
        if self.suspicion_max_timeout_mult < 1:
            raise ValueError("suspicion_max_timeout_mult must be at least 1")


def retransmit_limit(retransmit_mult: int, members: int) -> int:
    """SWIM §4.1 / memberlist: lambda * ceil(log10(n + 1)) transmissions per update."""
    return retransmit_mult * max(1, math.ceil(math.log10(members + 1)))


def suspicion_timeout_bounds_ms(config: MembershipConfig, members: int) -> tuple[int, int]:
    """Lifeguard §IV.B: Min = alpha * log10(n) * interval, Max = beta * Min."""
    node_scale = max(1.0, math.log10(max(1, members)))
    minimum = int(config.suspicion_mult * node_scale * config.probe_interval_ms)
    return minimum, minimum * config.suspicion_max_timeout_mult


def suspicion_confirmations_expected(config: MembershipConfig, members: int) -> int:
    """Lifeguard §IV.B "K": alpha - 2 independent confirmations, fewer in tiny meshes."""
    expected = config.suspicion_mult - 2
    return 0 if members - 2 < expected else max(0, expected)


def suspicion_timeout_ms(minimum: int, maximum: int, confirmations: int, expected: int) -> int:
    """Lifeguard §IV.B: max(Min, Max - (Max - Min) * log(C + 1) / log(K + 1)).

    Each independent confirmation C of the suspicion shrinks the timeout from Max
    toward Min, reaching Min at K confirmations (memberlist suspicion.go).
    """
    if expected < 1:
        return minimum
    fraction = math.log(confirmations + 1) / math.log(expected + 1)
    return max(minimum, int(maximum - (maximum - minimum) * fraction))


def push_pull_interval_ms(interval_ms: int, members: int) -> int:
    """memberlist pushPullScale: x(ceil(log2 n - log2 32) + 1) above 32 members."""
    if members <= 32:
        return interval_ms
    return interval_ms * (math.ceil(math.log2(members) - math.log2(32)) + 1)
