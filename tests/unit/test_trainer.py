"""Trainers: LiteRT running the committed models, the numpy fallback, the factory."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from agentmesh.core.learning import digits8
from agentmesh.edge.models import UnknownModelError
from agentmesh.edge.trainer import (
    RuntimeUnavailableError,
    Trainer,
    TrainerError,
    available_runtimes,
    make_trainer,
)
from agentmesh.tools.data import load_digits8_split

REPO = Path(__file__).resolve().parents[2]
SPLIT = load_digits8_split()


def _agent(k: int) -> tuple[np.ndarray, np.ndarray]:
    return SPLIT.agents[k].features, SPLIT.agents[k].labels


def test_factory_prefers_litert_and_reports_it() -> None:
    assert available_runtimes()[0] == "litert"
    assert available_runtimes()[-1] == "numpy"
    trainer = make_trainer()
    assert isinstance(trainer, Trainer)
    assert (trainer.runtime, trainer.model) == ("litert", "digits_mlp")
    assert make_trainer(runtime="numpy").runtime == "numpy"
    assert "numpy" not in available_runtimes("digits_cnn")


def test_factory_refuses_what_cannot_run() -> None:
    with pytest.raises(UnknownModelError):
        make_trainer("resnet50")
    with pytest.raises(RuntimeUnavailableError, match="unknown runtime"):
        make_trainer(runtime="onnx")
    with pytest.raises(RuntimeUnavailableError, match="numpy runs only"):
        make_trainer("digits_cnn", runtime="numpy")


def test_tflite_runtime_fallback_uses_the_same_code_path() -> None:
    if "tflite-runtime" not in available_runtimes():
        pytest.skip(
            "tflite-runtime is not installed (its wheels need numpy<2); "
            "to test the fallback: pip install tflite-runtime 'numpy<2' in a separate venv"
        )
    trainer = make_trainer(runtime="tflite-runtime")
    features, labels = _agent(0)
    result = trainer.train(features, labels, rng=np.random.default_rng(0))
    reference = make_trainer(runtime="litert")
    assert result.mean_loss == pytest.approx(
        reference.train(features, labels, rng=np.random.default_rng(0)).mean_loss, rel=1e-5
    )


@pytest.mark.parametrize("runtime", ["litert", "numpy"])
def test_fresh_trainer_holds_the_reference_initial_weights(runtime: str) -> None:
    weights = make_trainer(runtime=runtime).get_weights()
    for got, expected in zip(weights, digits8.initial_mlp_weights(), strict=True):
        assert got.dtype == np.float32
        assert np.array_equal(got, expected)


def test_numpy_and_litert_agree_on_the_same_batch_sequence() -> None:
    litert, numpy_trainer = make_trainer(runtime="litert"), make_trainer(runtime="numpy")
    start = [w + np.float32(0.01) for w in digits8.initial_mlp_weights()]
    litert.set_weights(start)
    numpy_trainer.set_weights(start)
    features, labels = _agent(4)
    results = [
        t.train(
            features,
            labels,
            epochs=3,
            batch_size=32,
            learning_rate=0.5,
            rng=np.random.default_rng(9),
        )
        for t in (litert, numpy_trainer)
    ]
    assert results[0].steps == results[1].steps == 27  # 3 x ceil(265 / 32)
    assert results[0].mean_loss == pytest.approx(results[1].mean_loss, rel=1e-5)
    for a, b in zip(litert.get_weights(), numpy_trainer.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=2e-5)
    test_x, test_y = SPLIT.test
    np.testing.assert_allclose(litert.infer(test_x), numpy_trainer.infer(test_x), atol=1e-4)
    assert (
        litert.evaluate(test_x, test_y).accuracy == numpy_trainer.evaluate(test_x, test_y).accuracy
    )


@pytest.mark.parametrize("runtime", ["litert", "numpy"])
def test_training_reduces_loss_and_counts_steps(runtime: str) -> None:
    trainer = make_trainer(runtime=runtime)
    features, labels = _agent(1)  # 119 rows -> 4 batches, the last one partial
    before = trainer.evaluate(features, labels)
    result = trainer.train(features, labels, epochs=2, rng=np.random.default_rng(3))
    after = trainer.evaluate(features, labels)
    assert (result.steps, result.examples, result.stopped_by) == (8, 238, "completed")
    assert result.duration_s > 0
    assert after.mean_loss < before.mean_loss
    assert after.accuracy > before.accuracy


def test_cnn_trains_on_litert_with_image_shaped_or_flat_rows() -> None:
    trainer = make_trainer("digits_cnn")
    assert trainer.runtime == "litert"
    features, labels = _agent(5)
    before = trainer.evaluate(features, labels).mean_loss
    trainer.train(
        features.reshape(-1, 8, 8, 1),
        labels,
        epochs=2,
        learning_rate=0.1,
        rng=np.random.default_rng(0),
    )
    assert trainer.evaluate(features, labels).mean_loss < before
    assert trainer.infer(features[:3]).shape == (3, 10)


def test_step_budget_and_deadline_stop_training() -> None:
    trainer = make_trainer(runtime="numpy")
    features, labels = _agent(7)
    budget = trainer.train(features, labels, epochs=5, step_budget=3)
    assert (budget.steps, budget.stopped_by) == (3, "step_budget")
    calls: list[int] = []

    def deadline_passed() -> bool:
        calls.append(1)
        return len(calls) > 2

    late = trainer.train(features, labels, epochs=5, deadline_passed=deadline_passed)
    assert (late.steps, late.stopped_by) == (2, "deadline")
    nothing = trainer.train(features, labels, step_budget=0)
    assert nothing.steps == 0 and np.isnan(nothing.mean_loss)


def test_no_shuffle_generator_means_file_order() -> None:
    a, b = make_trainer(runtime="numpy"), make_trainer(runtime="numpy")
    features, labels = _agent(0)
    a.train(features, labels)
    b.train(features, labels, rng=np.random.default_rng(5))
    c = make_trainer(runtime="numpy")
    c.train(features, labels)
    assert np.array_equal(a.get_weights()[0], c.get_weights()[0])
    assert not np.array_equal(a.get_weights()[0], b.get_weights()[0])


@pytest.mark.parametrize("runtime", ["litert", "numpy"])
def test_bad_weights_are_refused_and_the_trainer_still_works(runtime: str) -> None:
    trainer = make_trainer(runtime=runtime)
    good = trainer.get_weights()
    bad_shape = [good[0][:10], *good[1:]]
    with_nan = [good[0], good[1], np.full_like(good[2], np.nan), good[3]]
    for bad in (bad_shape, with_nan, good[:3], [w.astype(np.int32) for w in good]):
        with pytest.raises(TrainerError):
            trainer.set_weights(bad)
    for got, expected in zip(trainer.get_weights(), good, strict=True):
        assert np.array_equal(got, expected)
    trainer.get_weights()[0][:] = 0  # a copy: the model is untouched
    assert np.array_equal(trainer.get_weights()[0], good[0])


@pytest.mark.parametrize(
    ("features", "labels", "kwargs", "message"),
    [
        (np.zeros((4, 63)), np.zeros(4, np.int64), {}, "rows of shape"),
        (np.zeros((4, 64)), np.zeros(3, np.int64), {}, "integer labels"),
        (np.zeros((4, 64)), np.array([0, 1, 2, 10]), {}, "outside"),
        (np.full((4, 64), np.inf), np.zeros(4, np.int64), {}, "infinity"),
        (np.zeros((4, 64)), np.zeros(4, np.int64), {"batch_size": 0}, "schedule"),
        (np.zeros((4, 64)), np.zeros(4, np.int64), {"learning_rate": float("nan")}, "finite"),
    ],
)
def test_bad_training_input_is_a_typed_error(
    features: np.ndarray, labels: np.ndarray, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(TrainerError, match=message):
        make_trainer().train(features, labels, **kwargs)  # type: ignore[arg-type]


def test_evaluate_and_infer_on_no_rows() -> None:
    trainer = make_trainer()
    assert trainer.infer(np.zeros((0, 64), np.float32)).shape == (0, 10)
    assert trainer.evaluate(np.zeros((0, 64)), np.zeros(0, np.int64)).examples == 0


def test_edge_never_imports_tensorflow() -> None:
    pattern = re.compile(r"^\s*(import|from)\s+tensorflow\b", re.MULTILINE)
    offenders = [p for p in (REPO / "edge").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders
    code = (
        "import sys; sys.modules['tensorflow'] = None\n"
        "import numpy as np\n"
        "from agentmesh.edge.trainer import make_trainer\n"
        "t = make_trainer()\n"
        "r = t.train(np.zeros((8, 64), np.float32), np.arange(8) % 10)\n"
        "print(t.runtime, r.steps, 'tensorflow' in sys.modules and sys.modules['tensorflow'])\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["litert", "1", "None"]
