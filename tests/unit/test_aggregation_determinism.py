"""Bit-identical aggregates: any input order, any BLAS thread count, any machine."""

from __future__ import annotations

import hashlib
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.aggregation import (
    aggregate,
    canonical_order,
    digest,
    fedavg,
    median,
)
from agentmesh.core.aggregation.mean import BLOCK_PARAMS, weighted_mean
from agentmesh.core.aggregation.tensors import prepare

RULES: dict[str, dict[str, float]] = {
    "fedavg": {},
    "median": {},
    "trimmed_mean": {"trim_fraction": 0.25},
    "krum": {"f": 2},
    "multi_krum": {"f": 2, "m": 5},
}


def hashed_updates(count: int, size: int) -> tuple[list[np.ndarray], list[int]]:
    """Updates from a sha-256 counter stream: the same floats on every machine and version."""
    stream = b"".join(
        hashlib.sha256(f"agentmesh-aggregation-{k}".encode()).digest()
        for k in range(count * size * 4 // 32 + 1)
    )
    raw = np.frombuffer(stream[: count * size * 4], dtype="<u4").astype(np.float64)
    values = ((raw / 2**32 - 0.5) * 8.0).astype(np.float32).reshape(count, size)
    values[count - 1] *= np.float32(1e6)  # one far-away update, so Krum has to choose
    weights = [int(w) + 1 for w in np.frombuffer(stream[:count], dtype=np.uint8)]
    return list(values), weights


def digests_of_all_rules(count: int = 12, size: int = 20_000) -> dict[str, str]:
    updates, weights = hashed_updates(count, size)
    return {
        name: digest(aggregate(name, updates, weights, **params)).hex()  # type: ignore[arg-type]
        for name, params in RULES.items()
    }


# Golden digests: computed once with digests_of_all_rules(). A validator on any machine
# must get exactly these; a change here means aggregates are no longer reproducible.
GOLDEN = {
    "fedavg": "348d08a5551b4718e1774af8f15ccec9435b27d8139e8451b1eb6d32c6699b79",
    "median": "acb60ef23f121a3fc4c97d9dc9057d0e5545b0866a63b769f4d5e2ecec6b9f83",
    "trimmed_mean": "d5691597adb5e3306a04b1317feb29682625080e035901953f4c3f0c3a691e11",
    "krum": "a9282709809f2a50d574c15c27f4f46fe222701cd5b7baaf60b3a828c43f7fe4",
    "multi_krum": "a6cec3a5a7f47f503728b7d0d0501b43deb033d9e725a44cb98bebdc04bcfd57",
}


def test_golden_digests_match() -> None:
    assert digests_of_all_rules() == GOLDEN


def test_same_digests_with_one_and_two_blas_threads() -> None:
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]);"
        "from test_aggregation_determinism import digests_of_all_rules as d;"
        "print(json.dumps(d()))"
    )
    seen = []
    for threads in ("1", "2"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=threads, OMP_NUM_THREADS=threads)
        done = subprocess.run(
            [sys.executable, "-c", script, os.path.dirname(__file__)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        seen.append(json.loads(done.stdout))
    assert seen[0] == seen[1] == digests_of_all_rules()


def test_digest_encodes_dtype_shape_and_values() -> None:
    flat = np.arange(6, dtype=np.float32)
    assert digest(flat) == digest(flat.astype(">f4"))  # byte order of the input: no
    assert digest(flat) != digest(flat.reshape(2, 3))
    assert digest(flat) != digest(flat.view(np.int32))
    assert digest([flat]) == digest(flat)
    assert digest([flat[:3], flat[3:]]) != digest(flat)
    assert len(digest(flat)) == 32


def plain_fedavg(updates: list[np.ndarray], weights: list[float]) -> bytes:
    """FedAvg as defined, over whole vectors: no blocks, no scratch buffers."""
    total = math.fsum(weights)
    acc = np.zeros(updates[0].size, dtype=np.float64)
    for i in canonical_order(updates, weights):
        if weights[i] > 0.0:
            acc = acc + updates[i].astype(np.float64) * np.float64(weights[i])
    return (acc / total).astype(np.float32).tobytes()


def awkward_updates(size: int) -> tuple[list[np.ndarray], list[float]]:
    """Signed zeros, subnormals, float32 extremes in some columns; zero and odd weights."""
    rng = np.random.default_rng(size)
    scales = [1.0, 2.0, 0.5, 1.0, 4.0, 1e30]  # the last has weight 0: skipped, still checked
    updates = [(rng.standard_normal(size) * scale).astype(np.float32) for scale in scales]
    for update in updates:
        update[::11] = -0.0  # every term -0.0: the result must be +0.0
    updates[0][1::3] = -0.0
    updates[2][2::5] *= np.float32(1e-40)  # subnormal float32
    updates[3][3::7] = np.where(updates[3][3::7] < 0, -3.4e38, 3.4e38)
    # Columns where two weighted terms cancel exactly (x3*1 == -x4*7, x2*65537 == -x0*3):
    # terms summed between them are absorbed, so the order of the sum shows in the bytes.
    updates[3][5::13], updates[4][5::13] = np.float32(7 * 2.0**100), np.float32(-(2.0**100))
    updates[2][6::13], updates[0][6::13] = np.float32(3 * 2.0**90), np.float32(-65537 * 2.0**90)
    weights = [3.0, 0.37, 65537.0, 1.0, 7.0, 0.0]
    return updates, weights


@pytest.mark.parametrize(
    "size", [1, 2, 7, BLOCK_PARAMS - 1, BLOCK_PARAMS, BLOCK_PARAMS + 1, 2 * BLOCK_PARAMS + 3]
)
def test_blocked_fedavg_bytes_equal_the_unblocked_definition(size: int) -> None:
    updates, weights = awkward_updates(size)
    expected = plain_fedavg(updates, weights)
    batch = prepare(updates, weights)
    small_blocks = [1, 3] if size < 1000 else [1000, 4097]
    for block_params in [*small_blocks, size, size + 5]:
        assert weighted_mean(batch, block_params).tobytes() == expected, block_params
    assert fedavg(updates, weights).tobytes() == expected
    single = [updates[0]]
    assert fedavg(single, [5.0]).tobytes() == (updates[0] + np.float32(0.0)).tobytes()


# --- properties ------------------------------------------------------------------

finite32 = st.floats(
    width=32, allow_nan=False, allow_infinity=False, min_value=-(2.0**100), max_value=2.0**100
)


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[np.ndarray], list[int], list[int]]:
    count = draw(st.integers(7, 10))
    size = draw(st.integers(1, 5))
    rows = draw(
        st.lists(st.lists(finite32, min_size=size, max_size=size), min_size=count, max_size=count)
    )
    weights = draw(st.lists(st.integers(1, 10**6), min_size=count, max_size=count))
    permutation = draw(st.permutations(range(count)))
    return [np.array(row, dtype=np.float32) for row in rows], weights, permutation


@settings(max_examples=60, deadline=None)
@given(batches())
def test_every_rule_is_bitwise_permutation_invariant(batch: tuple) -> None:  # type: ignore[type-arg]
    updates, weights, permutation = batch
    shuffled = [updates[i] for i in permutation]
    shuffled_weights = [weights[i] for i in permutation]
    for name, params in RULES.items():
        first = aggregate(name, updates, weights, **params)
        second = aggregate(name, shuffled, shuffled_weights, **params)
        assert digest(first) == digest(second), name


@settings(max_examples=60, deadline=None)
@given(batches())
def test_every_rule_stays_within_the_coordinate_range(batch: tuple) -> None:  # type: ignore[type-arg]
    updates, weights, _ = batch
    stack = np.stack(updates)
    for name, params in RULES.items():
        result = aggregate(name, updates, weights, **params)
        assert np.all(result >= stack.min(axis=0)) and np.all(result <= stack.max(axis=0)), name


@settings(max_examples=60, deadline=None)
@given(
    st.lists(finite32, min_size=1, max_size=6),
    st.lists(st.integers(1, 2**40), min_size=1, max_size=9),
)
def test_identical_updates_aggregate_to_that_update(row: list[float], weights: list[int]) -> None:
    update = np.array(row, dtype=np.float32)
    expected = (update + np.float32(0.0)).tobytes()  # outputs never carry -0.0
    updates = [update.copy() for _ in weights]
    assert fedavg(updates, weights).tobytes() == expected
    assert median(updates).tobytes() == expected
    if len(weights) >= 3:
        assert aggregate("krum", updates, f=(len(weights) - 3) // 2).tobytes() == expected


@settings(max_examples=40, deadline=None)
@given(batches(), st.lists(finite32, min_size=5, max_size=5))
def test_zero_weight_update_changes_nothing(batch: tuple, extra: list[float]) -> None:  # type: ignore[type-arg]
    updates, weights, _ = batch
    size = updates[0].size
    outsider = np.array(extra[:size], dtype=np.float32)
    before = fedavg(updates, weights)
    after = fedavg([*updates, outsider], [*weights, 0])
    assert before.tobytes() == after.tobytes()


@settings(max_examples=60, deadline=None)
@given(batches())
def test_canonical_order_is_a_function_of_content(batch: tuple) -> None:  # type: ignore[type-arg]
    updates, weights, permutation = batch
    order = canonical_order(updates, weights)
    shuffled_order = canonical_order(
        [updates[i] for i in permutation], [weights[i] for i in permutation]
    )
    assert [updates[i].tobytes() for i in order] == [
        updates[permutation[i]].tobytes() for i in shuffled_order
    ]
