"""Aggregation rules: hand-checked values, robustness, weights, validation."""

from __future__ import annotations

import numpy as np
import pytest

from agentmesh.core.aggregation import (
    InvalidParameter,
    InvalidUpdate,
    InvalidWeights,
    NonFiniteUpdate,
    RuleSpec,
    TooFewUpdates,
    UnknownRule,
    aggregate,
    default_registry,
    drop_non_finite,
    exact_squared_distances,
    fedavg,
    krum,
    krum_select,
    median,
    multi_krum,
    trimmed_mean,
)


def vec(*values: float) -> np.ndarray:
    return np.array(values, dtype=np.float32)


def test_fedavg_hand_checked() -> None:
    updates = [vec(1, 2, 3), vec(3, 2, 1), vec(2, 100, 2)]
    # (1*[1,2,3] + 1*[3,2,1] + 2*[2,100,2]) / 4
    assert fedavg(updates, [1, 1, 2]).tolist() == [2.0, 51.0, 2.0]
    assert fedavg(updates).tolist() == pytest.approx([2.0, 104 / 3, 2.0])


def test_fedavg_weights_are_sample_counts() -> None:
    updates = [vec(0.0), vec(10.0)]
    assert fedavg(updates, [9, 1]).tolist() == [1.0]
    assert fedavg(updates, [0, 5]).tolist() == [10.0]  # zero weight: no influence
    assert fedavg(updates, np.array([3, 1])).tolist() == [2.5]


def test_median_and_trimmed_mean_hand_checked() -> None:
    updates = [vec(1, -5), vec(7, 0), vec(3, 2), vec(100, 1), vec(-2, 9)]
    assert median(updates).tolist() == [3.0, 1.0]
    # drop 1 lowest and 1 highest per coordinate: (1+3+7)/3 and (0+1+2)/3
    assert trimmed_mean(updates, trim_fraction=0.2).tolist() == pytest.approx([11 / 3, 1.0])
    assert trimmed_mean(updates, trim_fraction=0.0).tolist() == pytest.approx([21.8, 1.4])
    assert median(updates[:4]).tolist() == [5.0, 0.5]  # even n: mean of the middle two


def test_median_of_float32_extremes_does_not_overflow() -> None:
    big = np.finfo(np.float32).max
    assert median([vec(big), vec(big)]).tolist() == [float(big)]


def test_krum_hand_checked() -> None:
    # n=5, f=1: each score sums the n-f-2 = 2 nearest squared distances.
    updates = [vec(0.0), vec(1.0), vec(2.0), vec(3.0), vec(50.0)]
    # scores: 0 -> 1+4, 1 -> 1+1, 2 -> 1+1, 3 -> 1+4, 50 -> 47^2+48^2
    selection = krum_select(updates, f=1, m=2)
    assert selection.scores == (5.0, 2.0, 2.0, 5.0, 47.0**2 + 48.0**2)
    assert set(selection.selected) == {1, 2}
    assert krum(updates, f=1).tolist() in ([1.0], [2.0])
    assert multi_krum(updates, f=1, m=2).tolist() == [1.5]
    assert aggregate("multi_krum", updates, f=1).tolist() == [1.5]  # m = n - f = 4


def test_krum_tie_goes_to_the_same_update_in_any_order() -> None:
    updates = [vec(0.0), vec(1.0), vec(2.0), vec(3.0), vec(50.0)]
    first = krum(updates, f=1)
    assert krum(updates[::-1], f=1).tobytes() == first.tobytes()


def test_exact_distances_match_float64_reference() -> None:
    rng = np.random.default_rng(3)
    vectors = [rng.standard_normal(10_000).astype(np.float32) * s for s in (1e-3, 1.0, 1e3)]
    exact = exact_squared_distances(vectors).as_float()
    stack = np.stack(vectors).astype(np.float64)
    reference = ((stack[:, None, :] - stack[None, :, :]) ** 2).sum(axis=2)
    np.testing.assert_allclose(exact, reference, rtol=1e-9)
    assert np.all(np.diag(exact) == 0.0)


def test_list_of_arrays_layout_round_trips() -> None:
    rng = np.random.default_rng(1)
    shapes = [(4, 3), (3,), (3, 2)]
    updates = [[rng.standard_normal(s).astype(np.float32) for s in shapes] for _ in range(5)]
    for rule in ("fedavg", "median", "krum"):
        params = {"f": 1} if rule == "krum" else {}
        result = aggregate(rule, updates, [1, 2, 3, 4, 5], **params)
        assert [part.shape for part in result] == shapes
        assert all(part.dtype == np.float32 for part in result)
    flat = [np.concatenate([p.ravel() for p in u]) for u in updates]
    nested = aggregate("median", updates)
    assert np.concatenate([p.ravel() for p in nested]).tobytes() == median(flat).tobytes()


# --- robustness: f Byzantine updates with huge values --------------------------------


def _honest_and_byzantine(n: int, f: int, size: int) -> tuple[list[np.ndarray], np.ndarray]:
    rng = np.random.default_rng(n * 100 + f)
    honest = [rng.normal(0.0, 1.0, size).astype(np.float32) for _ in range(n - f)]
    byzantine = [np.full(size, 1e30 * (-1) ** k, dtype=np.float32) for k in range(f)]
    return honest + byzantine, np.stack(honest)


@pytest.mark.parametrize(("n", "f"), [(7, 2), (11, 4), (13, 5)])
def test_robust_rules_stay_within_honest_range(n: int, f: int) -> None:
    updates, honest = _honest_and_byzantine(n, f, 257)
    low, high = honest.min(axis=0), honest.max(axis=0)
    results = {
        "median": median(updates),
        "trimmed_mean": trimmed_mean(updates, trim_fraction=f / n + 1e-9),
        "krum": krum(updates, f=f),
        "multi_krum": multi_krum(updates, f=f, m=n - f),
    }
    for name, result in results.items():
        assert np.all(result >= low) and np.all(result <= high), name
    assert any(np.array_equal(results["krum"], h) for h in honest)


def test_fedavg_is_not_robust() -> None:
    updates, honest = _honest_and_byzantine(7, 1, 64)
    result = fedavg(updates)
    assert np.all(np.abs(result) > 1e28)  # one sender moved every coordinate
    assert np.all(np.abs(honest) < 10)


def test_krum_weights_cannot_buy_selection() -> None:
    updates, honest = _honest_and_byzantine(7, 2, 32)
    result = krum(updates, [1, 1, 1, 1, 1, 10**9, 10**9], f=2)
    assert any(np.array_equal(result, h) for h in honest)


# --- validation -------------------------------------------------------------------


@pytest.mark.parametrize("rule", ["fedavg", "median", "trimmed_mean", "krum"])
def test_non_finite_updates_are_rejected_by_position(rule: str) -> None:
    params = {"f": 1} if rule == "krum" else {}
    if rule == "trimmed_mean":
        params = {"trim_fraction": 0.2}
    for bad_value in (np.nan, np.inf, -np.inf):
        updates = [vec(k, k, k) for k in range(6)]
        updates[2] = vec(1, bad_value, 1)
        updates[4] = vec(bad_value, 1, 1)
        with pytest.raises(NonFiniteUpdate) as caught:
            aggregate(rule, updates, **params)
        assert caught.value.indices == (2, 4)


def test_non_finite_in_a_zero_weight_update_is_still_rejected() -> None:
    with pytest.raises(NonFiniteUpdate):
        fedavg([vec(1.0), vec(np.nan)], [1, 0])


def test_drop_non_finite_lets_callers_count_and_continue() -> None:
    updates = [vec(1.0), vec(np.nan), vec(3.0)]
    kept, weights, dropped = drop_non_finite(updates, [1, 2, 3])
    assert dropped == [1] and weights == [1, 3]
    assert fedavg(kept, weights).tolist() == [2.5]


@pytest.mark.parametrize(
    "updates",
    [
        [vec(1, 2), vec(1, 2, 3)],  # sizes differ
        [vec(1, 2), np.zeros((1, 2), np.float32)],  # not flat
        [vec(1, 2), np.array([1, 2], np.float64)],  # dtype
        [vec(1, 2), np.array([1, 2], ">f4")],  # byte order
        [vec(1, 2), [vec(1, 2)]],  # layouts differ
        [[vec(1), vec(1, 2)], [vec(1, 2), vec(1)]],  # shapes differ
        [vec(1, 2), [1.0, 2.0]],  # not arrays
        [np.zeros(0, np.float32)],  # empty
    ],
)
def test_malformed_updates_raise_invalid_update(updates: list[object]) -> None:
    with pytest.raises(InvalidUpdate):
        fedavg(updates)  # type: ignore[arg-type]


def test_empty_batch_raises_too_few() -> None:
    with pytest.raises(TooFewUpdates):
        median([])


@pytest.mark.parametrize(
    "weights", [[1.0], [1.0, -1.0], [0, 0], [1.0, float("nan")], [True, 1], ["1", 1], [2**60, 1]]
)
def test_bad_weights_raise(weights: list[object]) -> None:
    with pytest.raises(InvalidWeights):
        fedavg([vec(1.0), vec(2.0)], weights)  # type: ignore[arg-type]


def test_krum_needs_2f_plus_3_updates() -> None:
    updates = [vec(float(k)) for k in range(6)]
    with pytest.raises(TooFewUpdates) as caught:
        krum(updates, f=2)
    assert (caught.value.count, caught.value.required) == (6, 7)
    assert krum([*updates, vec(9.0)], f=2).shape == (1,)
    with pytest.raises(InvalidParameter):
        krum(updates, f=-1)
    with pytest.raises(InvalidParameter):
        multi_krum(updates, f=1, m=7)


def test_registry_rejects_unknown_rules_and_parameters() -> None:
    updates = [vec(1.0), vec(2.0), vec(3.0)]
    with pytest.raises(UnknownRule):
        aggregate("bulyan", updates)
    with pytest.raises(InvalidParameter):
        aggregate("median", updates, f=1)
    with pytest.raises(InvalidParameter):
        aggregate("trimmed_mean", updates)  # trim_fraction is required
    with pytest.raises(InvalidParameter):
        aggregate("trimmed_mean", updates, trim_fraction=0.5)
    with pytest.raises(InvalidParameter):
        aggregate("krum", updates, f=0.5)


def test_registry_accepts_plug_in_rules() -> None:
    def coordinate_max(updates, weights, /, **params):  # type: ignore[no-untyped-def]
        return np.max(np.stack(updates), axis=0)

    registry = default_registry()
    registry.register(RuleSpec("max", coordinate_max, {}, False, "test rule"))
    assert registry.aggregate("max", [vec(1, 5), vec(3, 2)]).tolist() == [3.0, 5.0]
    assert "max" not in default_registry().names()
    with pytest.raises(InvalidParameter):
        registry.register(RuleSpec("max", coordinate_max, {}, False, "again"))
