"""What each exportable model is: name, input shape, parameter shapes and initial weights.

Pure numpy, so tests and trainers can read it without TensorFlow.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agentmesh.core.learning import digits8

CNN_FILTERS = 8
CNN_KERNEL = 3


@dataclass(frozen=True)
class ModelSpec:
    """A model's input shape (without the batch axis), classes and named parameter shapes."""

    name: str
    input_shape: tuple[int, ...]
    classes: int
    param_names: tuple[str, ...]
    param_shapes: tuple[tuple[int, ...], ...]

    def initial_weights(self, seed: int = digits8.SEED) -> list[np.ndarray]:
        """Seeded initial weights in parameter order (float32)."""
        if self.name == "digits_mlp":
            return digits8.initial_mlp_weights(seed)
        return _he_normal(self.param_shapes, seed)

    @property
    def param_count(self) -> int:
        """Number of floats over all parameters."""
        return sum(math.prod(shape) for shape in self.param_shapes)


def _he_normal(shapes: tuple[tuple[int, ...], ...], seed: int) -> list[np.ndarray]:
    # Kernels (rank >= 2) get N(0, 2/fan_in) with fan_in = product of all but the last axis.
    g = np.random.default_rng(seed)
    weights = []
    for shape in shapes:
        if len(shape) >= 2:
            fan_in = math.prod(shape[:-1])
            weights.append(g.normal(0.0, math.sqrt(2 / fan_in), shape).astype(np.float32))
        else:
            weights.append(np.zeros(shape, np.float32))
    return weights


# Parameter names carry their index so that a signature's (name-sorted) outputs
# come back in parameter order.
DIGITS_MLP = ModelSpec(
    name="digits_mlp",
    input_shape=(digits8.FEATURES,),
    classes=digits8.CLASSES,
    param_names=("p0_w1", "p1_b1", "p2_w2", "p3_b2"),
    param_shapes=digits8.MLP_SHAPES,
)

DIGITS_CNN = ModelSpec(
    name="digits_cnn",
    input_shape=(8, 8, 1),
    classes=digits8.CLASSES,
    param_names=("p0_conv_w", "p1_conv_b", "p2_dense_w", "p3_dense_b"),
    param_shapes=(
        (CNN_KERNEL, CNN_KERNEL, 1, CNN_FILTERS),
        (CNN_FILTERS,),
        (8 * 8 * CNN_FILTERS, digits8.CLASSES),
        (digits8.CLASSES,),
    ),
)

MODEL_SPECS: dict[str, ModelSpec] = {spec.name: spec for spec in (DIGITS_MLP, DIGITS_CNN)}
