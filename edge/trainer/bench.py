"""`agent bench trainer`: per-step time of each runtime, RSS after one step, digits-8 accuracy.

Cases: one per runtime and model (step time on the digits-8 agents' batches,
`ratio_to_numpy` where numpy runs the same model), `rss-after-one-step-<runtime>`
measured in a fresh process, and `digits8-fedavg-centralized-<runtime>` (20
rounds of weighted FedAvg over the reference split).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

import numpy as np

from agentmesh.core.learning import digits8
from agentmesh.edge.trainer.base import TrainerBase
from agentmesh.edge.trainer.factory import available_runtimes, make_trainer
from agentmesh.tools.bench._report import BenchReport, BenchResult
from agentmesh.tools.data import load_digits8_split

# Run in a fresh interpreter so that the figure is what an agent process holds.
_RSS_PROBE = """
import json, sys
import numpy as np
import psutil
from agentmesh.edge.trainer import make_trainer
trainer = make_trainer("digits_mlp", runtime=sys.argv[1])
rows = np.zeros((32, 64), np.float32)
trainer.train(rows, np.arange(32) % 10, step_budget=1)
figures = {"rss_mb": psutil.Process().memory_info().rss / 2**20}
# VmHWM (Linux) is this process's own peak; ru_maxrss would carry the parent's over exec.
try:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                figures["rss_mb_peak"] = int(line.split()[1]) / 1024
except OSError:
    pass
print(json.dumps(figures))
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `agent bench trainer`."""
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per case")
    parser.add_argument("--rounds", type=int, default=digits8.ROUNDS, help="FedAvg rounds")


def _step_times_ms(trainer: TrainerBase, steps: int) -> np.ndarray:
    split = load_digits8_split()
    rows = np.concatenate([agent.features for agent in split.agents])
    labels = np.concatenate([agent.labels for agent in split.agents]).astype(np.int32)
    rows = rows.reshape(-1, *trainer.input_shape)
    order = np.random.default_rng(0).permutation(len(labels))
    batches = [order[i : i + digits8.BATCH_SIZE] for i in range(0, len(order) - 31, 32)]
    rate = np.float32(0.05)
    for picked in batches[:20]:  # warm-up: allocation, delegate set-up
        trainer._step(rows[picked], labels[picked], rate)
    times = np.empty(steps)
    for index in range(steps):
        picked = batches[index % len(batches)]
        x, y = rows[picked], labels[picked]
        started = time.perf_counter()
        trainer._step(x, y, rate)
        times[index] = time.perf_counter() - started
    return times * 1e3


def _step_case(model: str, runtime: str, steps: int) -> BenchResult:
    trainer = make_trainer(model, runtime=runtime)
    assert isinstance(trainer, TrainerBase)
    times = _step_times_ms(trainer, steps)
    return BenchResult(
        case=f"{model}-{runtime}",
        params={"model": model, "runtime": runtime, "batch_size": 32, "steps": steps},
        metrics={
            "step_p50_ms": float(np.percentile(times, 50)),
            "step_p99_ms": float(np.percentile(times, 99)),
            "steps_per_s": float(1e3 / times.mean()),
        },
    )


def _rss_case(runtime: str) -> BenchResult:
    probe = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE, runtime], capture_output=True, text=True, check=True
    )
    figures = json.loads(probe.stdout.strip().splitlines()[-1])
    return BenchResult(
        case=f"rss-after-one-step-{runtime}",
        params={"model": "digits_mlp", "runtime": runtime, "process": "fresh python"},
        metrics={key: round(float(value), 1) for key, value in figures.items()},
    )


def _weighted_mean(models: list[list[np.ndarray]], sizes: list[int]) -> list[np.ndarray]:
    # Weighted FedAvg for this measurement only; the real rules live in core/aggregation.
    weights = np.asarray(sizes, np.float64) / sum(sizes)
    return [
        np.tensordot(weights, np.stack([m[i] for m in models]), axes=1).astype(np.float32)
        for i in range(len(models[0]))
    ]


def _fedavg_case(runtime: str, rounds: int) -> BenchResult:
    split = load_digits8_split()
    trainer = make_trainer("digits_mlp", runtime=runtime)
    global_weights = digits8.initial_mlp_weights()
    started = time.perf_counter()
    training_s = 0.0
    for round_number in range(rounds):
        models, sizes = [], []
        for agent, (features, labels) in enumerate(split.agents):
            trainer.set_weights(global_weights)
            result = trainer.train(
                features,
                labels,
                epochs=digits8.LOCAL_EPOCHS,
                batch_size=digits8.BATCH_SIZE,
                learning_rate=digits8.LEARNING_RATE,
                rng=np.random.default_rng([round_number, agent]),
            )
            training_s += result.duration_s
            models.append(trainer.get_weights())
            sizes.append(len(labels))
        global_weights = _weighted_mean(models, sizes)
    trainer.set_weights(global_weights)
    evaluation = trainer.evaluate(*split.test)
    return BenchResult(
        case=f"digits8-fedavg-centralized-{runtime}",
        params={
            "runtime": runtime,
            "rounds": rounds,
            "agents": digits8.AGENTS,
            "shuffle": "rng([round, agent])",
        },
        metrics={
            "accuracy": evaluation.accuracy,
            "test_loss": evaluation.mean_loss,
            "training_s": training_s,
            "wall_s": time.perf_counter() - started,
        },
    )


def run(args: argparse.Namespace) -> BenchReport:
    """Measure every runtime available here."""
    report = BenchReport(bench="trainer")
    runtimes = available_runtimes("digits_mlp")
    steps: dict[str, BenchResult] = {}
    for runtime in runtimes:
        steps[runtime] = _step_case("digits_mlp", runtime, args.steps)
    for runtime in runtimes:
        if runtime != "numpy" and "numpy" in steps:
            ratio = steps[runtime].metrics["step_p50_ms"] / steps["numpy"].metrics["step_p50_ms"]
            steps[runtime].metrics["ratio_to_digits_mlp-numpy"] = ratio
        report.results.append(steps[runtime])
    for runtime in available_runtimes("digits_cnn"):
        report.results.append(_step_case("digits_cnn", runtime, args.steps))
    for runtime in runtimes:
        report.results.append(_rss_case(runtime))
    for runtime in runtimes:
        report.results.append(_fedavg_case(runtime, args.rounds))
    missing = sorted(set(("litert", "tflite-runtime", "numpy")) - set(runtimes))
    if missing:
        report.notes.append(f"runtimes not available here: {', '.join(missing)}")
    report.notes.append("step times exclude input checks; rss measured in a fresh process")
    return report
