"""The trainer interface, its results, and the training loop every runtime shares.

Both runtimes run the same loop, so for the same data, weights and shuffle
generator they see the same batch sequence (mini-batch SGD, batch-mean loss).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol, runtime_checkable

import numpy as np

EVAL_CHUNK_ROWS = 512

StopReason = Literal["completed", "step_budget", "deadline"]
# Returns True once the host's wall-clock deadline has passed (checked before each step).
DeadlineCheck = Callable[[], bool]


class TrainerError(ValueError):
    """Inputs or weights a trainer cannot use (wrong shape, dtype, non-finite values)."""


@dataclass(frozen=True)
class TrainResult:
    """What one call to `train` did."""

    steps: int
    examples: int
    mean_loss: float  # example-weighted mean of the batch losses; NaN if no step ran
    duration_s: float
    stopped_by: StopReason


@dataclass(frozen=True)
class EvalResult:
    """Accuracy (fraction) and mean cross-entropy over the evaluated rows."""

    accuracy: float
    mean_loss: float
    examples: int


@runtime_checkable
class Trainer(Protocol):
    """A model an agent can load weights into, train, evaluate and run."""

    runtime: str
    model: str

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the parameters, in parameter order (float32)."""
        ...

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Replace all parameters; raises TrainerError on a shape or value mismatch."""
        ...

    def train(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        learning_rate: float = 0.5,
        step_budget: int | None = None,
        deadline_passed: DeadlineCheck | None = None,
        rng: np.random.Generator | None = None,
    ) -> TrainResult:
        """Plain SGD; rows shuffled per epoch by `rng` (file order if None)."""
        ...

    def evaluate(self, features: np.ndarray, labels: np.ndarray) -> EvalResult:
        """Accuracy and mean loss on these rows."""
        ...

    def infer(self, features: np.ndarray) -> np.ndarray:
        """Logits, one row per input row."""
        ...


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy of integer labels under softmax(logits), float64."""
    shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(shifted).sum(axis=1))
    return np.asarray(log_norm - shifted[np.arange(len(labels)), labels])


class TrainerBase(ABC):
    """Input checks, the shared training loop and evaluation; runtimes add the maths."""

    runtime: str
    model: str
    input_shape: tuple[int, ...]
    classes: int
    param_shapes: tuple[tuple[int, ...], ...]

    @abstractmethod
    def _step(self, features: np.ndarray, labels: np.ndarray, learning_rate: np.float32) -> float:
        """One SGD step on one batch (float32 rows in input shape, int32 labels)."""

    @abstractmethod
    def _logits(self, features: np.ndarray) -> np.ndarray:
        """Logits for float32 rows in input shape."""

    def check_weights(self, weights: Sequence[np.ndarray]) -> list[np.ndarray]:
        """float32 copies of `weights` if they fit this model; TrainerError otherwise."""
        if len(weights) != len(self.param_shapes):
            raise TrainerError(f"{len(weights)} arrays for {len(self.param_shapes)} parameters")
        checked = []
        for index, (value, shape) in enumerate(zip(weights, self.param_shapes, strict=True)):
            array = np.asarray(value)
            if array.shape != shape:
                raise TrainerError(f"parameter {index} has shape {array.shape}, expected {shape}")
            if not np.issubdtype(array.dtype, np.floating):
                raise TrainerError(f"parameter {index} has dtype {array.dtype}, expected float")
            array = array.astype(np.float32)
            if not np.all(np.isfinite(array)):
                raise TrainerError(f"parameter {index} holds NaN or infinity")
            checked.append(array)
        return checked

    def _rows(self, features: np.ndarray) -> np.ndarray:
        array = np.asarray(features)
        if array.ndim < 2 or math.prod(array.shape[1:]) != math.prod(self.input_shape):
            raise TrainerError(f"rows of shape {array.shape[1:]} for input {self.input_shape}")
        if not np.issubdtype(array.dtype, np.number):
            raise TrainerError(f"features must be numeric, got {array.dtype}")
        rows = np.ascontiguousarray(array, dtype=np.float32).reshape(-1, *self.input_shape)
        if not np.all(np.isfinite(rows)):
            raise TrainerError("features hold NaN or infinity")
        return rows

    def _labels(self, labels: np.ndarray, rows: int) -> np.ndarray:
        array = np.asarray(labels)
        if array.shape != (rows,) or not np.issubdtype(array.dtype, np.integer):
            raise TrainerError(f"need {rows} integer labels, got {array.dtype} {array.shape}")
        if rows and (int(array.min()) < 0 or int(array.max()) >= self.classes):
            raise TrainerError(f"labels outside 0..{self.classes - 1}")
        return array.astype(np.int32)

    def train(
        self,
        features: np.ndarray,
        labels: np.ndarray,
        *,
        epochs: int = 1,
        batch_size: int = 32,
        learning_rate: float = 0.5,
        step_budget: int | None = None,
        deadline_passed: DeadlineCheck | None = None,
        rng: np.random.Generator | None = None,
    ) -> TrainResult:
        """Plain SGD over `epochs` passes; stops early on the step budget or the deadline."""
        if epochs < 0 or batch_size < 1 or (step_budget is not None and step_budget < 0):
            raise TrainerError(f"bad schedule: {epochs=} {batch_size=} {step_budget=}")
        if not math.isfinite(learning_rate):
            raise TrainerError(f"learning rate {learning_rate} is not finite")
        rows = self._rows(features)
        targets = self._labels(labels, rows.shape[0])
        rate = np.float32(learning_rate)
        started = time.perf_counter()
        steps, examples, loss_sum = 0, 0, 0.0
        stopped_by: StopReason = "completed"
        for _ in range(epochs):
            order = rng.permutation(rows.shape[0]) if rng is not None else None
            for begin in range(0, rows.shape[0], batch_size):
                if step_budget is not None and steps >= step_budget:
                    stopped_by = "step_budget"
                    break
                if deadline_passed is not None and deadline_passed():
                    stopped_by = "deadline"
                    break
                window = slice(begin, begin + batch_size)
                picked = order[window] if order is not None else window
                batch_y = targets[picked]
                loss_sum += self._step(rows[picked], batch_y, rate) * len(batch_y)
                steps += 1
                examples += len(batch_y)
            if stopped_by != "completed":
                break
        return TrainResult(
            steps=steps,
            examples=examples,
            mean_loss=loss_sum / examples if examples else math.nan,
            duration_s=time.perf_counter() - started,
            stopped_by=stopped_by,
        )

    def infer(self, features: np.ndarray) -> np.ndarray:
        """Logits, computed in chunks of EVAL_CHUNK_ROWS rows."""
        rows = self._rows(features)
        if rows.shape[0] == 0:
            return np.zeros((0, self.classes), np.float32)
        chunks = [
            self._logits(rows[begin : begin + EVAL_CHUNK_ROWS])
            for begin in range(0, rows.shape[0], EVAL_CHUNK_ROWS)
        ]
        return np.concatenate(chunks).astype(np.float32)

    def evaluate(self, features: np.ndarray, labels: np.ndarray) -> EvalResult:
        """Accuracy and mean softmax cross-entropy."""
        logits = self.infer(features)
        targets = self._labels(labels, logits.shape[0])
        if logits.shape[0] == 0:
            return EvalResult(accuracy=math.nan, mean_loss=math.nan, examples=0)
        losses = softmax_cross_entropy(logits, targets)
        accuracy = float(np.mean(logits.argmax(axis=1) == targets))
        return EvalResult(accuracy=accuracy, mean_loss=float(losses.mean()), examples=len(targets))
