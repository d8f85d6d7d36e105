"""The round's arithmetic: new global model = base + rule(deltas), bit for bit everywhere.

Models and updates are flat little-endian float32 vectors (raw bytes, sha-256
addressed). Updates are weight deltas (trained minus base). The rule is a
registered aggregation rule (core/aggregation: canonical order, exact
accumulation), and the final float32 addition is elementwise IEEE-754, so an
aggregator and every validator get the same bytes from the same inputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agentmesh.core.aggregation import AggregationError, aggregate

# CLI spelling -> registry name
RULES: dict[str, str] = {
    "fedavg": "fedavg",
    "median": "median",
    "trimmed-mean": "trimmed_mean",
    "krum": "krum",
    "multi-krum": "multi_krum",
}


class ComputeError(ValueError):
    """The inputs cannot produce a model (wrong sizes, non-finite values, too few updates)."""


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """A rule and its parameters; f=None means the most the contributors allow."""

    name: str = "fedavg"  # a key of RULES
    f: int | None = None
    trim_fraction: float = 0.25

    def __post_init__(self) -> None:
        if self.name not in RULES:
            raise ValueError(f"unknown rule {self.name!r}; known: {sorted(RULES)}")


def vector(data: bytes, params: int) -> np.ndarray:
    """A read-only float32 view of `data`; ComputeError unless it is `params` finite floats."""
    if len(data) != params * 4:
        raise ComputeError(f"{len(data)} bytes for {params} float32 parameters")
    array = np.frombuffer(data, dtype="<f4")
    if not bool(np.isfinite(array).all()):
        raise ComputeError("NaN or infinity in the vector")
    return array


def rule_params(rule: RuleConfig, count: int) -> dict[str, float]:
    """Parameters for `count` updates (Krum: n >= 2f + 3, so f shrinks with stragglers)."""
    if rule.name in ("krum", "multi-krum"):
        f_max = max(0, (count - 3) // 2)
        return {"f": min(f_max, f_max if rule.f is None else rule.f)}
    if rule.name == "trimmed-mean":
        return {"trim_fraction": rule.trim_fraction}
    return {}


def aggregate_model(
    base: bytes, updates: Sequence[tuple[bytes, int]], rule: RuleConfig, params: int
) -> bytes:
    """base + rule(deltas weighted by samples), as float32 bytes; ComputeError if impossible."""
    if not updates:
        raise ComputeError("no updates")
    base_vector = vector(base, params)
    deltas = [vector(data, params) for data, _ in updates]
    weights = [float(samples) for _, samples in updates]
    try:
        combined = aggregate(RULES[rule.name], deltas, weights, **rule_params(rule, len(updates)))
    except AggregationError as error:
        raise ComputeError(str(error)) from error
    merged = np.add(base_vector, np.asarray(combined, dtype=np.float32), dtype=np.float32)
    if not bool(np.isfinite(merged).all()):
        raise ComputeError("the aggregate overflowed")
    data: bytes = merged.astype("<f4", copy=False).tobytes()
    return data
