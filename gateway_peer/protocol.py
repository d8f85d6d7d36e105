"""The MCU bridge protocol (v1): CBOR envelopes sealed with HMAC-SHA256 over UDP.

A datagram is `cbor(envelope) || tag`, where `tag = HMAC-SHA256(key, cbor(envelope))`
(RFC 2104, full 32 bytes) under the device's provisioned key, and the envelope is a
map with single-type (text) keys, so its deterministic encoding (RFC 8949 §4.2.1)
is the same from cbor2 and from the pure codec the firmware runs:

    {"v": 1, "t": type, "d": device id, "c": counter, "n": boot nonce, "b": body}

Uplink (device -> gateway) counters are the device's persisted monotonic counter;
the gateway accepts only counters above the highest it has seen (replay defence).
Downlink (gateway -> device) counters restart at 1 for each device boot; the
device accepts only its own boot nonce and increasing counters. Message types of
one direction are refused in the other, so a tag cannot be reflected.
Tensors are raw little-endian float32 bytes, never CBOR floats. See
docs/microcontrollers.md for every body.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any, Final

from agentmesh.core.limits import DecodeLimits
from agentmesh.core.wire import cbor
from agentmesh.core.wire.errors import DecodeError
from agentmesh.gateway_peer.limits import DEFAULT_GATEWAY_LIMITS, GatewayLimits

VERSION: Final = 1
TAG_BYTES: Final = 32
NONCE_BYTES: Final = 8
KEY_BYTES: Final = 32
COUNTER_MAX: Final = 2**63 - 1
ENVELOPE_KEYS: Final = frozenset({"v", "t", "d", "c", "n", "b"})

# uplink
HELLO: Final = 1
HEARTBEAT: Final = 2
READING: Final = 3
INFER_RESULT: Final = 4
CHUNK_ACK: Final = 5
SAMPLE: Final = 6  # a labelled sample for the gateway-side trainer (federated rounds)
# downlink
WELCOME: Final = 16
MODEL_CHUNK: Final = 17
INFER_REQUEST: Final = 18

UPLINK_TYPES: Final = frozenset({HELLO, HEARTBEAT, READING, INFER_RESULT, CHUNK_ACK, SAMPLE})
DOWNLINK_TYPES: Final = frozenset({WELCOME, MODEL_CHUNK, INFER_REQUEST})
TYPE_NAMES: Final = {
    HELLO: "hello",
    HEARTBEAT: "heartbeat",
    READING: "reading",
    INFER_RESULT: "infer_result",
    CHUNK_ACK: "chunk_ack",
    SAMPLE: "sample",
    WELCOME: "welcome",
    MODEL_CHUNK: "model_chunk",
    INFER_REQUEST: "infer_request",
}
_DEVICE_ID_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
)


class ProtocolError(ValueError):
    """A datagram the gateway refuses; `.reason` is the counter it increments."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded (not yet authenticated) datagram."""

    msg_type: int
    device_id: str
    counter: int
    nonce: bytes
    body: dict[str, Any]
    signed: bytes  # the CBOR bytes the tag covers
    tag: bytes


def is_device_id(text: object, chars_max: int = DEFAULT_GATEWAY_LIMITS.device_id_chars_max) -> bool:
    """Device ids: 1..chars_max of [A-Za-z0-9._-] (safe in file names and logs)."""
    return isinstance(text, str) and 0 < len(text) <= chars_max and set(text) <= _DEVICE_ID_CHARS


def is_uint(value: object, maximum: int = COUNTER_MAX) -> bool:
    return type(value) is int and 0 <= value <= maximum


def compute_tag(key: bytes, signed: bytes) -> bytes:
    """HMAC-SHA256 (RFC 2104) of the envelope bytes (OpenSSL's one-shot, no Python object)."""
    return hmac.digest(key, signed, "sha256")


def tag_matches(key: bytes, frame: Frame) -> bool:
    """Constant-time comparison of the frame's tag with the expected one."""
    return hmac.compare_digest(compute_tag(key, frame.signed), frame.tag)


def seal(
    key: bytes, msg_type: int, device_id: str, counter: int, nonce: bytes, body: dict[str, Any]
) -> bytes:
    """The datagram for one message: deterministic CBOR envelope plus its tag."""
    envelope = {"v": VERSION, "t": msg_type, "d": device_id, "c": counter, "n": nonce, "b": body}
    signed: bytes = cbor.encode(envelope)
    return signed + compute_tag(key, signed)


def decode_limits(limits: GatewayLimits) -> DecodeLimits:
    """CBOR bounds for one datagram: nothing bigger than the datagram can be declared."""
    size = limits.datagram_bytes_max
    return DecodeLimits(size_bytes_max=size, depth_max=4, items_max=256, string_bytes_max=size)


def open_frame(
    datagram: bytes, direction: frozenset[int], limits: GatewayLimits, bounds: DecodeLimits
) -> Frame:
    """Decode and shape-check a datagram; the tag is checked later, with the device's key."""
    if len(datagram) > limits.datagram_bytes_max:
        raise ProtocolError("too_large", f"datagram of {len(datagram)} bytes")
    if len(datagram) <= TAG_BYTES:
        raise ProtocolError("too_short", "datagram shorter than a tag")
    signed, tag = datagram[:-TAG_BYTES], datagram[-TAG_BYTES:]
    try:
        envelope = cbor.decode(signed, bounds)
    except DecodeError as error:
        raise ProtocolError("decode", f"envelope is not canonical CBOR: {error}") from None
    if not isinstance(envelope, dict) or set(envelope) != ENVELOPE_KEYS:
        raise ProtocolError("schema", "envelope must be a map with keys v, t, d, c, n, b")
    if envelope["v"] != VERSION:
        raise ProtocolError("unknown_version", f"protocol version {envelope['v']!r}")
    msg_type = envelope["t"]
    if not is_uint(msg_type, 255) or msg_type not in TYPE_NAMES:
        raise ProtocolError("unknown_type", f"message type {msg_type!r}")
    if msg_type not in direction:
        raise ProtocolError("wrong_direction", f"{TYPE_NAMES[msg_type]} in the wrong direction")
    device_id, counter, nonce, body = envelope["d"], envelope["c"], envelope["n"], envelope["b"]
    if not is_device_id(device_id, limits.device_id_chars_max):
        raise ProtocolError("schema", "device id is not 1..32 of [A-Za-z0-9._-]")
    if not is_uint(counter) or counter == 0:
        raise ProtocolError("schema", "counter must be a positive 63-bit integer")
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ProtocolError("schema", f"nonce must be {NONCE_BYTES} bytes")
    if not isinstance(body, dict):
        raise ProtocolError("schema", "body must be a map")
    return Frame(msg_type, device_id, counter, nonce, body, signed, tag)
