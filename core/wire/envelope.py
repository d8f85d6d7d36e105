"""The signed envelope every peer message travels in.

On the wire an envelope is one CBOR map (deterministic encoding, text keys):

    {"v": version, "t": type number, "mesh": mesh id, "from": sender peer id,
     "pos": [seq] | [epoch, round, view], "body": {...}, "sig": 64 bytes}

"sig" is an Ed25519 signature by the sender over SIGNING_CONTEXT followed by the
deterministic encoding of the same map without "sig". The context string
separates envelope signatures from anything else the same key signs (the QUIC
channel binding, commit certificates). Receivers recover the public key from
the sender's peer id itself (libp2p identity multihash), so no key directory
is needed. `open_envelope` checks, cheapest first: size, CBOR, shape, version,
type, per-type size, mesh, position, body schema, sender id, signature.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import cbor2

from agentmesh.core import identity
from agentmesh.core.limits import DEFAULT_LIMITS, Limits
from agentmesh.core.node import Signer
from agentmesh.core.wire import cbor
from agentmesh.core.wire.errors import (
    BadSignature,
    InvalidSender,
    SchemaError,
    TooLarge,
    UnknownVersion,
    WrongMesh,
)
from agentmesh.core.wire.registry import DEFAULT_REGISTRY, POSITION_KINDS, MessageType, Registry

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS = frozenset((PROTOCOL_VERSION,))
SIGNING_CONTEXT = b"agentmesh/envelope/v1\x00"
MESH_ID_BYTES_MAX = 64
_KEYS = frozenset(("v", "t", "mesh", "from", "pos", "body", "sig"))
_UINT_LIMIT = 1 << 64

Verify = Callable[[str, bytes, bytes], bool]
"""(sender peer id, signed bytes, signature) -> valid; default: key inlined in the peer id."""


@dataclass(frozen=True, slots=True)
class Envelope:
    """A verified message: who sent what, where in the protocol, for which mesh."""

    version: int
    message_type: MessageType
    mesh: str
    sender: str
    position: tuple[int, ...]
    body: Mapping[str, Any]
    signature: bytes

    @property
    def type_name(self) -> str:
        name: str = self.message_type.name
        return name


def signing_bytes(unsigned: Mapping[str, Any]) -> bytes:
    """What the sender signs: the context string and the map without "sig"."""
    encoded: bytes = cbor.encode(dict(unsigned))
    return SIGNING_CONTEXT + encoded


def seal(
    signer: Signer,
    type_name: str,
    mesh: str,
    position: tuple[int, ...],
    body: Mapping[str, Any],
    registry: Registry = DEFAULT_REGISTRY,
    version: int = PROTOCOL_VERSION,
) -> bytes:
    """Validate, sign and encode a message; the wire bytes."""
    message_type = registry.by_name(type_name)
    unsigned = {
        "v": version,
        "t": message_type.number,
        "mesh": mesh,
        "from": signer.peer_id,
        "pos": list(position),
        "body": dict(body),
    }
    _check_header(unsigned, message_type)
    message_type.validate_body(unsigned["body"])
    encoded_unsigned: bytes = cbor.encode(unsigned)
    signature = signer.sign(SIGNING_CONTEXT + encoded_unsigned)
    offset = _sig_offset(unsigned)
    # The signed map plus "sig" is the same bytes with the sig entry spliced in at its
    # sorted place, so the envelope is never encoded twice.
    data = b"\xa7" + encoded_unsigned[1:offset] + _SIG_ENTRY_HEAD + signature
    data += encoded_unsigned[offset:]
    if len(data) > message_type.size_bytes_max:
        raise TooLarge(
            f"{type_name} of {len(data)} bytes exceeds its limit of {message_type.size_bytes_max}"
        )
    return data


def open_envelope(
    data: bytes,
    registry: Registry = DEFAULT_REGISTRY,
    mesh: str | None = None,
    limits: Limits = DEFAULT_LIMITS,
    verify: Verify = identity.verify_from_peer_id,
) -> Envelope:
    """Decode and verify wire bytes; raises only WireError subclasses."""
    if len(data) > limits.envelope_bytes_max:
        raise TooLarge(
            f"{len(data)} bytes exceed the envelope limit of {limits.envelope_bytes_max}"
        )
    raw = cbor.decode(data, limits.decode)
    if not isinstance(raw, dict) or raw.keys() != _KEYS:
        keys = sorted(map(repr, raw)) if isinstance(raw, dict) else type(raw).__name__
        raise SchemaError(f"envelope must be a map with keys {sorted(_KEYS)}, got {keys}")
    if type(raw["v"]) is not int or raw["v"] not in SUPPORTED_VERSIONS:
        raise UnknownVersion(
            f"protocol version {raw['v']!r:.20} is not one of {set(SUPPORTED_VERSIONS)}"
        )
    message_type = registry.by_number(raw["t"])
    if len(data) > message_type.size_bytes_max:
        raise TooLarge(
            f"{message_type.name} of {len(data)} bytes exceeds its limit of "
            f"{message_type.size_bytes_max}"
        )
    _check_header(raw, message_type)
    if mesh is not None and raw["mesh"] != mesh:
        raise WrongMesh(f"envelope for mesh {raw['mesh']!r}, this node is in {mesh!r}")
    message_type.validate_body(raw["body"])
    sender, signature = raw["from"], raw["sig"]
    if not identity.is_peer_id(sender):
        raise InvalidSender(f"sender {sender!r:.60} is not an Ed25519 peer id")
    if type(signature) is not bytes or len(signature) != identity.SIGNATURE_SIZE_BYTES:
        raise BadSignature("signature must be 64 bytes")
    if not verify(sender, _signed_part(data, raw), signature):
        raise BadSignature(f"{message_type.name} from {sender} does not verify")
    return Envelope(
        version=raw["v"],
        message_type=message_type,
        mesh=raw["mesh"],
        sender=sender,
        position=tuple(raw["pos"]),
        body=raw["body"],
        signature=signature,
    )


# RFC 8949 §4.2.1 orders the text keys t, v, pos, sig, body, from, mesh (shorter
# encodings first), so "sig" always follows "pos": text(3) "sig", bytes(64) header.
_SIG_ENTRY_HEAD = b"\x63sig\x58\x40"
_SIG_ENTRY_BYTES = len(_SIG_ENTRY_HEAD) + identity.SIGNATURE_SIZE_BYTES


# Bytes of the map header, "t" and "v" keys, "pos" key and a short array's header.
_SIG_OFFSET_FIXED_BYTES = 1 + 2 + 2 + 4 + 1
_ARRAY_LENGTH_SHORT_MAX = 23  # RFC 8949 §3: lengths up to 23 fit the initial byte


def _sig_offset(envelope: Mapping[str, Any]) -> int:
    """Where the "sig" entry starts in the canonical encoding of the envelope map.

    Counted from the head sizes of unsigned integers (RFC 8949 §4.2.1) instead of
    encoding "t", "v" and "pos" again; anything else is left to cbor2.
    """
    t, v, position = envelope["t"], envelope["v"], envelope["pos"]
    if type(position) is list and len(position) <= _ARRAY_LENGTH_SHORT_MAX:
        try:
            return (
                _SIG_OFFSET_FIXED_BYTES
                + _uint_bytes(t)
                + _uint_bytes(v)
                + sum(_uint_bytes(n) for n in position)
            )
        except _NotUint:
            pass
    head = cbor2.dumps({"t": t, "v": v, "pos": position})
    return len(head)  # the 1-byte map header of `head` stands for the envelope's own


class _NotUint(Exception):
    """Internal: a value _uint_bytes does not size."""


def _uint_bytes(value: object) -> int:
    """Encoded size of an unsigned integer (initial byte plus argument)."""
    if type(value) is not int or value < 0:
        raise _NotUint
    if value < 24:
        return 1
    if value < 0x100:
        return 2
    if value < 0x10000:
        return 3
    if value < 0x1_0000_0000:
        return 5
    if value < _UINT_LIMIT:
        return 9
    raise _NotUint


def _signed_part(data: bytes, raw: Mapping[str, Any]) -> bytes:
    """The signed bytes, cut from canonical wire bytes rather than encoded again.

    `cbor.decode` has already proved `data` is the canonical encoding of `raw`.
    """
    offset = _sig_offset(raw)
    if data[0] != 0xA7 or data[offset : offset + len(_SIG_ENTRY_HEAD)] != _SIG_ENTRY_HEAD:
        unsigned = {key: value for key, value in raw.items() if key != "sig"}
        return signing_bytes(unsigned)  # not reachable for canonical input; stay correct
    return SIGNING_CONTEXT + b"\xa6" + data[1:offset] + data[offset + _SIG_ENTRY_BYTES :]


def _check_header(raw: Mapping[str, Any], message_type: MessageType) -> None:
    """Mesh id and position shape (the version and type were checked already)."""
    mesh = raw["mesh"]
    if (
        type(mesh) is not str
        or not 0 < len(mesh.encode("utf-8", "surrogatepass")) <= MESH_ID_BYTES_MAX
    ):
        raise SchemaError(f"mesh id must be 1..{MESH_ID_BYTES_MAX} bytes of text")
    position = raw["pos"]
    names = POSITION_KINDS[message_type.position]
    if (
        type(position) is not list
        or len(position) != len(names)
        or not all(type(n) is int and 0 <= n < _UINT_LIMIT for n in position)
    ):
        raise SchemaError(
            f"{message_type.name} position must be [{', '.join(names)}] of unsigned ints, "
            f"got {position!r:.60}"
        )
