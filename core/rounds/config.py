"""Tunables and bounds of the round machine (every table it keeps is bounded by these)."""

from __future__ import annotations

from dataclasses import dataclass, field

from agentmesh.core.limits import DEVICE_OFFERS_PER_GATEWAY_MAX, DEVICE_SAMPLES_MAX

from .compute import RuleConfig


@dataclass(frozen=True, slots=True)
class RoundsConfig:
    """The same on every agent of a mesh (the demo passes them to every `agent join`)."""

    params: int  # float32 parameters of the model (digits MLP: 2,410)
    rounds_total: int = 20
    rule: RuleConfig = field(default_factory=RuleConfig)
    window_ms: int = 3_000  # the cohort closes this long after round_start is decided
    takeover_ms: int = 1_000  # aggregator k proposes at window + k * takeover if none did
    aggregators_per_round: int = 2  # the round's aggregator and its stand-ins
    abort_after_ms: int = 8_000  # validators vote to abort a round still open this long
    fetch_retry_ms: int = 250  # ask the next holder of a missing blob after this
    contributors_min: int = 1
    samples_max: int = 1_000_000
    models_kept_max: int = 4  # global models held in memory to serve fetches
    unclaimed_blobs_max: int = 64  # blobs that arrived before their offer
    fetches_max: int = 512
    device_offers_per_gateway_max: int = DEVICE_OFFERS_PER_GATEWAY_MAX  # per round
    device_samples_max: int = DEVICE_SAMPLES_MAX  # samples one device offer may claim

    def __post_init__(self) -> None:
        if self.params < 1 or self.rounds_total < 1 or self.aggregators_per_round < 1:
            raise ValueError("params, rounds_total and aggregators_per_round must be >= 1")
        last_takeover = self.window_ms + self.aggregators_per_round * self.takeover_ms
        if self.abort_after_ms <= last_takeover:
            raise ValueError("abort_after_ms must leave every aggregator its turn")
