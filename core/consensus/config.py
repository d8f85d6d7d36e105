"""Tunables and bounds of a PBFT replica (every table it keeps is bounded by these)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ConsensusConfig:
    """Defaults suit a small committee on a LAN; the simulator shortens the timers."""

    checkpoint_interval: int = 16  # K: a checkpoint every K sequence numbers (TOCS §4.3)
    window: int = 64  # L = H - h: the watermark window (TOCS §4.3); a multiple of K
    batch_entries_max: int = 64  # entries per pre-prepare (request batching, TOCS §5.1.4)
    inflight_batches_max: int = 8  # pre-prepares the primary keeps outstanding
    entry_body_bytes_max: int = 64 * 1024
    pending_entries_max: int = 4096  # requests waiting to be ordered; then drop + count
    view_change_timeout_ms: int = 1000  # base timer; doubles per failed view (TOCS §4.5.2)
    view_change_timeout_max_ms: int = 16_000
    future_views_max: int = 64  # VIEW-CHANGEs accepted for views up to view + this
    fetch_interval_ms: int = 200  # at most one state-transfer request per interval
    fetch_batches_max: int = 64  # certified batches per state reply
    retained_batches_max: int = 256  # decided batches kept to serve state transfer
    executed_ids_max: int = 16_384  # recently decided entry ids (drop duplicate requests)
    committee_size_max: int = 1024

    def __post_init__(self) -> None:
        if self.checkpoint_interval < 1 or self.window % self.checkpoint_interval:
            raise ValueError("window must be a positive multiple of checkpoint_interval")
        if self.window < 2 * self.checkpoint_interval:
            raise ValueError("window must span at least two checkpoints")
        if self.retained_batches_max < self.window:
            raise ValueError("retained_batches_max must cover the window")
