"""The UCI handwritten digits, loaded from the committed `digits.npz`.

Source: "Optical Recognition of Handwritten Digits", UCI Machine Learning
Repository, E. Alpaydin and C. Kaynak (1998), https://doi.org/10.24432/C50P49,
licensed CC BY 4.0 by UCI. The file holds the 1,797-row copy shipped by
scikit-learn (`sklearn.datasets.load_digits`, BSD-3-Clause), in that file order,
as `X` (uint8, 1797 x 64, values 0..16) and `y` (uint8, labels 0..9).
Regenerate with `python -m agentmesh.tools.data.make_digits` (needs scikit-learn).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Final

import numpy as np

from agentmesh.core.learning.digits8 import Digits8Split, split_digits8
from agentmesh.core.learning.source import LabeledArrays

DIGITS_FILE: Final = "digits.npz"
DIGITS_ROWS: Final = 1797
DIGITS_FEATURES: Final = 64
DIGITS_CLASSES: Final = 10
# sha-256 of X.tobytes() + y.tobytes() as committed; guards against a silent reorder.
DIGITS_CONTENT_SHA256: Final = "87ff0c9e40dc7e2c0e34e7257799c2e3f3aec1a016363bb11cad869ec428a826"


class DigitsFileError(ValueError):
    """The digits file does not hold what its docstring promises."""


def content_sha256(features: np.ndarray, labels: np.ndarray) -> str:
    """Digest of the raw bytes of X then y (the identity of the data set)."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(features).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    return digest.hexdigest()


def load_digits() -> LabeledArrays:
    """X (1797, 64) uint8 in 0..16 and y (1797,) uint8 in 0..9, in file order."""
    with resources.files(__package__).joinpath(DIGITS_FILE).open("rb") as handle:
        with np.load(handle, allow_pickle=False) as archive:
            features = np.asarray(archive["X"])
            labels = np.asarray(archive["y"])
    _check(features, labels)
    return LabeledArrays(features, labels)


def _check(features: np.ndarray, labels: np.ndarray) -> None:
    if features.shape != (DIGITS_ROWS, DIGITS_FEATURES) or labels.shape != (DIGITS_ROWS,):
        raise DigitsFileError(f"unexpected shapes {features.shape} and {labels.shape}")
    if features.dtype != np.uint8 or labels.dtype != np.uint8:
        raise DigitsFileError(f"unexpected dtypes {features.dtype} and {labels.dtype}")
    if content_sha256(features, labels) != DIGITS_CONTENT_SHA256:
        raise DigitsFileError("digits.npz content differs from the committed data set")


class DigitsSource:
    """The digits as a `DataSource` (features as uint8 0..16, labels 0..9)."""

    name = "uci-digits"

    def load(self) -> LabeledArrays:
        """Read the committed file."""
        return load_digits()


def load_digits8_split() -> Digits8Split:
    """The digits-8 reference split (BENCHMARKS.md) of the committed digits."""
    features, labels = load_digits()
    return split_digits8(features, labels)
