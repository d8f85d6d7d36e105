"""Convert a `TrainableModel` to a .tflite flatbuffer with builtin ops only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf

from agentmesh.edge.models.specs import ModelSpec
from agentmesh.tools.export.tf_models import TrainableModel

SIGNATURES = ("train", "infer", "get_weights", "set_weights")


def export_tflite(spec: ModelSpec, weights: list[np.ndarray] | None = None) -> bytes:
    """The model as TFLite bytes, variables initialised to `weights` (default: seeded)."""
    model = TrainableModel(spec, weights if weights is not None else spec.initial_weights())
    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / spec.name
        tf.saved_model.save(model, str(saved), signatures=model.signatures())
        converter = tf.lite.TFLiteConverter.from_saved_model(
            str(saved), signature_keys=list(SIGNATURES)
        )
        # Builtins only: conversion fails loudly instead of emitting Flex ops.
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        flatbuffer: bytes = converter.convert()
    return flatbuffer
