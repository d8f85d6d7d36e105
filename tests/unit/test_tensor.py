"""Tensors travel as raw little-endian bytes with dtype and shape, strictly validated."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from agentmesh.core.wire import DTYPES, TensorError, cbor, tensor_from_numpy, tensor_to_numpy
from agentmesh.core.wire.tensor import check_tensor


@settings(max_examples=150, deadline=None)
@given(
    hnp.arrays(
        dtype=st.sampled_from(sorted(DTYPES)),
        shape=hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5),
    )
)
def test_round_trip_through_cbor_is_bit_exact(array: np.ndarray[Any, Any]) -> None:
    wire = cbor.encode(tensor_from_numpy(array))
    back = tensor_to_numpy(cbor.decode(wire))
    assert back.dtype == array.dtype.newbyteorder("<")
    assert back.shape == array.shape
    assert back.tobytes() == np.ascontiguousarray(array, dtype=back.dtype).tobytes()


def test_bytes_are_little_endian_and_c_order() -> None:
    big_endian = np.array([[1, 2], [3, 4]], dtype=">i4").T  # Fortran-ordered view, big-endian
    wire = tensor_from_numpy(big_endian)
    assert wire["dtype"] == "int32" and wire["shape"] == [2, 2]
    assert wire["data"] == np.array([1, 3, 2, 4], dtype="<i4").tobytes()


def test_model_parameters_are_raw_bytes_not_float_lists() -> None:
    weights = np.zeros((64, 32), dtype=np.float32)
    encoded = cbor.encode(tensor_from_numpy(weights))
    assert len(encoded) < weights.nbytes + 64  # ~9 KB payload + a small header


def test_decoded_array_is_a_read_only_view() -> None:
    array = tensor_to_numpy(tensor_from_numpy(np.arange(4, dtype=np.float32)))
    with pytest.raises(ValueError):
        array[0] = 1.0


GOOD = {"dtype": "float32", "shape": [2, 2], "data": bytes(16)}


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"dtype": "object"}, "dtype"),
        ({"dtype": "complex64"}, "dtype"),
        ({"dtype": 5}, "dtype"),
        ({"shape": [2, 3]}, "needs 24 bytes"),
        ({"shape": [-1, 4]}, "shape"),
        ({"shape": [True, 16]}, "shape"),
        ({"shape": [1] * 9}, "dimensions"),
        ({"shape": "2x2"}, "shape"),
        ({"data": "0" * 16}, "byte string"),
        ({"extra": 1}, "exactly the keys"),
        ({"shape": [0, 2**40]}, "shape"),
    ],
)
def test_invalid_tensor_maps_are_rejected(change: dict[str, Any], fragment: str) -> None:
    value = {**GOOD, **change}
    with pytest.raises(TensorError, match=fragment):
        check_tensor(value)


def test_size_limit_applies_to_both_directions() -> None:
    with pytest.raises(TensorError, match="exceeds"):
        check_tensor(GOOD, size_bytes_max=8)
    with pytest.raises(TensorError, match="exceeds"):
        tensor_from_numpy(np.zeros(4, np.float32), size_bytes_max=8)


def test_bool_tensor_bytes_must_be_zero_or_one() -> None:
    with pytest.raises(TensorError, match="0 or 1"):
        check_tensor({"dtype": "bool", "shape": [2], "data": b"\x01\x02"})
    assert tensor_to_numpy({"dtype": "bool", "shape": [2], "data": b"\x01\x00"}).tolist() == [
        True,
        False,
    ]


def test_unsupported_numpy_dtype_is_rejected() -> None:
    with pytest.raises(TensorError, match="dtype"):
        tensor_from_numpy(np.zeros(2, dtype=np.complex64))
