"""Pick the best trainer runtime available here: LiteRT, then tflite-runtime, then numpy."""

from __future__ import annotations

import importlib
from typing import Any

from agentmesh.edge.models import MODEL_SPECS, UnknownModelError, model_bytes
from agentmesh.edge.trainer.base import Trainer, TrainerError
from agentmesh.edge.trainer.numpy_mlp import NumpyMLPTrainer
from agentmesh.edge.trainer.tflite import SignatureTrainer

RUNTIMES = ("litert", "tflite-runtime", "numpy")
_INTERPRETER_MODULES = {
    "litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}
NUMPY_MODELS = ("digits_mlp",)


class RuntimeUnavailableError(TrainerError):
    """The requested runtime cannot run here (not installed, or cannot run this model)."""


def interpreter_class(runtime: str) -> Any:
    """The Interpreter class of `runtime`; RuntimeUnavailableError if it does not import."""
    try:
        module = importlib.import_module(_INTERPRETER_MODULES[runtime])
    except (ImportError, OSError) as error:  # OSError: a shared library failed to load
        raise RuntimeUnavailableError(f"{runtime} is not usable here: {error}") from error
    return module.Interpreter


def available_runtimes(model: str = "digits_mlp") -> list[str]:
    """Runtimes that can train `model` here, best first."""
    found = []
    for runtime in _INTERPRETER_MODULES:
        try:
            interpreter_class(runtime)
        except RuntimeUnavailableError:
            continue
        found.append(runtime)
    if model in NUMPY_MODELS:
        found.append("numpy")
    return found


def make_trainer(model: str = "digits_mlp", runtime: str | None = None) -> Trainer:
    """A trainer for `model` on `runtime` (default: the best available); see `.runtime`."""
    if model not in MODEL_SPECS:
        raise UnknownModelError(f"no model {model!r}; known: {sorted(MODEL_SPECS)}")
    if runtime is not None and runtime not in RUNTIMES:
        raise RuntimeUnavailableError(f"unknown runtime {runtime!r}; known: {RUNTIMES}")
    choices = [runtime] if runtime is not None else available_runtimes(model)
    for choice in choices:
        if choice == "numpy":
            if model not in NUMPY_MODELS:
                raise RuntimeUnavailableError(f"numpy runs only {NUMPY_MODELS}, not {model!r}")
            return NumpyMLPTrainer(MODEL_SPECS[model])
        return SignatureTrainer(
            interpreter_class(choice), model_bytes(model), model=model, runtime=choice
        )
    raise RuntimeUnavailableError(f"no runtime here can train {model!r}")
