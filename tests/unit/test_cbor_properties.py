"""Round trips, codec agreement, bounds and fuzzing of the CBOR codecs."""

from __future__ import annotations

import json
import math
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agentmesh.core.limits import DecodeLimits
from agentmesh.core.wire import cbor, cbor_pure, errors

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
GOLDEN_HEX = [
    bytes.fromhex(v["hex"])
    for v in json.loads((VECTORS / "cbor_golden.json").read_text(encoding="utf-8"))["vectors"]
]

scalars = (
    st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=40)
    | st.binary(max_size=40)
    | st.booleans()
    | st.none()
)
single_type_maps = (
    st.dictionaries(st.text(max_size=30), st.deferred(lambda: values), max_size=5)
    | st.dictionaries(st.integers(0, 2**64 - 1), st.deferred(lambda: values), max_size=5)
    | st.dictionaries(st.integers(-(2**64), -1), st.deferred(lambda: values), max_size=5)
    | st.dictionaries(st.binary(max_size=30), st.deferred(lambda: values), max_size=5)
)
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.text(max_size=12), children, max_size=5)
        | st.dictionaries(st.integers(0, 1000), children, max_size=5)
    ),
    max_leaves=25,
)

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(values)
def test_round_trip_and_identical_bytes(value: Any) -> None:
    encoded = cbor_pure.encode(value)
    assert cbor.encode(value) == encoded
    assert cbor_pure.decode(encoded) == value
    assert cbor.decode(encoded) == value
    assert cbor_pure.encode(cbor.decode(encoded)) == encoded


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(single_type_maps)
def test_every_single_type_key_map_agrees(value: dict[Any, Any]) -> None:
    assert cbor.encode(value) == cbor_pure.encode(value)
    assert cbor.decode(cbor_pure.encode(value)) == value


@settings(max_examples=1000, deadline=None)
@given(st.floats(allow_nan=True, allow_infinity=True))
def test_float_width_is_the_shortest_exact_one(x: float) -> None:
    encoded = cbor_pure.encode(x)
    assert cbor.encode(x) == encoded
    decoded = cbor.decode(encoded)
    if math.isnan(x):
        assert encoded == b"\xf9\x7e\x00" and math.isnan(decoded)
        return
    assert struct.pack(">d", decoded) == struct.pack(">d", x)
    widths = {b"\xf9": 2, b"\xfa": 4, b"\xfb": 8}
    fmt = {2: ">e", 4: ">f", 8: ">d"}
    width = widths[encoded[:1]]
    for narrower in (w for w in (2, 4) if w < width):
        try:
            packed = struct.pack(fmt[narrower], x)
        except OverflowError:
            continue
        assert struct.unpack(fmt[narrower], packed)[0] != x, "a narrower float was exact"


def _only_typed_errors(data: bytes) -> None:
    outcomes = []
    for decode in (cbor.decode, cbor.decode_pure):
        try:
            outcomes.append(("ok", cbor_pure.encode(decode(data))))
        except errors.DecodeError as error:
            outcomes.append((type(error).__name__, error.reason))
    assert outcomes[0] == outcomes[1]  # both codecs agree, error for error
    if outcomes[0][0] == "ok":
        assert outcomes[0][1] == data  # anything accepted is exactly canonical


@settings(max_examples=600, deadline=None)
@given(st.binary(max_size=64))
def test_fuzz_random_bytes_raise_only_typed_errors(data: bytes) -> None:
    _only_typed_errors(data)


@settings(max_examples=600, deadline=None)
@given(st.sampled_from(GOLDEN_HEX), st.data())
def test_fuzz_mutated_valid_encodings(valid: bytes, data: st.DataObject) -> None:
    mutated = bytearray(valid)
    for _ in range(data.draw(st.integers(1, 3))):
        action = data.draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        index = data.draw(st.integers(0, max(len(mutated) - 1, 0)))
        if action == "flip" and mutated:
            mutated[index] ^= 1 << data.draw(st.integers(0, 7))
        elif action == "insert":
            mutated.insert(index, data.draw(st.integers(0, 255)))
        elif action == "delete" and mutated:
            del mutated[index]
        else:
            del mutated[index:]
    _only_typed_errors(bytes(mutated))


def test_fast_path_decodes_valid_input_without_the_pure_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fallback(data: bytes, limits: object = None) -> Any:
        raise AssertionError(f"fell back to the pure decoder for {data.hex()}")

    monkeypatch.setattr(cbor, "decode_pure", fallback)
    for data in GOLDEN_HEX:
        cbor.decode(data)


@pytest.mark.parametrize(
    ("limits", "data", "reason"),
    [
        (DecodeLimits(size_bytes_max=3), b"\x44abcd", "too_large"),
        (DecodeLimits(depth_max=2), b"\x81\x81\x81\x00", "too_deep"),
        (DecodeLimits(items_max=3), b"\x82\x82\x01\x02\x01", "too_many_items"),
        (DecodeLimits(items_max=1), b"\xa2\x61a\x01\x61b\x02", "too_many_items"),
        (DecodeLimits(string_bytes_max=3), b"\x64abcd", "string_too_large"),
        (DecodeLimits(string_bytes_max=3), b"\xa1\x44abcd\x01", "string_too_large"),
    ],
)
def test_custom_limits(limits: DecodeLimits, data: bytes, reason: str) -> None:
    for decode in (cbor.decode, cbor.decode_pure):
        with pytest.raises(errors.LimitExceeded) as caught:
            decode(data, limits)
        assert caught.value.reason == reason


def test_limits_at_the_bound_are_accepted() -> None:
    limits = DecodeLimits(depth_max=3, items_max=3, string_bytes_max=4)
    for data in (b"\x81\x81\x81\x00", b"\x83\x01\x02\x03", b"\x44abcd"):
        assert cbor.decode(data, limits) == cbor.decode_pure(data, limits)


def test_forged_huge_lengths_allocate_nothing() -> None:
    forged = [
        bytes.fromhex("5a000fffff") + b"x",  # 1 MiB - 1 byte string, 1 byte present
        bytes.fromhex("9a0000ffff") + b"\x01",
        bytes.fromhex("5b7fffffffffffffff"),
    ]
    tracemalloc.start()
    try:
        for data in forged:
            with pytest.raises(errors.DecodeError):
                cbor.decode(data)
            with pytest.raises(errors.DecodeError):
                cbor.decode_pure(data)
        _, peak_bytes = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak_bytes < 256 * 1024


def test_decode_accepts_bytearray_and_memoryview_and_rejects_other_types() -> None:
    assert cbor.decode(bytearray(b"\x01")) == 1
    assert cbor.decode(memoryview(b"\x82\x01\x02")) == [1, 2]
    with pytest.raises(errors.Malformed):
        cbor.decode("01")  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None)
@given(
    st.binary(max_size=12)
    | st.text(max_size=8).map(lambda text: text.encode("utf-8", "surrogatepass"))
)
def test_micropython_utf8_validator_matches_cpython(raw: bytes) -> None:
    # MicroPython's own decoder accepts overlongs and surrogates, so cbor_pure
    # validates by hand there; it must agree with CPython's strict decoder.
    try:
        raw.decode("utf-8")
        valid = True
    except UnicodeDecodeError:
        valid = False
    assert cbor_pure._utf8_valid(raw) is valid
