"""TensorFlow modules with train / infer / get_weights / set_weights signatures.

Only TFLite builtin ops may appear after conversion (the pip interpreters have no
Flex ops): ReLU carries a custom gradient (TF's ReluGrad has no builtin), the loss
is `tf.nn.softmax_cross_entropy_with_logits`, and the weights are resource
variables read and written by the get_weights / set_weights signatures instead
of save/restore checkpoints.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from agentmesh.edge.models.specs import ModelSpec

Tensor = Any  # tf.Tensor has no usable static type


@tf.custom_gradient  # type: ignore[untyped-decorator]
def relu(x: Tensor) -> tuple[Tensor, Any]:
    """ReLU whose gradient is a multiply by a mask (builtin ops only)."""

    def grad(upstream: Tensor) -> Tensor:
        return upstream * tf.cast(x > 0.0, tf.float32)

    return tf.nn.relu(x), grad


def mlp_logits(params: list[tf.Variable], x: Tensor) -> Tensor:
    """Dense -> ReLU -> dense."""
    w1, b1, w2, b2 = params
    return tf.matmul(relu(tf.matmul(x, w1) + b1), w2) + b2


def image_patches(x: Tensor, kernel: int) -> Tensor:
    """[B, H, W, 1] -> [B, H, W, kernel*kernel]: zero-padded ("SAME") neighbourhoods.

    Built from pad, slices and concat so the convolution's weight gradient is a
    matmul; TF's Conv2DBackpropFilter has no TFLite builtin.
    """
    height, width = int(x.shape[1]), int(x.shape[2])
    half = kernel // 2
    padded = tf.pad(x, [[0, 0], [half, half], [half, half], [0, 0]])
    shifted = [
        padded[:, i : i + height, j : j + width, :] for i in range(kernel) for j in range(kernel)
    ]
    return tf.concat(shifted, axis=3)


def cnn_logits(params: list[tf.Variable], x: Tensor) -> Tensor:
    """Conv 3x3 (SAME, one input channel) -> ReLU -> flatten -> dense."""
    conv_w, conv_b, dense_w, dense_b = params
    kernel, filters = int(conv_w.shape[0]), int(conv_w.shape[3])
    patches = image_patches(x, kernel)
    rows = tf.reshape(patches, [-1, kernel * kernel])
    # conv_w[i, j, 0, f] flattens row-major to row i*kernel + j, matching the patch order.
    conv = tf.matmul(rows, tf.reshape(conv_w, [kernel * kernel, filters])) + conv_b
    hidden = relu(conv)
    flat = tf.reshape(hidden, [-1, int(dense_w.shape[0])])
    return tf.matmul(flat, dense_w) + dense_b


LOGITS = {"digits_mlp": mlp_logits, "digits_cnn": cnn_logits}


class TrainableModel(tf.Module):  # type: ignore[misc]
    """A classifier whose variables are trained by plain SGD in the `train` signature."""

    def __init__(self, spec: ModelSpec, weights: list[np.ndarray]) -> None:
        super().__init__(name=spec.name)
        self.spec = spec
        self.params = [
            tf.Variable(value, name=name, dtype=tf.float32)
            for name, value in zip(spec.param_names, weights, strict=True)
        ]
        self._logits = LOGITS[spec.name]
        x_spec = tf.TensorSpec([None, *spec.input_shape], tf.float32, name="x")
        y_spec = tf.TensorSpec([None], tf.int32, name="y")
        lr_spec = tf.TensorSpec([], tf.float32, name="learning_rate")
        weight_specs = [
            tf.TensorSpec(shape, tf.float32, name=name)
            for name, shape in zip(spec.param_names, spec.param_shapes, strict=True)
        ]
        self.train = tf.function(self._train, input_signature=[x_spec, y_spec, lr_spec])
        self.infer = tf.function(self._infer, input_signature=[x_spec])
        self.get_weights = tf.function(self._get_weights, input_signature=[])
        self.set_weights = tf.function(self._set_weights, input_signature=weight_specs)

    def _train(self, x: Tensor, y: Tensor, learning_rate: Tensor) -> dict[str, Tensor]:
        with tf.GradientTape() as tape:
            logits = self._logits(self.params, x)
            labels = tf.one_hot(y, self.spec.classes, dtype=tf.float32)
            losses = tf.nn.softmax_cross_entropy_with_logits(labels=labels, logits=logits)
            loss = tf.reduce_mean(losses)
        grads = tape.gradient(loss, self.params)
        for param, grad in zip(self.params, grads, strict=True):
            param.assign_sub(learning_rate * grad)
        return {"loss": loss}

    def _infer(self, x: Tensor) -> dict[str, Tensor]:
        return {"logits": self._logits(self.params, x)}

    def _get_weights(self) -> dict[str, Tensor]:
        return {
            name: tf.identity(param)
            for name, param in zip(self.spec.param_names, self.params, strict=True)
        }

    def _set_weights(self, *values: Tensor) -> dict[str, Tensor]:
        for param, value in zip(self.params, values, strict=True):
            param.assign(value)
        # A signature needs an output; report how many floats were written.
        return {"count": tf.constant(self.spec.param_count, tf.int32)}

    def signatures(self) -> dict[str, Any]:
        """Concrete functions keyed by signature name."""
        return {
            "train": self.train.get_concrete_function(),
            "infer": self.infer.get_concrete_function(),
            "get_weights": self.get_weights.get_concrete_function(),
            "set_weights": self.set_weights.get_concrete_function(),
        }
