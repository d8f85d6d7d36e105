"""The last-resort trainer: the digits MLP (dense -> ReLU -> dense) in float32 numpy.

Same maths as the exported `digits_mlp.tflite` train signature: batch-mean
softmax cross-entropy, ReLU gradient masked by pre-activation > 0, plain SGD.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from agentmesh.edge.models.specs import DIGITS_MLP, ModelSpec
from agentmesh.edge.trainer.base import TrainerBase, TrainerError


class NumpyMLPTrainer(TrainerBase):
    """A one-hidden-layer MLP trained by SGD in numpy."""

    runtime = "numpy"

    def __init__(self, spec: ModelSpec = DIGITS_MLP) -> None:
        shapes = spec.param_shapes
        if len(shapes) != 4 or len(spec.input_shape) != 1 or shapes[0][0] != spec.input_shape[0]:
            raise TrainerError(f"{spec.name} is not a one-hidden-layer MLP")
        self.model = spec.name
        self.input_shape = spec.input_shape
        self.classes = spec.classes
        self.param_shapes = shapes
        self._params = self.check_weights(spec.initial_weights())

    def get_weights(self) -> list[np.ndarray]:
        """Copies of W1, b1, W2, b2."""
        return [param.copy() for param in self._params]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Replace W1, b1, W2, b2."""
        self._params = self.check_weights(weights)

    def _logits(self, features: np.ndarray) -> np.ndarray:
        w1, b1, w2, b2 = self._params
        hidden = np.maximum(features @ w1 + b1, np.float32(0))
        return np.asarray(hidden @ w2 + b2)

    def _step(self, features: np.ndarray, labels: np.ndarray, learning_rate: np.float32) -> float:
        w1, b1, w2, b2 = self._params
        batch = features.shape[0]
        pre = features @ w1 + b1
        hidden = np.maximum(pre, np.float32(0))
        logits = hidden @ w2 + b2
        shifted = logits - logits.max(axis=1, keepdims=True)
        exp = np.exp(shifted)
        norm = exp.sum(axis=1, keepdims=True)
        picked = np.arange(batch)
        loss = float(np.mean(np.log(norm[:, 0]) - shifted[picked, labels]))
        # d(mean CE)/d logits = (softmax - one_hot) / batch
        grad_logits = exp / norm
        grad_logits[picked, labels] -= np.float32(1)
        grad_logits /= np.float32(batch)
        grad_hidden = (grad_logits @ w2.T) * (pre > 0)
        grads = (
            features.T @ grad_hidden,
            grad_hidden.sum(axis=0),
            hidden.T @ grad_logits,
            grad_logits.sum(axis=0),
        )
        for param, grad in zip(self._params, grads, strict=True):
            param -= learning_rate * grad.astype(np.float32, copy=False)
        return loss
