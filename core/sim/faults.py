"""Fault plan of a simulation: partitions with heal times, crashes with optional restart."""

from __future__ import annotations

from dataclasses import dataclass

PARTITION_KINDS = ("sym", "oneway", "isolate")


@dataclass(frozen=True, slots=True)
class Partition:
    """Messages matching the cut are dropped at send time while `start_ms <= t < end_ms`.

    - sym: no message crosses between `side_a` and `side_b`, in either direction;
    - oneway: messages from `side_a` to `side_b` are dropped, the reverse still flows;
    - isolate: `side_a` is cut from every node outside it, both ways (`side_b` unused).
    `end_ms=None` means the partition never heals.
    """

    start_ms: int
    end_ms: int | None
    kind: str
    side_a: frozenset[int]
    side_b: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        if self.kind not in PARTITION_KINDS:
            raise ValueError(f"partition kind must be one of {PARTITION_KINDS}, got {self.kind!r}")
        if self.end_ms is not None and self.end_ms <= self.start_ms:
            raise ValueError("a partition must heal after it starts")
        if not self.side_a or (self.kind != "isolate" and not self.side_b):
            raise ValueError("a partition needs non-empty sides")

    def blocks(self, source: int, target: int) -> bool:
        """True if this cut drops a message from `source` to `target`."""
        if self.kind == "isolate":
            return (source in self.side_a) != (target in self.side_a)
        if source in self.side_a and target in self.side_b:
            return True
        return self.kind == "sym" and source in self.side_b and target in self.side_a


@dataclass(frozen=True, slots=True)
class Crash:
    """`nodes` stop at `at_ms` (in-flight messages to them are lost) and come back at
    `restart_ms`, rebuilt by the factory from their durable state (None: never)."""

    at_ms: int
    nodes: frozenset[int]
    restart_ms: int | None = None

    def __post_init__(self) -> None:
        if self.at_ms < 0:
            raise ValueError("a crash time must be >= 0")
        if self.restart_ms is not None and self.restart_ms <= self.at_ms:
            raise ValueError("a restart must come after the crash")
        if not self.nodes:
            raise ValueError("a crash needs at least one node")


def last_heal_ms(partitions: tuple[Partition, ...], crashes: tuple[Crash, ...]) -> int | None:
    """Time the last fault ends; None if some fault never ends (liveness can't be judged)."""
    last = 0
    for partition in partitions:
        if partition.end_ms is None:
            return None
        last = max(last, partition.end_ms)
    for crash in crashes:
        # A crash without restart removes the node for good: it is excluded from liveness
        # checks, so it ends "at" the crash itself.
        last = max(last, crash.restart_ms if crash.restart_ms is not None else crash.at_ms)
    return last
