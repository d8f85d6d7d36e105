"""Committed trainable .tflite models (signatures train/infer/get_weights/set_weights).

Exported by `python -m agentmesh.tools.export` (needs TensorFlow); read here
without it. `MODEL_SPECS` says what each file holds.
"""

from __future__ import annotations

from importlib import resources

from agentmesh.edge.models.specs import DIGITS_CNN, DIGITS_MLP, MODEL_SPECS, ModelSpec

__all__ = ["DIGITS_CNN", "DIGITS_MLP", "MODEL_SPECS", "ModelSpec", "model_bytes", "model_file"]


class UnknownModelError(KeyError):
    """No committed model has this name."""


def model_file(name: str) -> str:
    """File name of the committed model `name` (e.g. `digits_mlp.tflite`)."""
    if name not in MODEL_SPECS:
        raise UnknownModelError(f"no model {name!r}; known: {sorted(MODEL_SPECS)}")
    return f"{name}.tflite"


def model_bytes(name: str) -> bytes:
    """The flatbuffer of the committed model `name`."""
    return resources.files(__package__).joinpath(model_file(name)).read_bytes()
