"""Committed data sets and their loaders (no scikit-learn needed at run time)."""

from agentmesh.tools.data.digits import (
    DIGITS_CLASSES,
    DIGITS_FEATURES,
    DIGITS_ROWS,
    DigitsSource,
    load_digits,
    load_digits8_split,
)

__all__ = [
    "DIGITS_CLASSES",
    "DIGITS_FEATURES",
    "DIGITS_ROWS",
    "DigitsSource",
    "load_digits",
    "load_digits8_split",
]
