"""Tensors on the wire: {"dtype", "shape", "data"} maps of raw little-endian bytes.

Never CBOR lists of floats: a 2,410-parameter model is 9,640 bytes of float32
here against ~22 KB as CBOR floats, and it decodes with one `numpy.frombuffer`.
The dtype names are numpy's; byte order is always little-endian.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agentmesh.core.limits import MIB
from agentmesh.core.wire.errors import TensorError

TENSOR_BYTES_MAX = 64 * MIB
TENSOR_NDIM_MAX = 8

DTYPES: dict[str, np.dtype[Any]] = {
    name: np.dtype(name).newbyteorder("<")
    for name in (
        "bool",
        "int8",
        "uint8",
        "int16",
        "uint16",
        "int32",
        "uint32",
        "int64",
        "uint64",
        "float16",
        "float32",
        "float64",
    )
}
_DTYPE_NAME_BY_KIND = {(dtype.kind, dtype.itemsize): name for name, dtype in DTYPES.items()}
_KEYS = frozenset(("dtype", "shape", "data"))


def tensor_from_numpy(
    array: np.ndarray[Any, Any], size_bytes_max: int = TENSOR_BYTES_MAX
) -> dict[str, Any]:
    """The wire map of `array` (copied to C order, little-endian)."""
    name = _DTYPE_NAME_BY_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if name is None:
        raise TensorError(f"dtype {array.dtype} is not one of {sorted(DTYPES)}")
    if array.ndim > TENSOR_NDIM_MAX:
        raise TensorError(f"{array.ndim} dimensions exceed the limit of {TENSOR_NDIM_MAX}")
    if array.nbytes > size_bytes_max:
        raise TensorError(f"tensor of {array.nbytes} bytes exceeds the limit of {size_bytes_max}")
    data = np.ascontiguousarray(array, dtype=DTYPES[name]).tobytes()
    return {"dtype": name, "shape": [int(n) for n in array.shape], "data": data}


def check_tensor(
    value: object, size_bytes_max: int = TENSOR_BYTES_MAX
) -> tuple[np.dtype[Any], tuple[int, ...], bytes]:
    """Validate a decoded tensor map; returns (dtype, shape, data) or raises TensorError."""
    if not isinstance(value, dict) or value.keys() != _KEYS:
        raise TensorError("tensor must be a map with exactly the keys dtype, shape, data")
    name, shape, data = value["dtype"], value["shape"], value["data"]
    dtype = DTYPES.get(name) if isinstance(name, str) else None
    if dtype is None:
        raise TensorError(f"dtype {name!r} is not one of {sorted(DTYPES)}")
    if not isinstance(shape, list) or len(shape) > TENSOR_NDIM_MAX:
        raise TensorError(f"shape must be a list of at most {TENSOR_NDIM_MAX} dimensions")
    count = 1
    for size in shape:
        # Each dimension is bounded on its own too: with a zero elsewhere the
        # byte count stays 0 while numpy would still reject a giant dimension.
        if type(size) is not int or not 0 <= size <= size_bytes_max:
            raise TensorError(f"shape {shape!r} holds something other than a size in [0, limit]")
        count *= size
    if not isinstance(data, bytes):
        raise TensorError("tensor data must be a byte string")
    if len(data) > size_bytes_max:
        raise TensorError(f"tensor of {len(data)} bytes exceeds the limit of {size_bytes_max}")
    if count * dtype.itemsize != len(data):
        raise TensorError(
            f"shape {shape} of {name} needs {count * dtype.itemsize} bytes, got {len(data)}"
        )
    if name == "bool" and data.translate(None, b"\x00\x01"):
        raise TensorError("bool tensor bytes must be 0 or 1")
    return dtype, tuple(shape), data


def tensor_to_numpy(value: object, size_bytes_max: int = TENSOR_BYTES_MAX) -> np.ndarray[Any, Any]:
    """A read-only numpy view of a validated tensor map (zero-copy over its bytes)."""
    dtype, shape, data = check_tensor(value, size_bytes_max)
    return np.frombuffer(data, dtype=dtype).reshape(shape)
