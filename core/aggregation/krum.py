"""Krum and Multi-Krum (Blanchard et al., NeurIPS 2017, Section 4).

Krum scores each update i by the sum of squared distances to its n - f - 2 nearest
neighbours and picks the lowest score; it tolerates f Byzantine updates when
n >= 2f + 3. Multi-Krum picks the m lowest-scoring updates and averages them
(unweighted, as in the paper); m = 1 is Krum.

The distances are the expensive part (n(n-1)/2 pairs of d parameters). They are
computed *exactly*, which makes them bit-reproducible on any machine and BLAS:
  - each update x_i is split, relative to its own largest magnitude 2^e_i, into
    SLICES integer-valued float64 vectors of BETA bits each (an error-free split
    by scaling with powers of two and rint, as in Ozaki-style exact dot products);
    bits below 2^(e_i - BETA*SLICES) are dropped, so an update is represented to
    2*BETA = 38 bits relative to its own maximum (float32 carries 24);
  - the Gram matrix of the slices is a float64 BLAS matmul per block of
    BLOCK_PARAMS parameters; every product and partial sum is an integer below
    2^53, so any summation order, kernel or thread count yields the same exact
    result; blocks accumulate exactly in int64;
  - the distances ||x_i||^2 + ||x_j||^2 - 2<x_i, x_j> and the scores are formed
    with Python integers, so there is no cancellation and no rounding at all.
A float Gram matrix (fast, but rounded in a BLAS-chosen order) and a direct
elementwise formulation (deterministic, slow) are measured against this in
`agent bench aggregation`; see docs/aggregation.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import numpy.typing as npt

from agentmesh.core.aggregation.mean import weighted_mean
from agentmesh.core.aggregation.tensors import (
    Batch,
    FloatVector,
    InvalidParameter,
    NonFiniteUpdate,
    TooFewUpdates,
    Update,
    prepare,
)

# Few, large BLAS calls: OpenBLAS threads spin, and many small calls on a busy machine
# cost seconds (measured: 0.17 s single-threaded vs 1-30 s with 2 threads under load).
_BLOCK_BITS = 15
BLOCK_PARAMS = 1 << _BLOCK_BITS
SLICES = 2
# Per block: |slice| <= 2^BETA, so a dot product over 2^15 terms is < 2^(2*BETA+15) <= 2^53.
BETA = (53 - _BLOCK_BITS) // 2
# int64 holds 2^(62 - 2*BETA - 15) block sums exactly; then fold into Python integers.
_BLOCKS_PER_FOLD = 1 << (62 - 2 * BETA - _BLOCK_BITS)


@dataclass(frozen=True, slots=True)
class ExactDistances:
    """Exact squared distances between the split updates, in units of 2^(2*unit)."""

    values: list[list[int]]
    unit: int

    def as_float(self) -> npt.NDArray[np.float64]:
        """Each distance rounded once to float64."""
        scale = Fraction(2) ** (2 * self.unit)
        return np.array([[float(value * scale) for value in row] for row in self.values])


@dataclass(frozen=True, slots=True)
class KrumSelection:
    """Which updates Krum chose (positions in the caller's list, best first) and why."""

    selected: tuple[int, ...]
    scores: tuple[float, ...]  # Krum score of each update, in the caller's order


def krum(updates: Sequence[Update], weights: Sequence[float] | None = None, *, f: int) -> Update:
    """The update with the lowest Krum score (a copy); `weights` validated, not used."""
    return multi_krum(updates, weights, f=f, m=1)


def multi_krum(
    updates: Sequence[Update],
    weights: Sequence[float] | None = None,
    *,
    f: int,
    m: int,
) -> Update:
    """Unweighted mean of the m updates with the lowest Krum scores."""
    batch = prepare(updates, weights)
    chosen = sorted(_select(batch, f, m)[0])  # average in canonical order
    picked = Batch(
        vectors=tuple(batch.vectors[i] for i in chosen),
        weights=(1.0,) * len(chosen),
        positions=tuple(batch.positions[i] for i in chosen),
        layout=batch.layout,
    )
    return batch.layout.unflatten(weighted_mean(picked))


def krum_select(
    updates: Sequence[Update], weights: Sequence[float] | None = None, *, f: int, m: int = 1
) -> KrumSelection:
    """Positions of the m best-scored updates, and every update's score."""
    batch = prepare(updates, weights)
    chosen, scores, unit = _select(batch, f, m)
    scale = Fraction(2) ** (2 * unit)
    by_position = sorted(zip(batch.positions, scores, strict=True))
    return KrumSelection(
        selected=tuple(batch.positions[i] for i in chosen),
        scores=tuple(float(score * scale) for _, score in by_position),
    )


def check_krum_parameters(count: int, f: int, m: int) -> None:
    """f >= 0 integer, n >= 2f + 3 (Blanchard et al., Proposition 1), 1 <= m <= n."""
    for name, value in (("f", f), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer):
            raise InvalidParameter(f"{name}={value!r} is not an integer")
    if f < 0:
        raise InvalidParameter(f"f={f} is negative")
    if count < 2 * f + 3:
        raise TooFewUpdates(count, 2 * f + 3, f"Krum with f={f}")
    if not 1 <= m <= count:
        raise InvalidParameter(f"m={m} is outside [1, {count}]")


def _select(batch: Batch, f: int, m: int) -> tuple[list[int], list[int], int]:
    """Batch indices of the m lowest scores (ties: canonically first), scores, unit."""
    check_krum_parameters(batch.count, f, m)
    distances = exact_squared_distances(batch.vectors, batch.positions)
    scores = krum_scores(distances.values, batch.count - f - 2)
    chosen = sorted(range(batch.count), key=lambda i: (scores[i], i))[:m]
    return chosen, scores, distances.unit


def krum_scores(distances: list[list[int]], neighbours: int) -> list[int]:
    """Sum of each row's `neighbours` smallest off-diagonal distances."""
    scores: list[int] = []
    for i, row in enumerate(distances):
        others = sorted(row[:i] + row[i + 1 :])
        scores.append(sum(others[:neighbours]))
    return scores


def exact_squared_distances(
    vectors: Sequence[FloatVector], positions: Sequence[int] | None = None
) -> ExactDistances:
    """Exact squared distances between the vectors as split (2*BETA bits each, see above).

    Raises NonFiniteUpdate (with `positions`, default 0..n-1) for NaN/inf vectors.
    """
    gram, exponents = _split_gram(vectors, positions)
    count = len(vectors)
    unit = min(exponents) - BETA * SLICES
    # Slice p of update i holds integers in units of 2^(e_i - BETA*(p+1)).
    shifts = [[e - BETA * (p + 1) - unit for e in exponents] for p in range(SLICES)]
    inner = [[0] * count for _ in range(count)]
    for i in range(count):
        for j in range(i, count):
            total = 0
            for p in range(SLICES):
                row = gram[p * count + i]
                for q in range(SLICES):
                    total += int(row[q * count + j]) << (shifts[p][i] + shifts[q][j])
            inner[i][j] = inner[j][i] = total
    values = [
        [inner[i][i] + inner[j][j] - 2 * inner[i][j] for j in range(count)] for i in range(count)
    ]
    return ExactDistances(values=values, unit=unit)


def _split_gram(
    vectors: Sequence[FloatVector], positions: Sequence[int] | None
) -> tuple[list[list[int]], list[int]]:
    """Exact Gram matrix of the slices (slice p of update i at row p*n + i), exponents."""
    count = len(vectors)
    size = int(vectors[0].size)
    maxima = [max(float(v.max()), -float(v.min())) for v in vectors]
    bad = [i for i, value in enumerate(maxima) if not math.isfinite(value)]  # max() keeps NaN
    if bad:
        where = list(positions) if positions is not None else list(range(count))
        raise NonFiniteUpdate(sorted(where[i] for i in bad))
    exponents = [math.frexp(value)[1] for value in maxima]
    scales = np.array([math.ldexp(1.0, BETA - e) for e in exponents])[:, None]
    total = np.zeros((SLICES * count, SLICES * count), dtype=object)
    gram = np.zeros_like(total, dtype=np.int64)
    values = np.empty((count, min(BLOCK_PARAMS, size)), dtype=np.float64)
    slices = np.empty((SLICES * count, values.shape[1]), dtype=np.float64)
    for block, start in enumerate(range(0, size, BLOCK_PARAMS)):
        stop = min(start + BLOCK_PARAMS, size)
        value = values[:, : stop - start]
        for row, vector in zip(value, vectors, strict=True):
            row[:] = vector[start:stop]
        value *= scales  # exact: powers of two, no overflow or underflow in float64
        part = slices[:, : stop - start]
        for p in range(SLICES):
            piece = part[p * count : (p + 1) * count]
            np.rint(value, out=piece)
            np.subtract(value, piece, out=value)  # exact: |value - rint(value)| <= 1/2
            value *= float(1 << BETA)
        gram += (part @ part.T).astype(np.int64)  # exact integers < 2^53: any BLAS order
        if (block + 1) % _BLOCKS_PER_FOLD == 0:
            total += gram.astype(object)  # before int64 could overflow
            gram[:] = 0
    total += gram.astype(object)
    return total.tolist(), exponents
