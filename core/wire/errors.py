"""Typed errors of the wire format: every rejection of peer bytes is one of these.

Each error carries a stable `.reason` code (the same codes the MicroPython codec
puts on its CBORDecodeError) and a message that says what is wrong.
"""

from __future__ import annotations

from agentmesh.core.node import ContractError


class WireError(ValueError):
    """Base of every wire-format error."""

    default_reason = "wire_error"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or self.default_reason


class EncodeError(WireError):
    """A value outside the agentmesh CBOR profile (a caller bug, never peer input)."""

    default_reason = "unsupported_type"


# ------------------------------------------------------------------ decoding


class DecodeError(WireError):
    """Bytes that are not exactly one canonical, in-bounds CBOR item."""

    default_reason = "decode_error"


class TruncatedInput(DecodeError):
    """The input ends inside an item (or declares more than it holds)."""

    default_reason = "truncated"


class TrailingBytes(DecodeError):
    """Bytes follow the single top-level item."""

    default_reason = "trailing"


class Malformed(DecodeError):
    """Not well-formed CBOR (RFC 8949 §3): reserved additional info, stray break."""

    default_reason = "malformed"


class NonCanonical(DecodeError):
    """Well-formed but not the deterministic encoding (RFC 8949 §4.2.1)."""

    default_reason = "non_canonical"


class DuplicateKey(DecodeError):
    """A map holds the same key twice (invalid CBOR, RFC 8949 §5.6)."""

    default_reason = "duplicate_key"


class MixedKeyTypes(DecodeError):
    """A map whose keys do not share one major type (outside the profile)."""

    default_reason = "mixed_key_types"


class InvalidUtf8(DecodeError):
    """A text string that is not valid UTF-8."""

    default_reason = "invalid_utf8"


class UnsupportedType(DecodeError):
    """A tag, simple value or key type outside the agentmesh profile."""

    default_reason = "unsupported_type"


class LimitExceeded(DecodeError):
    """A size, depth, item-count or string bound of DecodeLimits was hit."""

    default_reason = "limit_exceeded"


DECODE_ERROR_BY_REASON: dict[str, type[DecodeError]] = {
    "truncated": TruncatedInput,
    "trailing": TrailingBytes,
    "reserved_info": Malformed,
    "break": Malformed,
    "malformed": Malformed,
    "bad_input": Malformed,
    "indefinite": NonCanonical,
    "non_shortest": NonCanonical,
    "non_canonical_float": NonCanonical,
    "unsorted_keys": NonCanonical,
    "duplicate_key": DuplicateKey,
    "mixed_key_types": MixedKeyTypes,
    "invalid_utf8": InvalidUtf8,
    "unsupported_tag": UnsupportedType,
    "unsupported_simple": UnsupportedType,
    "bad_key_type": UnsupportedType,
    "too_large": LimitExceeded,
    "too_deep": LimitExceeded,
    "too_many_items": LimitExceeded,
    "string_too_large": LimitExceeded,
}


def decode_error(reason: str, message: str) -> DecodeError:
    """The typed error for a codec reason code."""
    return DECODE_ERROR_BY_REASON.get(reason, DecodeError)(message, reason)


# ------------------------------------------------------------------ envelopes


class EnvelopeError(WireError):
    """A decoded message that is not a valid signed envelope."""

    default_reason = "envelope_error"


class TooLarge(EnvelopeError):
    """The message exceeds the size limit of its type (or of any envelope)."""

    default_reason = "too_large"


class UnknownVersion(EnvelopeError):
    """A protocol version this node does not speak."""

    default_reason = "unknown_version"


class UnknownMessageType(EnvelopeError):
    """A message type number that is not registered."""

    default_reason = "unknown_type"


class SchemaError(EnvelopeError):
    """The envelope or its body does not match the registered schema."""

    default_reason = "schema"


class TensorError(SchemaError):
    """A tensor map with a bad dtype, shape, byte length or size."""

    default_reason = "tensor"


class WrongMesh(EnvelopeError):
    """The envelope names another mesh."""

    default_reason = "wrong_mesh"


class InvalidSender(EnvelopeError):
    """The sender is not a well-formed Ed25519 peer id."""

    default_reason = "invalid_sender"


class BadSignature(EnvelopeError):
    """The signature does not verify under the sender's key."""

    default_reason = "bad_signature"


# mypy cannot follow the editable agentmesh mapping, so ContractError may look like Any.
class RegistryError(ContractError):  # type: ignore[misc,unused-ignore]
    """Conflicting or malformed message-type registration (a programming error)."""
