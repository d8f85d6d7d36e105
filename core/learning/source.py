"""A data source is anything that yields labelled arrays (X, y).

Plug in a data set by implementing `DataSource`: a `name` and a `load()` that
returns `LabeledArrays(features, labels)` (unpacks as `X, y`). Reading files or
devices is the implementation's business; everything here is pure.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np


class DataSourceError(ValueError):
    """A data source returned arrays that cannot be used for training."""


class LabeledArrays(NamedTuple):
    """Features (rows first) and integer class labels, one per row."""

    features: np.ndarray
    labels: np.ndarray


@runtime_checkable
class DataSource(Protocol):
    """Where an agent's (X, y) come from."""

    name: str

    def load(self) -> LabeledArrays:
        """Return all rows of this source."""
        ...


class ArraySource:
    """A `DataSource` over arrays already in memory."""

    def __init__(self, features: np.ndarray, labels: np.ndarray, name: str = "arrays") -> None:
        self.name = name
        self._arrays = LabeledArrays(features, labels)

    def load(self) -> LabeledArrays:
        """The arrays given at construction."""
        return self._arrays


def validate_labeled(arrays: LabeledArrays, classes: int) -> LabeledArrays:
    """Check shapes, finiteness and label range; raise `DataSourceError` if unusable."""
    features, labels = np.asarray(arrays.features), np.asarray(arrays.labels)
    if features.ndim < 2:
        raise DataSourceError(f"features need a row axis and feature axes, got {features.shape}")
    if labels.ndim != 1 or labels.shape[0] != features.shape[0]:
        raise DataSourceError(f"{labels.shape} labels for {features.shape[0]} feature rows")
    if not np.issubdtype(labels.dtype, np.integer):
        raise DataSourceError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise DataSourceError(f"labels outside 0..{classes - 1}")
    if not np.issubdtype(features.dtype, np.number):
        raise DataSourceError(f"features must be numeric, got {features.dtype}")
    if np.issubdtype(features.dtype, np.floating) and not np.all(np.isfinite(features)):
        raise DataSourceError("features hold NaN or infinity")
    return LabeledArrays(features, labels)
