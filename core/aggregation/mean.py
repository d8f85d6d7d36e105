"""Weighted FedAvg (McMahan et al., AISTATS 2017, Algorithm 1: w <- sum_k n_k/n w_k).

Bit-reproducible everywhere: per coordinate the sum runs over the updates in
canonical order, accumulating in float64 with elementwise numpy ufuncs (each an
IEEE-754 correctly rounded operation, so SIMD width and thread count do not
matter), then divides by the exactly rounded total weight and rounds once to
float32. No BLAS, no reduction whose tree numpy may choose.

Speed: the parameters are processed in blocks small enough for the float64
scratch to stay in cache, so memory traffic is one read of each update and one
write of the result. Per update and block there are three unbuffered passes
(widen, multiply, add) with prebuilt arguments: numpy's per-call overhead (~1 µs
for a Python-float weight or a casting ufunc) is a noticeable share at ~30 blocks
times n updates. The per-coordinate operations are the same for every block size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from agentmesh.core.aggregation.tensors import (
    Batch,
    FloatVector,
    Update,
    prepare,
    raise_non_finite,
)

BLOCK_PARAMS = 1 << 15  # 256 KiB per float64 buffer: accumulator + term fill a 512 KiB L2


def fedavg(updates: Sequence[Update], weights: Sequence[float] | None = None) -> Update:
    """Weighted mean of the updates (weights = sample counts; None = equal weights).

    Not robust: one update with huge values moves the result without bound.
    Raises NonFiniteUpdate naming every update that holds NaN or inf.
    """
    batch = prepare(updates, weights)
    return batch.layout.unflatten(weighted_mean(batch))


def weighted_mean(batch: Batch, block_params: int = BLOCK_PARAMS) -> FloatVector:
    """sum_i w_i x_i / sum_i w_i over the batch in its (canonical) order, as float32.

    Per coordinate: acc = +0.0; acc = acc + float64(x_i) * w_i for each update with
    w_i > 0 in order; float32(acc / fsum(w)). `block_params` only changes speed.
    """
    total = math.fsum(batch.weights)
    size = batch.layout.size
    block = max(1, min(block_params, size))
    out = np.empty(size, dtype=np.float32)
    acc_buffer = np.empty(block, dtype=np.float64)
    term_buffer = np.empty_like(acc_buffer)
    # 0-d float64 weights: numpy would convert a Python float again on every call.
    terms = [
        (vector, np.array(weight, dtype=np.float64))
        for vector, weight in zip(batch.vectors, batch.weights, strict=True)
        if weight > 0.0
    ]
    for start in range(0, size, block):
        stop = min(start + block, size)
        acc = acc_buffer[: stop - start]
        term = term_buffer[: stop - start]
        acc.fill(0.0)
        for vector, weight in terms:
            term[...] = vector[start:stop]  # float32 -> float64 is exact
            np.multiply(term, weight, term)
            np.add(acc, term, acc)
        result = out[start:stop]
        # The quotient is computed in float64, then rounded once to float32.
        np.divide(acc, total, out=result, dtype=np.float64, casting="same_kind")
        # NaN/inf in any input reaches the result (inf*w, inf-inf, NaN+x); finite float32
        # inputs cannot overflow float64, nor their weighted mean float32: one check per block.
        if not bool(np.isfinite(result).all()):
            raise_non_finite(batch)
    _check_zero_weight_updates(batch)
    return out


def _check_zero_weight_updates(batch: Batch) -> None:
    # Zero-weight updates are skipped in the sum but must still be well-formed.
    zero = [v for v, w in zip(batch.vectors, batch.weights, strict=True) if w == 0.0]
    if zero and not all(bool(np.isfinite(v).all()) for v in zero):
        raise_non_finite(batch)
