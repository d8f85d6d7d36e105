"""Bit-identical aggregates: any input order, any BLAS thread count, any machine."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.aggregation import (
    aggregate,
    canonical_order,
    digest,
    fedavg,
    median,
)

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
