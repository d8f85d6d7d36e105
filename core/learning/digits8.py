"""The digits-8 reference task, exactly as defined in BENCHMARKS.md.

Test split by `default_rng(42).permutation(1797)` (first 360 rows held out),
standardization on the training rows, a Dirichlet(0.5) label-skew partition over
8 agents continuing the same generator, and the MLP's initial weights. Row
numbers refer to the committed digits file order; the fingerprint pins them.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Final

import numpy as np

from agentmesh.core.learning.partition import partition_dirichlet
from agentmesh.core.learning.source import LabeledArrays

SEED: Final = 42
AGENTS: Final = 8
CLASSES: Final = 10
FEATURES: Final = 64
ALPHA: Final = 0.5
TEST_FRACTION: Final = 0.2
AGENT_ROWS_MIN: Final = 10
STD_FLOOR: Final = 1e-8
AGENT_SIZES: Final = (83, 119, 176, 97, 265, 217, 205, 275)
FINGERPRINT: Final = "d98e49ce4f51dc91e14c70c96c98a5a32e27f189e4281f4f2150967736fb667b"

# Model and training hyper-parameters of the reference task.
HIDDEN: Final = 32
LEARNING_RATE: Final = 0.5
BATCH_SIZE: Final = 32
LOCAL_EPOCHS: Final = 1
ROUNDS: Final = 20
MLP_SHAPES: Final = ((FEATURES, HIDDEN), (HIDDEN,), (HIDDEN, CLASSES), (CLASSES,))


@dataclass(frozen=True)
class Digits8Split:
    """Standardized test rows and per-agent training rows (row numbers in file order)."""

    test_rows: np.ndarray
    train_rows: np.ndarray
    agent_rows: tuple[np.ndarray, ...]
    mean: np.ndarray
    std: np.ndarray
    test: LabeledArrays
    agents: tuple[LabeledArrays, ...]

    def fingerprint(self) -> str:
        """sha-256 over the agents' row-number arrays (see `partition_fingerprint`)."""
        return partition_fingerprint(self.agent_rows)


def partition_fingerprint(agent_rows: tuple[np.ndarray, ...] | list[np.ndarray]) -> str:
    """sha-256 over, per agent, its row numbers as int64 little-endian then b"|"."""
    digest = hashlib.sha256()
    for rows in agent_rows:
        digest.update(np.asarray(rows, dtype="<i8").tobytes())
        digest.update(b"|")
    return digest.hexdigest()


def standardize(
    features: np.ndarray, fit_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X - mean) / std as float32, with mean and std (ddof=0) of `fit_rows` only."""
    values = np.asarray(features, dtype=np.float64)
    mean = values[fit_rows].mean(axis=0)
    std = values[fit_rows].std(axis=0)
    std[std < STD_FLOOR] = 1.0
    return ((values - mean) / std).astype(np.float32), mean, std


def split_digits8(features: np.ndarray, labels: np.ndarray) -> Digits8Split:
    """The reference split of the 1,797 digits rows (in file order) over 8 agents."""
    labels = np.asarray(labels).astype(np.int64)
    rows = labels.shape[0]
    rng = np.random.default_rng(SEED)
    perm = rng.permutation(rows).astype(np.int64)
    test_count = math.ceil(TEST_FRACTION * rows)
    test_rows, train_rows = perm[:test_count], perm[test_count:]
    scaled, mean, std = standardize(features, train_rows)
    positions = partition_dirichlet(
        labels[train_rows], CLASSES, AGENTS, ALPHA, rng, rows_min=AGENT_ROWS_MIN
    )
    agent_rows = tuple(train_rows[p] for p in positions)
    return Digits8Split(
        test_rows=test_rows,
        train_rows=train_rows,
        agent_rows=agent_rows,
        mean=mean,
        std=std,
        test=LabeledArrays(scaled[test_rows], labels[test_rows]),
        agents=tuple(LabeledArrays(scaled[r], labels[r]) for r in agent_rows),
    )


def initial_mlp_weights(seed: int = SEED) -> list[np.ndarray]:
    """He-normal W1, W2 from `default_rng(seed)`, zero biases, float32, in parameter order."""
    g = np.random.default_rng(seed)
    w1 = g.normal(0.0, math.sqrt(2 / FEATURES), MLP_SHAPES[0])
    w2 = g.normal(0.0, math.sqrt(2 / HIDDEN), MLP_SHAPES[2])
    return [
        w1.astype(np.float32),
        np.zeros(HIDDEN, np.float32),
        w2.astype(np.float32),
        np.zeros(CLASSES, np.float32),
    ]
