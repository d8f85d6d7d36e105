"""Centralized FedAvg over the exact digits-8 split reaches the reference accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from agentmesh.core.learning import digits8
from agentmesh.edge.trainer import make_trainer
from agentmesh.tools.data import load_digits8_split


def _weighted_mean(models: list[list[np.ndarray]], rows: list[int]) -> list[np.ndarray]:
    # A local helper for this check only; the real rules live in core/aggregation.
    total = sum(rows)
    return [
        (
            sum(model[i].astype(np.float64) * n for model, n in zip(models, rows, strict=True))
            / total
        ).astype(np.float32)
        for i in range(len(models[0]))
    ]


def centralized_fedavg(runtime: str) -> list[float]:
    """Held-out accuracy after each of the 20 reference rounds."""
    split = load_digits8_split()
    trainer = make_trainer("digits_mlp", runtime=runtime)
    global_weights = digits8.initial_mlp_weights()
    accuracies = []
    for round_number in range(digits8.ROUNDS):
        models, rows = [], []
        for agent, (features, labels) in enumerate(split.agents):
            trainer.set_weights(global_weights)
            trainer.train(
                features,
                labels,
                epochs=digits8.LOCAL_EPOCHS,
                batch_size=digits8.BATCH_SIZE,
                learning_rate=digits8.LEARNING_RATE,
                rng=np.random.default_rng([round_number, agent]),
            )
            models.append(trainer.get_weights())
            rows.append(len(labels))
        global_weights = _weighted_mean(models, rows)
        trainer.set_weights(global_weights)
        accuracies.append(trainer.evaluate(*split.test).accuracy)
    return accuracies


@pytest.mark.parametrize("runtime", ["numpy", "litert"])
def test_centralized_fedavg_reaches_reference_accuracy(runtime: str) -> None:
    accuracies = centralized_fedavg(runtime)
    print(f"{runtime}: accuracy after 20 rounds {accuracies[-1]:.4f}; per round {accuracies}")
    assert accuracies[-1] >= 0.95
    assert accuracies[0] < accuracies[-1]
