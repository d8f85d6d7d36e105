"""Deterministic CBOR (RFC 8949) in pure Python, for CPython and MicroPython alike.

This one file is copied verbatim into the firmware: it imports only `struct` and
`sys` and nothing from agentmesh. It implements the *agentmesh profile* of CBOR:

- Encoding is the core deterministic encoding of RFC 8949 §4.2.1: definite
  lengths, shortest argument ("head") for every integer, length and count,
  floats in the shortest of float16/32/64 that keeps the value exactly
  (§4.2.2 preferred serialization), map keys sorted bytewise by their encoded
  form.
- Data model: unsigned and negative integers in [-2**64, 2**64 - 1], byte
  strings, text strings, arrays, maps, floats, true/false/null. No tags (so no
  bignums, dates or sets), no `undefined`, no other simple values.
- Map keys are integers, byte strings or text strings, and all keys of one map
  share one major type. With single-type keys the bytewise order of §4.2.1
  equals the length-first order of RFC 7049 §3.9 (the head encodes the
  length), so cbor2's `canonical=True` produces the same bytes.
- NaN has one encoding, f9 7e00 (payload and sign are not kept); +-inf are
  f9 7c00 / f9 fc00; -0.0 keeps its sign (f9 8000).

The decoder is strict and bounded: it accepts exactly the bytes this encoder
produces and raises CBORDecodeError (with a `.reason` code) for anything else,
including non-shortest heads, non-shortest floats, other NaN encodings,
indefinite lengths, unsorted or duplicate or mixed-type keys, bad UTF-8 and
trailing bytes. Size, nesting depth, item count and string size are bounded
before anything is allocated.

On boards whose MicroPython build uses single-precision floats, float64 values
cannot be represented; numeric payloads travel as tensors (raw bytes) instead.
"""

import struct
import sys

SIZE_BYTES_MAX = 1048576
DEPTH_MAX = 16
ITEMS_MAX = 65536
STRING_BYTES_MAX = 1048576
ENCODE_DEPTH_MAX = 64

_UINT_LIMIT = 18446744073709551616  # 2**64
_MICROPYTHON = sys.implementation.name == "micropython"

_NAN_BYTES = b"\xf9\x7e\x00"
_TRUE, _FALSE, _NULL = b"\xf5", b"\xf4", b"\xf6"
_FLOAT_FORMATS = {25: (">e", 2), 26: (">f", 4), 27: (">d", 8)}


class CBORError(ValueError):
    """Base of the codec errors; `.reason` is a stable short code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class CBOREncodeError(CBORError):
    """The value is outside the agentmesh CBOR profile."""


class CBORDecodeError(CBORError):
    """The bytes are not a well-formed, canonical, in-bounds item."""


# ---------------------------------------------------------------- encoding


def _head(major: int, n: int) -> bytes:
    """Initial byte + shortest argument (RFC 8949 §3 and §4.2.1)."""
    mt = major << 5
    if n < 24:
        return bytes((mt | n,))
    if n < 0x100:
        return bytes((mt | 24, n))
    if n < 0x10000:
        return struct.pack(">BH", mt | 25, n)
    if n < 0x100000000:
        return struct.pack(">BI", mt | 26, n)
    return struct.pack(">BQ", mt | 27, n)


def encode_float(x: float) -> bytes:
    """Shortest of float16/32/64 that round-trips `x` exactly (RFC 8949 §4.2.2)."""
    if x != x:
        return _NAN_BYTES
    # MicroPython's struct turns overflow into inf/NaN instead of raising, so
    # the round-trip comparison (not the exception) is what decides the width.
    for fmt, initial in ((">e", b"\xf9"), (">f", b"\xfa")):
        try:
            packed = struct.pack(fmt, x)
        except OverflowError:
            continue
        if struct.unpack(fmt, packed)[0] == x:
            return initial + packed
    return b"\xfb" + struct.pack(">d", x)


def _encode_key(key: object) -> bytes:
    if key is True or key is False or key is None:
        raise CBOREncodeError("bad_key_type", "map key must be int, bytes or str, not a bool/None")
    if isinstance(key, (int, str, bytes)):
        return encode(key)
    raise CBOREncodeError(
        "bad_key_type", "map key must be int, bytes or str, not " + type(key).__name__
    )


def _encode_map(value: dict, out: list, depth: int) -> None:  # type: ignore[type-arg]
    pairs: list[tuple[bytes, object]] = []
    major = -1
    for key, item in value.items():
        key_bytes = _encode_key(key)
        key_major = key_bytes[0] >> 5
        if major < 0:
            major = key_major
        elif key_major != major:
            raise CBOREncodeError(
                "mixed_key_types",
                "map keys must share one CBOR major type (RFC 7049 and RFC 8949 orders differ)",
            )
        pairs.append((key_bytes, item))
    pairs.sort(key=lambda pair: pair[0])
    out.append(_head(5, len(pairs)))
    previous = None
    for key_bytes, item in pairs:
        if key_bytes == previous:
            raise CBOREncodeError("duplicate_key", "two map keys encode to the same bytes")
        previous = key_bytes
        out.append(key_bytes)
        _encode_into(item, out, depth + 1)


def _encode_into(value: object, out: list, depth: int) -> None:  # type: ignore[type-arg]
    if depth > ENCODE_DEPTH_MAX:
        raise CBOREncodeError("too_deep", f"value nests deeper than {ENCODE_DEPTH_MAX} levels")
    if value is None:
        out.append(_NULL)
    elif value is True:
        out.append(_TRUE)
    elif value is False:
        out.append(_FALSE)
    elif isinstance(value, int):
        if 0 <= value < _UINT_LIMIT:
            out.append(_head(0, value))
        elif -_UINT_LIMIT <= value < 0:
            out.append(_head(1, -1 - value))
        else:
            raise CBOREncodeError("int_range", "integer outside [-2**64, 2**64-1] needs a bignum")
    elif isinstance(value, str):
        try:
            raw = value.encode("utf-8")
        except UnicodeError:
            raise CBOREncodeError("invalid_text", "text is not encodable as UTF-8") from None
        out.append(_head(3, len(raw)))
        out.append(raw)
    elif isinstance(value, (bytes, bytearray)):
        out.append(_head(2, len(value)))
        out.append(bytes(value))
    elif isinstance(value, float):
        out.append(encode_float(value))
    elif isinstance(value, (list, tuple)):
        out.append(_head(4, len(value)))
        for item in value:
            _encode_into(item, out, depth + 1)
    elif isinstance(value, dict):
        _encode_map(value, out, depth)
    else:
        raise CBOREncodeError("unsupported_type", "cannot encode " + type(value).__name__)


def encode(value: object) -> bytes:
    """The deterministic encoding of `value`; raises CBOREncodeError."""
    out: list[bytes] = []
    _encode_into(value, out, 0)
    return b"".join(out)


# ---------------------------------------------------------------- decoding


def _utf8_valid(raw: bytes) -> bool:
    """Strict UTF-8 (RFC 3629): no overlongs, no surrogates, nothing above U+10FFFF."""
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c < 0x80:
            i += 1
            continue
        lo, hi = 0x80, 0xBF
        if 0xC2 <= c <= 0xDF:
            need = 1
        elif c == 0xE0:
            need, lo = 2, 0xA0
        elif c == 0xED:
            need, hi = 2, 0x9F
        elif 0xE1 <= c <= 0xEF:
            need = 2
        elif c == 0xF0:
            need, lo = 3, 0x90
        elif 0xF1 <= c <= 0xF3:
            need = 3
        elif c == 0xF4:
            need, hi = 3, 0x8F
        else:
            return False
        if i + need >= n:
            return False
        if not lo <= raw[i + 1] <= hi:
            return False
        for k in range(i + 2, i + need + 1):
            if not 0x80 <= raw[k] <= 0xBF:
                return False
        i += need + 1
    return True


def _decode_text(raw: bytes) -> str:
    if _MICROPYTHON and not _utf8_valid(raw):
        raise CBORDecodeError("invalid_utf8", "text string is not valid UTF-8")
    try:
        return raw.decode("utf-8")
    except UnicodeError:
        raise CBORDecodeError("invalid_utf8", "text string is not valid UTF-8") from None


class _Decoder:
    """One pass over `data`; `pos` is the index of the next unread byte."""

    def __init__(self, data: bytes, depth_max: int, items_max: int, string_bytes_max: int) -> None:
        self.data = data
        self.end = len(data)
        self.pos = 0
        self.depth_max = depth_max
        self.items_left = items_max
        self.string_bytes_max = string_bytes_max

    def need(self, n: int) -> None:
        if self.pos + n > self.end:
            raise CBORDecodeError(
                "truncated",
                f"input ends inside an item (need {n} bytes at offset {self.pos})",
            )

    def argument(self, info: int, major: int) -> int:
        """The head's argument; rejects non-shortest forms (RFC 8949 §4.2.1)."""
        if info < 24:
            return info
        data, pos = self.data, self.pos
        if info == 24:
            self.need(1)
            n = data[pos]
            self.pos = pos + 1
            floor = 24
        elif info == 25:
            self.need(2)
            n = (data[pos] << 8) | data[pos + 1]
            self.pos = pos + 2
            floor = 0x100
        elif info == 26:
            self.need(4)
            n = int(struct.unpack(">I", data[pos : pos + 4])[0])
            self.pos = pos + 4
            floor = 0x10000
        elif info == 27:
            self.need(8)
            n = int(struct.unpack(">Q", data[pos : pos + 8])[0])
            self.pos = pos + 8
            floor = 0x100000000
        elif info == 31:
            if major in (0, 1, 6):
                raise CBORDecodeError("malformed", f"major type {major} cannot be indefinite (§3)")
            raise CBORDecodeError("indefinite", "indefinite lengths are not allowed (§4.2.1)")
        else:
            raise CBORDecodeError("reserved_info", f"additional info {info} is reserved")
        if n < floor:
            raise CBORDecodeError("non_shortest", f"argument {n} not in its shortest form")
        return n

    def take_items(self, n: int, bytes_each: int) -> None:
        """Count `n` array elements or map pairs against the bounds before reading them."""
        self.items_left -= n
        if self.items_left < 0:
            raise CBORDecodeError("too_many_items", "more array elements/map pairs than allowed")
        if n * bytes_each > self.end - self.pos:
            raise CBORDecodeError("truncated", f"declared count {n} exceeds the input left")

    def string(self, n: int) -> bytes:
        if n > self.string_bytes_max:
            raise CBORDecodeError("string_too_large", f"string of {n} bytes exceeds the limit")
        self.need(n)
        start = self.pos
        self.pos = start + n
        return self.data[start : start + n]

    def item(self, depth: int) -> object:
        if self.pos >= self.end:
            raise CBORDecodeError("truncated", "input ends where an item should start")
        initial = self.data[self.pos]
        self.pos += 1
        major = initial >> 5
        info = initial & 31
        if major == 7:
            return self.simple(info)
        n = self.argument(info, major)
        if major == 0:
            return n
        if major == 1:
            return -1 - n
        if major == 2:
            return self.string(n)
        if major == 3:
            return _decode_text(self.string(n))
        if major == 6:
            raise CBORDecodeError("unsupported_tag", f"tag {n} is not in the profile")
        depth += 1
        if depth > self.depth_max:
            raise CBORDecodeError("too_deep", f"nesting deeper than {self.depth_max}")
        if major == 4:
            self.take_items(n, 1)
            return [self.item(depth) for _ in range(n)]
        return self.map(n, depth)

    def map(self, n: int, depth: int) -> dict:  # type: ignore[type-arg]
        self.take_items(n, 2)
        result: dict = {}  # type: ignore[type-arg]
        data = self.data
        previous: bytes | None = None
        key_major = -1
        for _ in range(n):
            start = self.pos
            if start >= self.end:
                raise CBORDecodeError("truncated", "input ends where a map key should start")
            major = data[start] >> 5
            if major > 3:
                raise CBORDecodeError("bad_key_type", "map key must be an int, bytes or text")
            if key_major < 0:
                key_major = major
            elif major != key_major:
                raise CBORDecodeError("mixed_key_types", "map keys of more than one major type")
            key = self.item(depth)
            key_bytes = data[start : self.pos]
            if previous is not None and key_bytes <= previous:
                if key_bytes == previous:
                    raise CBORDecodeError("duplicate_key", "duplicate map key")
                raise CBORDecodeError("unsorted_keys", "map keys not in bytewise order (§4.2.1)")
            previous = key_bytes
            result[key] = self.item(depth)
        return result

    def simple(self, info: int) -> object:
        if info == 20:
            return False
        if info == 21:
            return True
        if info == 22:
            return None
        if info < 24:
            raise CBORDecodeError("unsupported_simple", f"simple value {info} is not allowed")
        if info in _FLOAT_FORMATS:
            fmt, size = _FLOAT_FORMATS[info]
            self.need(size)
            start = self.pos - 1
            self.pos += size
            value = float(struct.unpack(fmt, self.data[start + 1 : self.pos])[0])
            if encode_float(value) != self.data[start : self.pos]:
                raise CBORDecodeError("non_canonical_float", "float not in its shortest form")
            return value
        if info == 24:
            self.need(1)
            value = self.data[self.pos]
            self.pos += 1
            if value < 32:
                raise CBORDecodeError("malformed", "two-byte simple value below 32 (§3.3)")
            raise CBORDecodeError("unsupported_simple", f"simple value {value} is not allowed")
        if info == 31:
            raise CBORDecodeError("break", "break stop code outside an indefinite item")
        raise CBORDecodeError("reserved_info", f"additional info {info} is reserved")


def decode(
    data: bytes,
    size_bytes_max: int = SIZE_BYTES_MAX,
    depth_max: int = DEPTH_MAX,
    items_max: int = ITEMS_MAX,
    string_bytes_max: int = STRING_BYTES_MAX,
) -> object:
    """Exactly one canonical item from `data`; raises CBORDecodeError."""
    if not isinstance(data, bytes):
        if not isinstance(data, (bytearray, memoryview)):
            raise CBORDecodeError("bad_input", "input must be bytes")
        if len(data) > size_bytes_max:
            raise CBORDecodeError("too_large", f"input of {len(data)} bytes exceeds the limit")
        data = bytes(data)
    if len(data) > size_bytes_max:
        raise CBORDecodeError("too_large", f"input of {len(data)} bytes exceeds the limit")
    decoder = _Decoder(data, depth_max, items_max, string_bytes_max)
    value = decoder.item(0)
    if decoder.pos != decoder.end:
        raise CBORDecodeError("trailing", f"{decoder.end - decoder.pos} bytes follow the item")
    return value
