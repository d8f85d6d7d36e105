"""Coordinate-wise median and trimmed mean (Yin et al., ICML 2018, Definitions 1 and 2).

Per coordinate the n values are sorted; the median is the middle value (the mean
of the two middle values for even n), the beta-trimmed mean drops the
k = floor(beta * n) largest and smallest values and averages the rest. Both ignore
weights, as in the paper: a sample count is a claim the sender makes, and a
Byzantine sender would inflate it.

Bit-reproducible everywhere: -0.0 is turned into +0.0 first, so values that compare
equal are also bitwise equal and the sorted column is unique whatever sort algorithm
numpy dispatches to (x86-simd-sort, Highway, ...); the trimmed sum then runs in
sorted order in float64 with elementwise ufuncs. The input order cannot matter.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from agentmesh.core.aggregation.tensors import (
    Batch,
    FloatVector,
    InvalidParameter,
    Update,
    prepare,
    raise_non_finite,
)

BLOCK_PARAMS = 1 << 12  # a (4096, n) float32 block: 160 KiB for n = 10


def median(updates: Sequence[Update], weights: Sequence[float] | None = None) -> Update:
    """Coordinate-wise median; `weights` are validated but not used."""
    batch = prepare(updates, weights)
    return batch.layout.unflatten(trimmed_mean_of(batch, _median_trim(batch.count)))


def trimmed_mean(
    updates: Sequence[Update],
    weights: Sequence[float] | None = None,
    *,
    trim_fraction: float,
) -> Update:
    """Coordinate-wise beta-trimmed mean, beta = trim_fraction in [0, 1/2)."""
    batch = prepare(updates, weights)
    return batch.layout.unflatten(trimmed_mean_of(batch, trim_count(batch.count, trim_fraction)))


def trim_count(count: int, trim_fraction: float) -> int:
    """k = floor(beta * n) values dropped at each end; at least one value must remain."""
    if isinstance(trim_fraction, bool) or not isinstance(trim_fraction, int | float):
        raise InvalidParameter(f"trim_fraction {trim_fraction!r} is not a number")
    if not 0.0 <= trim_fraction < 0.5:
        raise InvalidParameter(f"trim_fraction {trim_fraction} is outside [0, 0.5)")
    trimmed = int(trim_fraction * count)
    return min(trimmed, (count - 1) // 2)


def _median_trim(count: int) -> int:
    # The median is the trimmed mean keeping the middle 1 (odd n) or 2 (even n) values.
    return (count - 1) // 2


def trimmed_mean_of(batch: Batch, trimmed: int) -> FloatVector:
    """Mean of the sorted values trimmed..n-trimmed-1 of every coordinate, as float32."""
    count = batch.count
    kept = count - 2 * trimmed
    assert kept >= 1
    size = batch.layout.size
    out = np.empty(size, dtype=np.float32)
    block = np.empty((count, min(BLOCK_PARAMS, size)), dtype=np.float32)
    acc_buffer = np.empty(block.shape[1], dtype=np.float64)
    for start in range(0, size, BLOCK_PARAMS):
        stop = min(start + BLOCK_PARAMS, size)
        rows = block[:, : stop - start]
        for row, vector in zip(rows, batch.vectors, strict=True):
            np.add(vector[start:stop], np.float32(0.0), out=row)  # -0.0 -> +0.0
        columns = _sorted_columns(rows)
        # Sorting puts NaN last and -inf/+inf at the ends, so two rows tell.
        if not (bool(np.isfinite(columns[0]).all()) and bool(np.isfinite(columns[-1]).all())):
            raise_non_finite(batch)
        if kept == 1:
            out[start:stop] = columns[trimmed]
            continue
        acc = acc_buffer[: stop - start]
        np.copyto(acc, columns[trimmed])
        for index in range(trimmed + 1, count - trimmed):
            np.add(acc, columns[index], out=acc, dtype=np.float64)
        np.divide(acc, float(kept), out=acc)
        out[start:stop] = acc
    return out


def _sorted_columns(rows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Sort every column of (n, B) rows; returns (n, B) with row k the k-th smallest."""
    transposed = np.ascontiguousarray(rows.T)
    transposed.sort(axis=1)
    return np.ascontiguousarray(transposed.T)
