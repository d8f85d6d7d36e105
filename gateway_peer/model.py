"""Small dense MLPs for devices: packing to float32 bytes, and the numpy reference forward."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from agentmesh.gateway_peer.limits import GatewayLimits


class ModelError(ValueError):
    """Layer sizes or arrays that do not make a model a device can hold."""


def param_count(layers: Sequence[int]) -> int:
    """Weights plus biases of a dense MLP with these layer widths."""
    return sum(n_in * n_out + n_out for n_in, n_out in itertools.pairwise(layers))


@dataclass(frozen=True, slots=True)
class MlpModel:
    """A dense MLP as the device holds it: widths and little-endian float32 parameters.

    Parameter order is W1 (in, out) row-major, b1, W2, b2, ... (the digits-8 order of
    BENCHMARKS.md). Hidden layers use ReLU; the output layer is linear (logits).
    """

    model_id: int
    layers: tuple[int, ...]
    data: bytes
    sha256: bytes

    @classmethod
    def from_arrays(
        cls,
        model_id: int,
        arrays: Sequence[np.ndarray],
        limits: GatewayLimits,
    ) -> MlpModel:
        """Pack [W1, b1, W2, b2, ...] (W as (in, out)) after checking shapes and bounds."""
        if len(arrays) < 2 or len(arrays) % 2:
            raise ModelError("expected [W1, b1, W2, b2, ...]")
        layers = [int(arrays[0].shape[0])] if arrays[0].ndim == 2 else []
        for weight, bias in zip(arrays[::2], arrays[1::2], strict=True):
            if (
                weight.ndim != 2
                or bias.shape != (weight.shape[1],)
                or weight.shape[0] != layers[-1]
            ):
                raise ModelError("weight/bias shapes do not chain")
            layers.append(int(weight.shape[1]))
        check_layers(layers, limits)
        if not 0 < model_id < 2**32:
            raise ModelError("model_id must be in 1..2**32-1")
        data = b"".join(np.ascontiguousarray(a, dtype="<f4").tobytes() for a in arrays)
        return cls(model_id, tuple(layers), data, hashlib.sha256(data).digest())

    def arrays(self) -> list[np.ndarray]:
        """[W1, b1, W2, b2, ...] as float32 arrays."""
        flat = np.frombuffer(self.data, dtype="<f4")
        out: list[np.ndarray] = []
        offset = 0
        for n_in, n_out in itertools.pairwise(self.layers):
            out.append(flat[offset : offset + n_in * n_out].reshape(n_in, n_out))
            offset += n_in * n_out
            out.append(flat[offset : offset + n_out])
            offset += n_out
        return out

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """The reference forward pass in float32 (what the firmware must reproduce)."""
        activation = np.asarray(inputs, dtype=np.float32)
        arrays = self.arrays()
        last = len(arrays) // 2 - 1
        for index in range(last + 1):
            weight, bias = arrays[2 * index], arrays[2 * index + 1]
            activation = activation @ weight + bias
            if index < last:
                activation = np.maximum(activation, np.float32(0))
        return activation.astype(np.float32)


def check_layers(layers: Sequence[int], limits: GatewayLimits) -> None:
    if not 2 <= len(layers) <= limits.layers_max:
        raise ModelError(f"a model has 2..{limits.layers_max} layer widths")
    if not all(0 < width <= limits.layer_width_max for width in layers):
        raise ModelError(f"layer widths are 1..{limits.layer_width_max}")
    if param_count(layers) > limits.params_max:
        raise ModelError(f"{param_count(layers)} parameters exceed {limits.params_max}")
