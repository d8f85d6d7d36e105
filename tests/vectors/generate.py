"""Regenerate cbor_golden.json and cbor_malformed.json (run by hand, then review the diff).

    python tests/vectors/generate.py

Value descriptions (shared with the MicroPython runner): JSON ints, strings,
lists, true/false/null stand for themselves; {"float": "<float64 bits, hex>"},
{"bytes": "<hex>"} and {"map": [[key, value], ...]} cover the rest.

RFC 8949 Appendix A vectors carry the hex printed in the RFC, typed in here and
checked against both codecs; agentmesh vectors are produced by the pure codec
and must agree with cbor2 before they are written.
"""

from __future__ import annotations

import json
import math
import struct
import sys
from pathlib import Path
from typing import Any

import cbor2
import numpy as np

from agentmesh.core.identity import Identity
from agentmesh.core.wire import cbor, cbor_pure, envelope, tensor

HERE = Path(__file__).resolve().parent


def describe(value: Any) -> Any:
    """The JSON description of a profile value."""
    if isinstance(value, float):
        return {"float": struct.pack(">d", value).hex()}
    if isinstance(value, bytes):
        return {"bytes": value.hex()}
    if isinstance(value, dict):
        return {"map": [[describe(k), describe(v)] for k, v in value.items()]}
    if isinstance(value, (list, tuple)):
        return [describe(item) for item in value]
    return value


def build(description: Any) -> Any:
    """Inverse of describe."""
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


NAN, INF = float("nan"), float("inf")

# (value, hex) exactly as printed in RFC 8949 Appendix A, Table 6, restricted to
# the items of the deterministic profile (no tags, simple values, indefinite
# lengths, bignums, or float forms that are not the shortest).
RFC_8949_APPENDIX_A: list[tuple[Any, str]] = [
    (0, "00"),
    (1, "01"),
    (10, "0a"),
    (23, "17"),
    (24, "1818"),
    (25, "1819"),
    (100, "1864"),
    (1000, "1903e8"),
    (1000000, "1a000f4240"),
    (1000000000000, "1b000000e8d4a51000"),
    (18446744073709551615, "1bffffffffffffffff"),
    (-18446744073709551616, "3bffffffffffffffff"),
    (-1, "20"),
    (-10, "29"),
    (-100, "3863"),
    (-1000, "3903e7"),
    (0.0, "f90000"),
    (-0.0, "f98000"),
    (1.0, "f93c00"),
    (1.1, "fb3ff199999999999a"),
    (1.5, "f93e00"),
    (65504.0, "f97bff"),
    (100000.0, "fa47c35000"),
    (3.4028234663852886e38, "fa7f7fffff"),
    (1.0e300, "fb7e37e43c8800759c"),
    (5.960464477539063e-8, "f90001"),
    (0.00006103515625, "f90400"),
    (-4.0, "f9c400"),
    (-4.1, "fbc010666666666666"),
    (INF, "f97c00"),
    (NAN, "f97e00"),
    (-INF, "f9fc00"),
    (False, "f4"),
    (True, "f5"),
    (None, "f6"),
    (b"", "40"),
    (bytes.fromhex("01020304"), "4401020304"),
    ("", "60"),
    ("a", "6161"),
    ("IETF", "6449455446"),
    ('"\\', "62225c"),
    ("\u00fc", "62c3bc"),
    ("\u6c34", "63e6b0b4"),
    ("\U00010151", "64f0908591"),
    ([], "80"),
    ([1, 2, 3], "83010203"),
    ([1, [2, 3], [4, 5]], "8301820203820405"),
    (list(range(1, 26)), "98190102030405060708090a0b0c0d0e0f101112131415161718181819"),
    ({}, "a0"),
    ({1: 2, 3: 4}, "a201020304"),
    ({"a": 1, "b": [2, 3]}, "a26161016162820203"),
    (["a", {"b": "c"}], "826161a161626163"),
    (
        {"a": "A", "b": "B", "c": "C", "d": "D", "e": "E"},
        "a56161614161626142616361436164614461656145",
    ),
]


def agentmesh_values() -> list[tuple[str, Any]]:
    """Boundaries and protocol shapes beyond the RFC table."""
    values: list[tuple[str, Any]] = [
        ("uint 255 (last 1-byte argument)", 255),
        ("uint 256", 256),
        ("uint 65535", 65535),
        ("uint 65536", 65536),
        ("uint 2**32-1", 2**32 - 1),
        ("uint 2**32", 2**32),
        ("nint -24 (last immediate)", -24),
        ("nint -25", -25),
        ("nint -256", -256),
        ("nint -257", -257),
        ("nint -2**32-1", -(2**32) - 1),
        ("float16 smallest normal negative", -0.00006103515625),
        ("float16 overflow 65520 -> float32", 65520.0),
        ("float32 smallest subnormal", struct.unpack(">f", bytes.fromhex("00000001"))[0]),
        ("float64 smallest subnormal", 5e-324),
        ("float64 largest", sys.float_info.max),
        ("float 1/3 needs float64", 1 / 3),
        ("float 0.5", 0.5),
        ("float 2**-24 * 3 (float16 subnormal)", 3 * 2.0**-24),
        ("float16 rounding would lose 1 + 2**-11", 1 + 2.0**-11),
        ("text 23 chars (immediate length)", "x" * 23),
        ("text 24 chars (1-byte length)", "x" * 24),
        ("bytes 256 (2-byte length)", bytes(range(256))),
        ("map uint keys, numeric order", {100: "c", 1: "a", 10: "b"}),
        ("map negative keys: bytewise = length-first", {-1: 1, -25: 2, -300: 3}),
        ("map byte-string keys", {b"\x02": 1, b"\x01\x00": 2, b"": 3}),
        ("map text keys: shorter first, then bytewise", {"bb": 1, "a": 2, "aaa": 3, "b": 4}),
        ("map text keys: 23 vs 24 chars", {"k" * 24: 1, "z" * 23: 2}),
        ("nested maps", {"outer": {"inner": {"leaf": [1, {"x": None}]}}}),
        ("array of mixed scalars", [0, -1, 1.5, "s", b"b", True, False, None]),
        ("deep array 16 levels", _nest(16)),
    ]
    array = np.arange(12, dtype=np.float32).reshape(3, 4) / 8
    values.append(("tensor float32 3x4", tensor.tensor_from_numpy(array)))
    values.append(("tensor int8 empty 0x5", tensor.tensor_from_numpy(np.zeros((0, 5), np.int8))))
    values.append(("tensor uint8 scalar", tensor.tensor_from_numpy(np.array(7, dtype=np.uint8))))
    signer = Identity.from_seed(bytes(range(32)))
    for name, type_name, position, body in (
        ("envelope ping", "ping", (1,), {"nonce": bytes(8)}),
        ("envelope ack", "ack", (2,), {"nonce": bytes(range(32))}),
        (
            "envelope gossip",
            "gossip",
            (7,),
            {"topic": "models", "payload": b"\x00" * 40, "hops": 2},
        ),
    ):
        wire = envelope.seal(signer, type_name, "mesh-golden", position, body)
        values.append((name, cbor.decode(wire)))
    return values


def _nest(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


def _check(value: Any, expected_hex: str | None) -> str:
    pure = cbor_pure.encode(value).hex()
    fast = cbor.encode(value).hex()
    reference = cbor2.dumps(value, canonical=True).hex()
    if expected_hex is not None and pure != expected_hex:
        raise SystemExit(f"pure codec gives {pure} for {value!r}, RFC says {expected_hex}")
    if not pure == fast == reference:
        raise SystemExit(f"codecs disagree on {value!r}: {pure} {fast} {reference}")
    return pure


def golden() -> list[dict[str, Any]]:
    vectors = []
    for value, expected in RFC_8949_APPENDIX_A:
        name = "rfc8949 " + (
            repr(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
        )
        vectors.append(
            {
                "name": name[:60],
                "source": "RFC 8949 Appendix A",
                "value": describe(value),
                "hex": _check(value, expected),
            }
        )
    for name, value in agentmesh_values():
        vectors.append(
            {
                "name": name,
                "source": "agentmesh",
                "value": describe(value),
                "hex": _check(value, None),
            }
        )
    return vectors


# hex -> (expected error class, reason code, what is wrong)
MALFORMED: list[tuple[str, str, str, str]] = [
    ("", "TruncatedInput", "truncated", "empty input"),
    ("18", "TruncatedInput", "truncated", "1-byte argument missing"),
    ("19ff", "TruncatedInput", "truncated", "2-byte argument cut"),
    ("1b00000000000001", "TruncatedInput", "truncated", "8-byte argument cut"),
    ("62c3", "TruncatedInput", "truncated", "text shorter than declared"),
    ("830102", "TruncatedInput", "truncated", "array with a missing element"),
    ("a2616101", "TruncatedInput", "truncated", "map with a missing pair"),
    ("a16161", "TruncatedInput", "truncated", "map key without value"),
    (
        "5b7fffffffffffffff00",
        "LimitExceeded",
        "string_too_large",
        "byte string declaring 2**63 bytes",
    ),
    ("5a00100001" + "00" * 4, "LimitExceeded", "string_too_large", "byte string just over 1 MiB"),
    (
        "5a000fffff00",
        "TruncatedInput",
        "truncated",
        "byte string declaring 1 MiB - 1, holding 1 byte",
    ),
    ("7a7fffffff61", "LimitExceeded", "string_too_large", "text declaring 2 GiB"),
    ("9b000000010000000001", "LimitExceeded", "too_many_items", "array declaring 2**32 elements"),
    ("99ffff01", "TruncatedInput", "truncated", "array declaring 65535 elements, holding 1"),
    ("b98000", "TruncatedInput", "truncated", "map declaring 32768 pairs, holding none"),
    ("81" * 17 + "00", "LimitExceeded", "too_deep", "17 nested arrays (limit 16)"),
    ("a16161" + "81" * 16 + "00", "LimitExceeded", "too_deep", "deep nesting under a map"),
    ("0000", "TrailingBytes", "trailing", "two items"),
    ("80ff", "TrailingBytes", "trailing", "array then a stray break"),
    ("f6f6", "TrailingBytes", "trailing", "null twice"),
    ("1800", "NonCanonical", "non_shortest", "0 with a 1-byte argument"),
    ("1817", "NonCanonical", "non_shortest", "23 with a 1-byte argument"),
    ("190018", "NonCanonical", "non_shortest", "24 with a 2-byte argument"),
    ("1a0000ffff", "NonCanonical", "non_shortest", "65535 with a 4-byte argument"),
    ("1b00000000ffffffff", "NonCanonical", "non_shortest", "2**32-1 with an 8-byte argument"),
    ("3800", "NonCanonical", "non_shortest", "-1 with a 1-byte argument"),
    ("5801ff", "NonCanonical", "non_shortest", "1-byte string with a 1-byte length"),
    ("780161", "NonCanonical", "non_shortest", "text length not shortest"),
    ("980100", "NonCanonical", "non_shortest", "array count not shortest"),
    ("b80100f6", "NonCanonical", "non_shortest", "map count not shortest"),
    ("fa3fc00000", "NonCanonical", "non_canonical_float", "1.5 as float32"),
    ("fb3ff8000000000000", "NonCanonical", "non_canonical_float", "1.5 as float64"),
    ("fb40f86a0000000000", "NonCanonical", "non_canonical_float", "100000.0 as float64"),
    ("fb0000000000000000", "NonCanonical", "non_canonical_float", "0.0 as float64"),
    ("fa7f800000", "NonCanonical", "non_canonical_float", "Infinity as float32 (RFC A)"),
    ("fb7ff0000000000000", "NonCanonical", "non_canonical_float", "Infinity as float64 (RFC A)"),
    ("fa7fc00000", "NonCanonical", "non_canonical_float", "NaN as float32 (RFC A)"),
    ("fb7ff8000000000000", "NonCanonical", "non_canonical_float", "NaN as float64 (RFC A)"),
    ("f97e01", "NonCanonical", "non_canonical_float", "NaN with a payload"),
    ("f9fe00", "NonCanonical", "non_canonical_float", "negative NaN"),
    ("5f42010243030405ff", "NonCanonical", "indefinite", "indefinite byte string (RFC A)"),
    ("7f657374726561646d696e67ff", "NonCanonical", "indefinite", "indefinite text (RFC A)"),
    ("9fff", "NonCanonical", "indefinite", "indefinite empty array (RFC A)"),
    ("9f018202039f0405ffff", "NonCanonical", "indefinite", "indefinite nested arrays (RFC A)"),
    ("bf61610161629f0203ffff", "NonCanonical", "indefinite", "indefinite map (RFC A)"),
    ("a2616201616102", "NonCanonical", "unsorted_keys", "text keys out of order"),
    ("a203040102", "NonCanonical", "unsorted_keys", "uint keys out of order"),
    ("a2626161016162", "NonCanonical", "unsorted_keys", "longer text key first"),
    ("a2616101616102", "DuplicateKey", "duplicate_key", "duplicate text key"),
    ("a201010102", "DuplicateKey", "duplicate_key", "duplicate uint key"),
    ("a20a016161f6", "MixedKeyTypes", "mixed_key_types", "uint and text keys"),
    ("a20a012002", "MixedKeyTypes", "mixed_key_types", "uint and negative keys (orders differ)"),
    (
        "a2190100016161f6",
        "MixedKeyTypes",
        "mixed_key_types",
        "orders differ: length-first vs bytewise",
    ),
    ("a1f401", "UnsupportedType", "bad_key_type", "false as a key"),
    ("a1800a", "UnsupportedType", "bad_key_type", "array as a key"),
    ("a1f93c0001", "UnsupportedType", "bad_key_type", "float as a key"),
    ("62c328", "InvalidUtf8", "invalid_utf8", "bad continuation byte"),
    ("62c080", "InvalidUtf8", "invalid_utf8", "overlong NUL"),
    ("63eda080", "InvalidUtf8", "invalid_utf8", "UTF-16 surrogate"),
    ("64f4900000", "InvalidUtf8", "invalid_utf8", "above U+10FFFF"),
    ("61ff", "InvalidUtf8", "invalid_utf8", "0xff byte"),
    ("1c", "Malformed", "reserved_info", "additional info 28"),
    ("3d", "Malformed", "reserved_info", "additional info 29"),
    ("5e", "Malformed", "reserved_info", "additional info 30"),
    ("fc", "Malformed", "reserved_info", "simple with additional info 28"),
    ("ff", "Malformed", "break", "break outside an indefinite item"),
    ("1f", "Malformed", "malformed", "indefinite unsigned int"),
    ("f818", "Malformed", "malformed", "two-byte simple value 24"),
    ("f7", "UnsupportedType", "unsupported_simple", "undefined (RFC A)"),
    ("f0", "UnsupportedType", "unsupported_simple", "simple(16) (RFC A)"),
    ("f8ff", "UnsupportedType", "unsupported_simple", "simple(255) (RFC A)"),
    ("c11a514b67b0", "UnsupportedType", "unsupported_tag", "tag 1 epoch date (RFC A)"),
    ("c249010000000000000000", "UnsupportedType", "unsupported_tag", "bignum 2**64 (RFC A)"),
    (
        "c349010000000000000000",
        "UnsupportedType",
        "unsupported_tag",
        "negative bignum -2**64-1 (RFC A)",
    ),
    (
        "d82076687474703a2f2f7777772e6578616d706c652e636f6d",
        "UnsupportedType",
        "unsupported_tag",
        "tag 32 URI (RFC A)",
    ),
    ("d81c01", "UnsupportedType", "unsupported_tag", "tag 28 shareable"),
    ("d9010283010203", "UnsupportedType", "unsupported_tag", "tag 258 set"),
]


def malformed() -> dict[str, list[dict[str, Any]]]:
    decode_cases = []
    for hex_input, error, reason, what in MALFORMED:
        data = bytes.fromhex(hex_input)
        for codec in (cbor.decode, cbor.decode_pure):
            try:
                codec(data)
            except cbor.DecodeError as got:
                if type(got).__name__ != error or got.reason != reason:
                    raise SystemExit(
                        f"{hex_input} ({what}): got {type(got).__name__}/{got.reason}"
                    ) from None
            else:
                raise SystemExit(f"{hex_input} ({what}) decoded without error")
        decode_cases.append({"name": what, "hex": hex_input, "error": error, "reason": reason})
    encode_cases = [
        ("mixed uint and text keys", {1: "a", "b": 2}, "mixed_key_types"),
        ("keys whose orders differ (256 vs 'a')", {256: 1, "a": None}, "mixed_key_types"),
        ("uint and negative keys", {10: 1, -1: 2}, "mixed_key_types"),
        ("bool key", {True: 1}, "bad_key_type"),
        ("float key", {1.5: 1}, "bad_key_type"),
        ("integer 2**64 needs a bignum", 2**64, "int_range"),
        ("integer -2**64-1 needs a bignum", -(2**64) - 1, "int_range"),
        ("set", {1, 2}, "unsupported_type"),
        ("lone surrogate in text", "\ud800", "invalid_text"),
    ]
    encode_vectors = []
    for name, value, reason in encode_cases:
        for codec in (cbor.encode, cbor.encode_pure):
            try:
                codec(value)
            except cbor.EncodeError as got:
                if got.reason != reason:
                    raise SystemExit(
                        f"encode {name}: reason {got.reason}, expected {reason}"
                    ) from None
            else:
                raise SystemExit(f"encode {name} did not fail")
        if isinstance(value, set) or (isinstance(value, str) and not value.isascii()):
            continue  # not describable in JSON; covered by unit tests
        encode_vectors.append(
            {"name": name, "value": describe(value), "error": "EncodeError", "reason": reason}
        )
    return {"decode": decode_cases, "encode": encode_vectors}


def main() -> None:
    vectors = golden()
    (HERE / "cbor_golden.json").write_text(
        json.dumps({"vectors": vectors}, indent=1, ensure_ascii=False) + "\n"
    )
    bad = malformed()
    (HERE / "cbor_malformed.json").write_text(json.dumps(bad, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{len(vectors)} golden vectors, {len(bad['decode'])} malformed inputs, "
        f"{len(bad['encode'])} encode rejections"
    )


if __name__ == "__main__":
    main()
