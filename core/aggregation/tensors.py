"""Updates as numpy arrays: validation, canonical order and the content digest.

An update is either one flat float32 vector or a list of float32 arrays (a model's
layers); all updates of one aggregation share that layout. Rules work on flat
vectors and give the result back in the callers' layout.

Determinism (validators recompute every aggregate): the canonical order of a batch
is the bytewise order of each update's little-endian float32 encoding, ties broken
by weight. It is cheap (two different updates almost always differ in their first
bytes) and needs no trust in caller-given ids. `digest` is what the round protocol
signs and compares.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatVector = npt.NDArray[np.float32]
Update = FloatVector | Sequence[FloatVector]

DIGEST_DOMAIN = b"agentmesh/tensors/v1\x00"
WEIGHT_MAX = float(2**53)  # sample counts beyond this are not exact as float64
_PREFIX_BYTES = 64
_NUMERIC_KINDS = "biufc"


class AggregationError(ValueError):
    """Base of the typed aggregation errors (API misuse or bad input)."""


class InvalidUpdate(AggregationError):
    """An update of the wrong type, dtype, shape or layout."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"update {index}: {reason}")
        self.index = index
        self.reason = reason


class NonFiniteUpdate(AggregationError):
    """Updates holding NaN or ±inf; `indices` are positions in the caller's list."""

    def __init__(self, indices: Sequence[int]) -> None:
        super().__init__(f"updates with NaN or inf at positions {list(indices)}")
        self.indices = tuple(indices)


class InvalidWeights(AggregationError):
    """Weights that are not finite non-negative numbers with a positive total."""


class InvalidParameter(AggregationError):
    """A rule parameter that is unknown, of the wrong type or out of range."""


class UnknownRule(AggregationError):
    """No aggregation rule is registered under that name."""


class TooFewUpdates(AggregationError):
    """Fewer updates than the rule needs (e.g. Krum needs n >= 2f + 3)."""

    def __init__(self, count: int, required: int, rule: str) -> None:
        super().__init__(f"{rule} needs at least {required} updates, got {count}")
        self.count = count
        self.required = required


@dataclass(frozen=True, slots=True)
class Layout:
    """How a flat vector maps back to the callers' form (None: a flat vector)."""

    shapes: tuple[tuple[int, ...], ...] | None
    size: int

    def unflatten(self, flat: FloatVector) -> Update:
        """Return `flat` in this layout (views into `flat` for list layouts)."""
        if self.shapes is None:
            return flat
        parts: list[FloatVector] = []
        start = 0
        for shape in self.shapes:
            count = math.prod(shape)
            parts.append(flat[start : start + count].reshape(shape))
            start += count
        return parts


@dataclass(frozen=True, slots=True)
class Batch:
    """Validated updates as flat float32 vectors, in canonical order."""

    vectors: tuple[FloatVector, ...]
    weights: tuple[float, ...]
    positions: tuple[int, ...]  # the caller's index of each vector
    layout: Layout

    @property
    def count(self) -> int:
        return len(self.vectors)


def prepare(updates: Sequence[Update], weights: Sequence[float] | None) -> Batch:
    """Validate layout, dtype and weights and sort canonically (finiteness: see rules)."""
    if isinstance(updates, np.ndarray) or not isinstance(updates, Sequence):
        raise InvalidUpdate(-1, "updates must be a list of updates")
    if not updates:
        raise TooFewUpdates(0, 1, "aggregation")
    layout = _layout_of(updates[0], 0)
    vectors = [_flatten(update, index, layout) for index, update in enumerate(updates)]
    checked = check_weights(weights, len(vectors))
    order = canonical_order(vectors, checked)
    return Batch(
        vectors=tuple(vectors[i] for i in order),
        weights=tuple(checked[i] for i in order),
        positions=tuple(order),
        layout=layout,
    )


def check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    """Weights as exact float64 values; None means 1 each."""
    if weights is None:
        return [1.0] * count
    if isinstance(weights, np.ndarray):
        weights = weights.tolist()
    if len(weights) != count:
        raise InvalidWeights(f"{len(weights)} weights for {count} updates")
    checked: list[float] = []
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(
            weight, int | float | np.integer | np.floating
        ):
            raise InvalidWeights(f"weight {weight!r} is not a number")
        if isinstance(weight, int | np.integer) and abs(int(weight)) > WEIGHT_MAX:
            raise InvalidWeights(f"weight {weight} is above 2**53")
        value = float(weight)
        if not math.isfinite(value) or value < 0.0 or value > WEIGHT_MAX:
            raise InvalidWeights(f"weight {weight!r} is not a finite number in [0, 2**53]")
        checked.append(value)
    # fsum is exactly rounded, so the total does not depend on the order.
    if math.fsum(checked) <= 0.0:
        raise InvalidWeights("weights sum to zero")
    return checked


def find_non_finite(vectors: Sequence[FloatVector]) -> list[int]:
    """Indices of the vectors holding NaN or ±inf."""
    return [i for i, vector in enumerate(vectors) if not bool(np.isfinite(vector).all())]


def raise_non_finite(batch: Batch) -> None:
    """Locate the non-finite updates of `batch` and raise NonFiniteUpdate for them."""
    bad = sorted(batch.positions[i] for i in find_non_finite(batch.vectors))
    assert bad, "a rule saw a non-finite value but no update holds one"
    raise NonFiniteUpdate(bad)


def drop_non_finite(
    updates: Sequence[Update], weights: Sequence[float] | None = None
) -> tuple[list[Update], list[float] | None, list[int]]:
    """Split off updates holding NaN/inf: (kept updates, kept weights, dropped positions).

    For callers that count and drop bad updates (peer misbehaviour is data) instead
    of failing the whole aggregation on a NonFiniteUpdate.
    """
    dropped: list[int] = []
    for index, update in enumerate(updates):
        parts = [update] if isinstance(update, np.ndarray) else list(update)
        if not all(bool(np.isfinite(np.asarray(part)).all()) for part in parts):
            dropped.append(index)
    kept = [u for i, u in enumerate(updates) if i not in set(dropped)]
    kept_weights = (
        None if weights is None else [w for i, w in enumerate(weights) if i not in set(dropped)]
    )
    return kept, kept_weights, dropped


def canonical_order(vectors: Sequence[FloatVector], weights: Sequence[float]) -> list[int]:
    """Indices sorted by each vector's little-endian bytes (bytewise), then by weight."""
    encoded = [_le_bytes(vector) for vector in vectors]
    prefixes = [view[:_PREFIX_BYTES].tobytes() for view in encoded]

    def compare(i: int, j: int) -> int:
        if prefixes[i] != prefixes[j]:
            return -1 if prefixes[i] < prefixes[j] else 1
        differs = encoded[i] != encoded[j]
        first = int(differs.argmax())
        if differs[first]:
            return -1 if encoded[i][first] < encoded[j][first] else 1
        return (weights[i] > weights[j]) - (weights[i] < weights[j])

    return sorted(range(len(vectors)), key=functools.cmp_to_key(compare))


def digest(arrays: npt.NDArray[np.generic] | Sequence[npt.NDArray[np.generic]]) -> bytes:
    """sha-256 over a canonical encoding of arrays: dtype, shape, little-endian C-order bytes.

    Encoding: DIGEST_DOMAIN, u32 count, then per array: u8 length + dtype string
    (numpy's little-endian form, e.g. b"<f4"), u32 ndim, u64 per dimension, data.
    """
    parts = [arrays] if isinstance(arrays, np.ndarray) else list(arrays)
    hasher = hashlib.sha256(DIGEST_DOMAIN)
    hasher.update(struct.pack("<I", len(parts)))
    for part in parts:
        if not isinstance(part, np.ndarray) or part.dtype.kind not in _NUMERIC_KINDS:
            raise InvalidUpdate(-1, "digest takes numeric numpy arrays")
        little = part.astype(part.dtype.newbyteorder("<"), copy=False)
        name = little.dtype.str.encode("ascii")
        hasher.update(struct.pack("<B", len(name)) + name)
        hasher.update(struct.pack("<I", little.ndim))
        hasher.update(struct.pack(f"<{little.ndim}Q", *little.shape))
        hasher.update(np.ascontiguousarray(little).data.cast("B"))
    return hasher.digest()


def _le_bytes(vector: FloatVector) -> npt.NDArray[np.uint8]:
    return vector.astype("<f4", copy=False).view(np.uint8)


def _layout_of(update: Update, index: int) -> Layout:
    if isinstance(update, np.ndarray):
        if update.ndim != 1:
            raise InvalidUpdate(index, f"a flat update must be 1-D, got shape {update.shape}")
        return Layout(shapes=None, size=int(update.size))
    if isinstance(update, str | bytes) or not isinstance(update, Sequence) or not update:
        raise InvalidUpdate(index, "an update is a float32 vector or a non-empty list of arrays")
    shapes: list[tuple[int, ...]] = []
    for part in update:
        if not isinstance(part, np.ndarray):
            raise InvalidUpdate(index, f"list element of type {type(part).__name__}")
        shapes.append(tuple(int(n) for n in part.shape))
    return Layout(shapes=tuple(shapes), size=sum(math.prod(shape) for shape in shapes))


def _flatten(update: Update, index: int, layout: Layout) -> FloatVector:
    if _layout_of(update, index) != layout:
        raise InvalidUpdate(index, "layout differs from update 0 (shapes or sizes)")
    if layout.size == 0:
        raise InvalidUpdate(index, "an update needs at least one parameter")
    parts = [update] if isinstance(update, np.ndarray) else list(update)
    for part in parts:
        if part.dtype != np.float32:
            raise InvalidUpdate(index, f"dtype {part.dtype} is not native float32")
    if isinstance(update, np.ndarray):
        return np.ascontiguousarray(update)
    return np.concatenate([part.ravel() for part in parts])
