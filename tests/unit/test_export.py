"""Committed .tflite models: builtin ops only, small, four signatures, equal to a fresh export."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter

from agentmesh.edge.models import MODEL_SPECS, model_bytes, model_file

MODELS = sorted(MODEL_SPECS)
SIGNATURES = {"train", "infer", "get_weights", "set_weights"}


def _operator_names(flatbuffer: bytes) -> set[str]:
    model = schema.Model.GetRootAs(flatbuffer, 0)
    names = {value: key for key, value in vars(schema.BuiltinOperator).items() if key.isupper()}
    found = set()
    for index in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(index)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        found.add(f"CUSTOM:{custom.decode()}" if custom else names[builtin])
    return found


def _signature_layout(interpreter: Any) -> dict[str, Any]:
    layout = {}
    for key in interpreter.get_signature_list():
        runner = interpreter.get_signature_runner(key)
        layout[key] = {
            direction: {
                name: (detail["shape_signature"].tolist(), np.dtype(detail["dtype"]).name)
                for name, detail in details.items()
            }
            for direction, details in (
                ("inputs", runner.get_input_details()),
                ("outputs", runner.get_output_details()),
            )
        }
    return layout


def _random_weights(name: str, seed: int) -> list[np.ndarray]:
    g = np.random.default_rng(seed)
    return [g.normal(0, 0.3, shape).astype(np.float32) for shape in MODEL_SPECS[name].param_shapes]


def _exercise(flatbuffer: bytes, name: str) -> dict[str, Any]:
    """Infer, one train step and the weights after it, from fixed weights and inputs."""
    interpreter = Interpreter(model_content=flatbuffer)
    spec = MODEL_SPECS[name]
    interpreter.get_signature_runner("set_weights")(
        **dict(zip(spec.param_names, _random_weights(name, 1), strict=True))
    )
    g = np.random.default_rng(2)
    x = g.normal(size=(16, *spec.input_shape)).astype(np.float32)
    y = (np.arange(16) % spec.classes).astype(np.int32)
    logits = interpreter.get_signature_runner("infer")(x=x)["logits"]
    loss = interpreter.get_signature_runner("train")(x=x, y=y, learning_rate=np.float32(0.1))
    weights = interpreter.get_signature_runner("get_weights")()
    return {"logits": logits, "loss": float(loss["loss"]), "weights": weights}


@pytest.mark.parametrize("name", MODELS)
def test_committed_model_uses_builtin_ops_only(name: str) -> None:
    ops = _operator_names(model_bytes(name))
    assert not [op for op in ops if op.startswith("CUSTOM")], ops
    assert {"ASSIGN_VARIABLE", "READ_VARIABLE", "SOFTMAX"} <= ops


@pytest.mark.parametrize("name", MODELS)
def test_committed_model_is_small_and_has_the_four_signatures(name: str) -> None:
    assert len(model_bytes(name)) < 64 * 1024
    interpreter = Interpreter(model_content=model_bytes(name))
    layout = _signature_layout(interpreter)
    spec = MODEL_SPECS[name]
    assert set(layout) == SIGNATURES
    x_shape = [-1, *spec.input_shape]
    assert layout["train"]["inputs"] == {
        "x": (x_shape, "float32"),
        "y": ([-1], "int32"),
        "learning_rate": ([], "float32"),
    }
    assert layout["train"]["outputs"] == {"loss": ([], "float32")}
    assert layout["infer"]["outputs"] == {"logits": ([-1, spec.classes], "float32")}
    params = {
        n: (list(s), "float32") for n, s in zip(spec.param_names, spec.param_shapes, strict=True)
    }
    assert layout["get_weights"]["outputs"] == params
    assert layout["set_weights"]["inputs"] == params


@pytest.mark.parametrize("name", MODELS)
def test_committed_model_starts_from_the_seeded_weights(name: str) -> None:
    interpreter = Interpreter(model_content=model_bytes(name))
    got = interpreter.get_signature_runner("get_weights")()
    spec = MODEL_SPECS[name]
    for param, expected in zip(spec.param_names, spec.initial_weights(), strict=True):
        assert np.array_equal(got[param], expected)


def _numpy_cnn_logits(weights: list[np.ndarray], x: np.ndarray) -> np.ndarray:
    conv_w, conv_b, dense_w, dense_b = (w.astype(np.float64) for w in weights)
    padded = np.pad(x[..., 0], ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((x.shape[0], 8, 8, conv_w.shape[3]))
    for i in range(3):
        for j in range(3):
            conv += padded[:, i : i + 8, j : j + 8, None] * conv_w[i, j, 0]
    hidden = np.maximum(conv + conv_b, 0)
    return np.asarray(hidden.reshape(x.shape[0], -1) @ dense_w + dense_b)


def test_committed_cnn_computes_a_same_padded_convolution() -> None:
    result = _exercise(model_bytes("digits_cnn"), "digits_cnn")
    g = np.random.default_rng(2)
    x = g.normal(size=(16, 8, 8, 1)).astype(np.float32)
    expected = _numpy_cnn_logits(_random_weights("digits_cnn", 1), x)
    np.testing.assert_allclose(result["logits"], expected, rtol=1e-4, atol=1e-4)


@pytest.fixture(scope="module")
def fresh_exports(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip(
        "tensorflow",
        reason="TensorFlow (the optional `export` extra) is not installed: "
        "pip install -e '.[export]' to compare against a fresh export",
    )
    from agentmesh.tools.export.__main__ import main

    out = tmp_path_factory.mktemp("export")
    assert main(["--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", MODELS)
def test_committed_model_matches_a_fresh_export(fresh_exports: Path, name: str) -> None:
    fresh = (fresh_exports / model_file(name)).read_bytes()
    committed = model_bytes(name)
    assert _signature_layout(Interpreter(model_content=fresh)) == _signature_layout(
        Interpreter(model_content=committed)
    )
    assert _operator_names(fresh) == _operator_names(committed)
    a, b = _exercise(fresh, name), _exercise(committed, name)
    np.testing.assert_allclose(a["logits"], b["logits"], rtol=1e-6, atol=1e-6)
    assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
    for param in MODEL_SPECS[name].param_names:
        np.testing.assert_allclose(a["weights"][param], b["weights"][param], atol=1e-6)
