"""Train a .tflite model through its signatures (train / infer / get_weights / set_weights).

One code path for LiteRT (`ai_edge_litert.interpreter`) and the older
`tflite_runtime.interpreter`; only the Interpreter class differs. The model's
input shape, classes and parameter order are read from its signatures:
get_weights outputs are named with their parameter index (`p0_…`, `p1_…`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agentmesh.edge.trainer.base import TrainerBase, TrainerError

REQUIRED_SIGNATURES = ("train", "infer", "get_weights", "set_weights")


class SignatureTrainer(TrainerBase):
    """A trainable .tflite model run by a TFLite interpreter."""

    def __init__(
        self,
        interpreter_class: Any,
        model_content: bytes,
        *,
        model: str,
        runtime: str,
        num_threads: int = 1,
    ) -> None:
        self.model = model
        self.runtime = runtime
        self._interpreter = interpreter_class(model_content=model_content, num_threads=num_threads)
        available = self._interpreter.get_signature_list()
        missing = [name for name in REQUIRED_SIGNATURES if name not in available]
        if missing:
            raise TrainerError(f"model {model!r} lacks signatures {missing}")
        self._train_runner = self._interpreter.get_signature_runner("train")
        self._infer_runner = self._interpreter.get_signature_runner("infer")
        self._get_runner = self._interpreter.get_signature_runner("get_weights")
        self._set_runner = self._interpreter.get_signature_runner("set_weights")
        x_shape = self._train_runner.get_input_details()["x"]["shape_signature"]
        self.input_shape = tuple(int(d) for d in x_shape[1:])
        logits_shape = self._infer_runner.get_output_details()["logits"]["shape_signature"]
        self.classes = int(logits_shape[-1])
        self._param_names = sorted(available["get_weights"]["outputs"], key=_param_index)
        current = self._get_runner()
        self.param_shapes = tuple(tuple(current[name].shape) for name in self._param_names)

    def get_weights(self) -> list[np.ndarray]:
        """Copies of the model's variables, in parameter order."""
        values = self._get_runner()
        return [np.array(values[name], dtype=np.float32) for name in self._param_names]

    def set_weights(self, weights: Sequence[np.ndarray]) -> None:
        """Assign all variables through the set_weights signature."""
        checked = self.check_weights(weights)
        self._set_runner(**dict(zip(self._param_names, checked, strict=True)))

    def _step(self, features: np.ndarray, labels: np.ndarray, learning_rate: np.float32) -> float:
        result = self._train_runner(x=features, y=labels, learning_rate=learning_rate)
        return float(result["loss"])

    def _logits(self, features: np.ndarray) -> np.ndarray:
        return np.asarray(self._infer_runner(x=features)["logits"])


def _param_index(name: str) -> int:
    # "p12_dense_w" -> 12; names without the prefix are a bad export.
    head = name.split("_", 1)[0]
    if not (head.startswith("p") and head[1:].isdigit()):
        raise TrainerError(f"get_weights output {name!r} lacks a parameter index prefix")
    return int(head[1:])
