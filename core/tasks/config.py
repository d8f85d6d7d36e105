"""Bounds and timers of the task machine (every table it keeps is bounded by these)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from agentmesh.core.consensus.config import ConsensusConfig

KIND_INFER = "infer"
KIND_TRAIN = "train"
TASK_KINDS = (KIND_INFER, KIND_TRAIN)  # built-in kinds only: no arbitrary command execution


class TasksError(ValueError):
    """A task the caller asked for that cannot be expressed (bad kind, replicas, sizes)."""


@dataclass(frozen=True, slots=True)
class TasksConfig:
    """Defaults suit tens of agents on a LAN; the pair tests shorten the timers."""

    open_tasks_max: int = 2_048  # decided, not finished; a submit beyond is decided "rejected"
    finished_retained_max: int = 8_192  # finished tasks kept for status; oldest evicted
    workers_max: int = 1_024
    replicas_max: int = 8
    extra_slots_max: int = 4  # verifiable tasks: slots opened beyond k when digests disagree
    attempts_max: int = 5  # per slot; then the task fails
    worker_queue_max: int = 32  # live slots one worker may hold; more wait in the backlog
    deadline_ms_default: int = 20_000  # per attempt, from the assignment being decided
    deadline_ms_max: int = 3_600_000
    timeout_retry_ms: int = 2_000  # re-propose a timeout/down that was not decided yet
    readvertise_interval_ms: int = 2_000  # at most one own advert per interval
    output_bytes_max: int = 16 * 1024
    input_bytes_max: int = 256 * 1024
    timers_max: int = 65_536  # pending attempt deadlines (lazy heap)
    # A whole task expires once open this long on f + 1 members' clocks: the larger of
    # this and deadline_ms * attempts_max (every attempt may use its whole deadline).
    task_open_ms_min: int = 60_000

    def __post_init__(self) -> None:
        if min(self.open_tasks_max, self.workers_max, self.replicas_max, self.attempts_max) < 1:
            raise ValueError("task bounds must be positive")
        if self.worker_queue_max < 1 or self.deadline_ms_default < 1:
            raise ValueError("worker_queue_max and deadline_ms_default must be positive")


# The task replica's PBFT batches. VIEW-CHANGE carries every prepared batch in full and
# NEW-VIEW a quorum of those plus the re-issued pre-prepares (TOCS §4.4), and each must
# fit one tasks.pbft frame (256 KiB). With 64 entries per batch (~23 KB of submits) a
# NEW-VIEW over a few prepared batches was too large to send (so were state replies):
# the view change after a killed member never completed and the task log stopped. With
# 8, a VIEW-CHANGE over 16 prepared batches is ~23 KB (was ~98 KB) and its NEW-VIEW
# ~100 KB; 8 batches in flight still order 64 entries per round trip. A count is no
# byte bound (a result may carry 16 KB): bounding batches by bytes, or view changes
# that carry digests, is for core/consensus.
TASK_BATCH_ENTRIES_MAX = 8
TASK_FETCH_BATCHES_MAX = 16  # certified batches per state reply: ~50 KB of submits


def task_consensus_config(base: ConsensusConfig | None = None) -> ConsensusConfig:
    """`base` (default: the consensus defaults) with the task replica's batch bounds."""
    return replace(base or ConsensusConfig(), batch_entries_max=TASK_BATCH_ENTRIES_MAX,
                   fetch_batches_max=TASK_FETCH_BATCHES_MAX)  # fmt: skip
