"""Partitioners and the data-source API."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.learning import partition
from agentmesh.core.learning.digits8 import partition_fingerprint
from agentmesh.core.learning.source import (
    ArraySource,
    DataSource,
    DataSourceError,
    LabeledArrays,
    validate_labeled,
)
from agentmesh.tools.data import DigitsSource

LABELS = np.repeat(np.arange(10), 30)


def _is_exact_cover(parts: list[np.ndarray], rows: int) -> bool:
    joined = np.concatenate(parts)
    return bool(np.array_equal(np.sort(joined), np.arange(rows)))


@settings(max_examples=40, deadline=None)
@given(st.integers(10, 400), st.integers(1, 10), st.integers(0, 2**32 - 1))
def test_iid_is_an_exact_cover_of_near_equal_sizes(rows: int, agents: int, seed: int) -> None:
    parts = partition.partition_iid(rows, agents, np.random.default_rng(seed))
    assert _is_exact_cover(parts, rows)
    sizes = [len(p) for p in parts]
    assert max(sizes) - min(sizes) <= 1


def test_shards_give_each_agent_few_classes() -> None:
    parts = partition.partition_shards(LABELS, 10, 2, np.random.default_rng(1))
    assert _is_exact_cover(parts, len(LABELS))
    assert all(len(np.unique(LABELS[p])) <= 2 for p in parts)
    assert all(len(p) == 30 for p in parts)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 2**32 - 1), st.sampled_from([0.1, 0.5, 5.0]))
def test_dirichlet_is_an_exact_cover_and_respects_minimum(seed: int, alpha: float) -> None:
    parts = partition.partition_dirichlet(
        LABELS, 10, 4, alpha, np.random.default_rng(seed), rows_min=5
    )
    assert _is_exact_cover(parts, len(LABELS))
    assert min(len(p) for p in parts) >= 5


def test_dirichlet_redraws_with_the_same_generator() -> None:
    # Find a seed whose first draw is rejected, then check the result is the second draw.
    for seed in range(200):
        first = partition.dirichlet_draw(LABELS, 10, 8, 0.1, np.random.default_rng(seed))
        if min(len(p) for p in first) < 10:
            break
    else:
        pytest.fail("no rejected first draw in 200 seeds")
    rng = np.random.default_rng(seed)
    chosen = partition.partition_dirichlet(LABELS, 10, 8, 0.1, rng, rows_min=10)
    replay = np.random.default_rng(seed)
    draws = [partition.dirichlet_draw(LABELS, 10, 8, 0.1, replay)]
    while min(len(p) for p in draws[-1]) < 10:
        draws.append(partition.dirichlet_draw(LABELS, 10, 8, 0.1, replay))
    assert len(draws) >= 2
    assert partition_fingerprint(chosen) == partition_fingerprint(draws[-1])


def test_dirichlet_same_seed_same_partition() -> None:
    a = partition.partition_dirichlet(LABELS, 10, 5, 0.5, np.random.default_rng(7))
    b = partition.partition_dirichlet(LABELS, 10, 5, 0.5, np.random.default_rng(7))
    c = partition.partition_dirichlet(LABELS, 10, 5, 0.5, np.random.default_rng(8))
    assert partition_fingerprint(a) == partition_fingerprint(b) != partition_fingerprint(c)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda r: partition.partition_iid(3, 4, r), "cannot give"),
        (lambda r: partition.partition_iid(3, 0, r), "at least one agent"),
        (lambda r: partition.partition_shards(LABELS, 5, 0, r), "one shard"),
        (lambda r: partition.partition_dirichlet(LABELS, 10, 4, 0.0, r), "alpha"),
        (lambda r: partition.partition_dirichlet(LABELS, 10, 40, 0.5, r, rows_min=10), "rows <"),
    ],
)
def test_impossible_partitions_raise(call: object, message: str) -> None:
    with pytest.raises(partition.PartitionError, match=message):
        call(np.random.default_rng(0))  # type: ignore[operator]


def test_dirichlet_gives_up_after_bounded_draws() -> None:
    # Two rows per agent minimum is feasible in total but Dir(0.001) almost never spreads.
    labels = np.zeros(20, dtype=np.int64)
    with pytest.raises(partition.PartitionError, match="no draw"):
        partition.partition_dirichlet(labels, 1, 10, 0.001, np.random.default_rng(0), rows_min=2)


def test_sources_satisfy_the_protocol() -> None:
    source = ArraySource(np.zeros((3, 2), np.float32), np.array([0, 1, 2]))
    assert isinstance(source, DataSource)
    assert isinstance(DigitsSource(), DataSource)
    features, labels = DigitsSource().load()
    assert validate_labeled(LabeledArrays(features, labels), classes=10).features.shape[0] == 1797


@pytest.mark.parametrize(
    ("features", "labels", "message"),
    [
        (np.zeros(3), np.zeros(3, np.int64), "row axis"),
        (np.zeros((3, 2)), np.zeros(2, np.int64), "labels for 3"),
        (np.zeros((3, 2)), np.zeros(3), "integers"),
        (np.zeros((3, 2)), np.array([0, 1, 10]), "outside"),
        (np.full((3, 2), np.nan), np.zeros(3, np.int64), "NaN"),
        (np.array([["a"], ["b"], ["c"]]), np.zeros(3, np.int64), "numeric"),
    ],
)
def test_validate_rejects_unusable_arrays(
    features: np.ndarray, labels: np.ndarray, message: str
) -> None:
    with pytest.raises(DataSourceError, match=message):
        validate_labeled(LabeledArrays(features, labels), classes=10)
