"""Golden and malformed CBOR vectors: both codecs give the RFC's bytes and the same errors."""

from __future__ import annotations

import ast
import json
import math
import struct
from pathlib import Path
from typing import Any

import cbor2
import pytest

from agentmesh.core.wire import cbor, cbor_pure, errors

VECTORS = Path(__file__).resolve().parents[1] / "vectors"
GOLDEN = json.loads((VECTORS / "cbor_golden.json").read_text(encoding="utf-8"))["vectors"]
MALFORMED = json.loads((VECTORS / "cbor_malformed.json").read_text(encoding="utf-8"))


def build(description: Any) -> Any:
    """The value a vector describes (same rules as tests/vectors/generate.py)."""
    if isinstance(description, dict):
        ((kind, payload),) = description.items()
        if kind == "float":
            return struct.unpack(">d", bytes.fromhex(payload))[0]
        if kind == "bytes":
            return bytes.fromhex(payload)
        return {build(k): build(v) for k, v in payload}
    if isinstance(description, list):
        return [build(item) for item in description]
    return description


def same(a: Any, b: Any) -> bool:
    """Equality that matches NaN with NaN and tells -0.0 from 0.0 and 1 from True."""
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or struct.pack(">d", a) == struct.pack(">d", b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def test_vector_files_cover_the_brief() -> None:
    names = {vector["name"] for vector in GOLDEN}
    assert len(GOLDEN) >= 50
    assert sum(vector["source"] == "RFC 8949 Appendix A" for vector in GOLDEN) >= 50
    assert {"envelope gossip", "tensor float32 3x4"} <= names
    reasons = {case["reason"] for case in MALFORMED["decode"]}
    assert {
        "truncated",
        "trailing",
        "indefinite",
        "non_shortest",
        "unsorted_keys",
        "duplicate_key",
        "mixed_key_types",
        "string_too_large",
        "too_deep",
        "invalid_utf8",
        "reserved_info",
        "break",
    } <= reasons


@pytest.mark.parametrize("vector", GOLDEN, ids=[v["name"] for v in GOLDEN])
def test_golden_vector_both_codecs(vector: dict[str, Any]) -> None:
    value = build(vector["value"])
    expected = bytes.fromhex(vector["hex"])
    assert cbor_pure.encode(value) == expected
    assert cbor.encode(value) == expected
    assert cbor2.dumps(value, canonical=True) == expected  # the reference agrees too
    assert same(cbor_pure.decode(expected), value)
    assert same(cbor.decode(expected), value)


@pytest.mark.parametrize("case", MALFORMED["decode"], ids=[c["name"] for c in MALFORMED["decode"]])
def test_malformed_input_typed_error(case: dict[str, str]) -> None:
    data = bytes.fromhex(case["hex"])
    expected = getattr(errors, case["error"])
    for decode in (cbor.decode, cbor.decode_pure):
        with pytest.raises(expected) as caught:
            decode(data)
        assert caught.value.reason == case["reason"]
        assert str(caught.value)  # the message says what is wrong
    with pytest.raises(cbor_pure.CBORDecodeError) as raw:
        cbor_pure.decode(data)
    assert raw.value.reason == case["reason"]


@pytest.mark.parametrize("case", MALFORMED["encode"], ids=[c["name"] for c in MALFORMED["encode"]])
def test_encode_rejection(case: dict[str, Any]) -> None:
    value = build(case["value"])
    for encode in (cbor.encode, cbor.encode_pure):
        with pytest.raises(errors.EncodeError) as caught:
            encode(value)
        assert caught.value.reason == case["reason"]


@pytest.mark.parametrize(
    ("value", "reason"),
    [({1, 2}, "unsupported_type"), ("\ud800", "invalid_text"), (object(), "unsupported_type")],
)
def test_encode_rejects_values_json_cannot_describe(value: object, reason: str) -> None:
    for encode in (cbor.encode, cbor.encode_pure):
        with pytest.raises(errors.EncodeError) as caught:
            encode(value)
        assert caught.value.reason == reason


def test_encode_rejects_cycles_with_a_typed_error() -> None:
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(errors.EncodeError) as caught:
        cbor.encode(cycle)
    assert caught.value.reason == "too_deep"


def test_length_first_and_bytewise_orders_differ_only_across_major_types() -> None:
    # The reason mixed-type maps are outside the profile (DESIGN.md, wire format).
    mixed = {256: 1, "a": 2}
    assert cbor2.dumps(mixed, canonical=True).hex() == "a261610219010001"  # length-first
    bytewise = bytes.fromhex("a2190100016161" + "02")
    with pytest.raises(errors.MixedKeyTypes):
        cbor.decode(bytewise)


def test_pure_codec_imports_only_struct_and_sys() -> None:
    source = Path(cbor_pure.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
    assert imported == {"struct", "sys"}
