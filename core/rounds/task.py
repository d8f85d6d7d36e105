"""The digits task for any number of agents and any Dirichlet alpha (digits-8 by default).

`digits_split(8, 0.5)` is exactly the BENCHMARKS.md reference split (same
generator, same order of draws); other sizes follow the same recipe, so
`agent demo --agents 4 --non-iid 1.0` is as reproducible as the reference.
"""

from __future__ import annotations

import math

import numpy as np

from agentmesh.core.learning import digits8
from agentmesh.core.learning.partition import partition_dirichlet
from agentmesh.core.learning.source import LabeledArrays


def digits_split(
    features: np.ndarray, labels: np.ndarray, agents: int, alpha: float
) -> tuple[LabeledArrays, tuple[LabeledArrays, ...]]:
    """(held-out test rows, per-agent training rows), standardized like digits-8."""
    if agents == digits8.AGENTS and alpha == digits8.ALPHA:
        split = digits8.split_digits8(features, labels)
        return split.test, split.agents
    labels = np.asarray(labels).astype(np.int64)
    rng = np.random.default_rng(digits8.SEED)
    perm = rng.permutation(labels.shape[0]).astype(np.int64)
    test_count = math.ceil(digits8.TEST_FRACTION * labels.shape[0])
    test_rows, train_rows = perm[:test_count], perm[test_count:]
    scaled, _, _ = digits8.standardize(features, train_rows)
    positions = partition_dirichlet(
        labels[train_rows], digits8.CLASSES, agents, alpha, rng, rows_min=digits8.AGENT_ROWS_MIN
    )
    parts = tuple(LabeledArrays(scaled[train_rows[p]], labels[train_rows[p]]) for p in positions)
    return LabeledArrays(scaled[test_rows], labels[test_rows]), parts


def flat_bytes(arrays: list[np.ndarray]) -> bytes:
    """Parameters in order as one little-endian float32 vector (the model blob)."""
    return b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)


def unflatten(data: bytes, shapes: tuple[tuple[int, ...], ...]) -> list[np.ndarray]:
    flat = np.frombuffer(data, dtype="<f4")
    arrays, start = [], 0
    for shape in shapes:
        count = math.prod(shape)
        arrays.append(flat[start : start + count].reshape(shape).astype(np.float32))
        start += count
    return arrays
