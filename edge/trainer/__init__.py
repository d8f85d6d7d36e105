"""Local training on the device: LiteRT, tflite-runtime or numpy behind one interface.

    from agentmesh.edge.trainer import make_trainer
    trainer = make_trainer("digits_mlp")          # best runtime available
    trainer.runtime                               # "litert" | "tflite-runtime" | "numpy"

Nothing here imports TensorFlow.
"""

from agentmesh.edge.trainer.base import (
    DeadlineCheck,
    EvalResult,
    StopReason,
    Trainer,
    TrainerError,
    TrainResult,
)
from agentmesh.edge.trainer.factory import (
    RUNTIMES,
    RuntimeUnavailableError,
    available_runtimes,
    make_trainer,
)

__all__ = [
    "RUNTIMES",
    "DeadlineCheck",
    "EvalResult",
    "RuntimeUnavailableError",
    "StopReason",
    "TrainResult",
    "Trainer",
    "TrainerError",
    "available_runtimes",
    "make_trainer",
]
