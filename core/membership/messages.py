"""Membership messages: small frozen objects inside machines, plain CBOR-able maps on the wire.

`to_wire()` gives a map with text keys only (so deterministic CBOR of RFC 8949
§4.2.1 and cbor2's canonical form agree); `message_from_wire()` validates every
type and bound and raises `MembershipWireError`. The host wraps the wire form in
the signed envelope; the simulator passes the objects as they are.

Gossip updates (SWIM §4.1 "infection-style dissemination"): `Alive`, `Suspect`,
`Dead` (SWIM's "confirm") and `Left` (graceful leave), each about one subject
and ordered by the subject's incarnation number (SWIM §4.2).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Final

from agentmesh.core.admission import AdmissionRejected, Credential, credential_from_wire
from agentmesh.core.identity import is_peer_id
from agentmesh.core.membership.capabilities import AdvertError, CapabilityAdvert

UPDATES_PER_MESSAGE_MAX: Final = 128
UINT63_MAX: Final = 2**63 - 1
NONCE_BYTES: Final = 16
PROOF_BYTES_MAX: Final = 32
MESH_CHARS_MAX: Final = 64
REASON_CHARS_MAX: Final = 32
SYNC_CHUNKS_MAX: Final = 4096


class MembershipWireError(ValueError):
    """A membership message whose wire form is malformed or out of bounds."""


# --- field checks -------------------------------------------------------------------


def _uint(obj: dict[str, Any], key: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= UINT63_MAX:
        raise MembershipWireError(f"{key!r} must be an unsigned 63-bit integer")
    return value


def _peer(obj: dict[str, Any], key: str) -> str:
    value = obj.get(key)
    if not is_peer_id(value):
        raise MembershipWireError(f"{key!r} must be a peer id")
    assert isinstance(value, str)
    return value


def _text(obj: dict[str, Any], key: str, chars_max: int) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not 0 < len(value) <= chars_max:
        raise MembershipWireError(f"{key!r} must be text of 1..{chars_max} characters")
    return value


def _bytes(obj: dict[str, Any], key: str, size_min: int, size_max: int) -> bytes:
    value = obj.get(key)
    if not isinstance(value, bytes) or not size_min <= len(value) <= size_max:
        raise MembershipWireError(f"{key!r} must be {size_min}..{size_max} bytes")
    return value


def _keys(
    obj: object, required: set[str], optional: frozenset[str] = frozenset()
) -> dict[str, Any]:
    if not isinstance(obj, dict) or not all(isinstance(key, str) for key in obj):
        raise MembershipWireError("expected a map with text keys")
    keys = set(obj)
    if not required <= keys <= required | optional:
        raise MembershipWireError(f"keys {sorted(keys)} do not match {sorted(required)}")
    return obj


def _advert(obj: dict[str, Any], key: str) -> CapabilityAdvert | None:
    if key not in obj:
        return None
    try:
        return CapabilityAdvert.from_wire(obj[key])
    except AdvertError as error:
        raise MembershipWireError(f"bad advert: {error}") from None


# --- gossip updates -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Alive:
    """`peer_id` is alive at `incarnation`; carries its newest advert when known."""

    peer_id: str
    incarnation: int
    advert: CapabilityAdvert | None = None
    KIND: ClassVar[str] = "alive"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"k": self.KIND, "id": self.peer_id, "inc": self.incarnation}
        if self.advert is not None:
            wire["adv"] = self.advert.to_wire()
        return wire


@dataclass(frozen=True, slots=True)
class Suspect:
    """`from_peer` suspects `peer_id` at `incarnation` (SWIM §4.2)."""

    peer_id: str
    incarnation: int
    from_peer: str
    KIND: ClassVar[str] = "suspect"

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "id": self.peer_id, "inc": self.incarnation, "from": self.from_peer}


@dataclass(frozen=True, slots=True)
class Dead:
    """`from_peer` confirms `peer_id` failed at `incarnation` (SWIM §4.2 "Confirm")."""

    peer_id: str
    incarnation: int
    from_peer: str
    KIND: ClassVar[str] = "dead"

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "id": self.peer_id, "inc": self.incarnation, "from": self.from_peer}


@dataclass(frozen=True, slots=True)
class Left:
    """`peer_id` left gracefully at `incarnation`."""

    peer_id: str
    incarnation: int
    KIND: ClassVar[str] = "left"

    def to_wire(self) -> dict[str, Any]:
        return {"k": self.KIND, "id": self.peer_id, "inc": self.incarnation}


Update = Alive | Suspect | Dead | Left


def update_from_wire(obj: object) -> Update:
    if not isinstance(obj, dict):
        raise MembershipWireError("an update must be a map")
    kind = obj.get("k")
    if kind == "alive":
        obj = _keys(obj, {"k", "id", "inc"}, frozenset({"adv"}))
        alive = Alive(_peer(obj, "id"), _uint(obj, "inc"), _advert(obj, "adv"))
        if alive.advert is not None and alive.advert.peer_id != alive.peer_id:
            raise MembershipWireError("an alive update carries another peer's advert")
        return alive
    if kind in ("suspect", "dead"):
        obj = _keys(obj, {"k", "id", "inc", "from"})
        cls = Suspect if kind == "suspect" else Dead
        return cls(_peer(obj, "id"), _uint(obj, "inc"), _peer(obj, "from"))
    if kind == "left":
        obj = _keys(obj, {"k", "id", "inc"})
        return Left(_peer(obj, "id"), _uint(obj, "inc"))
    raise MembershipWireError(f"unknown update kind {kind!r}")


def _updates_to_wire(updates: tuple[Update, ...]) -> list[dict[str, Any]]:
    return [update.to_wire() for update in updates]


def _updates(obj: dict[str, Any], key: str = "u") -> tuple[Update, ...]:
    value = obj.get(key)
    if not isinstance(value, list) or len(value) > UPDATES_PER_MESSAGE_MAX:
        raise MembershipWireError(f"{key!r} must be a list of at most {UPDATES_PER_MESSAGE_MAX}")
    return tuple(update_from_wire(item) for item in value)


# --- probe messages (SWIM §3.1 / Lifeguard §IV.A) ---------------------------------------


@dataclass(frozen=True, slots=True)
class Ping:
    """Direct probe of `target` (named so a misdelivered ping is not acked)."""

    seq: int
    target: str
    updates: tuple[Update, ...] = ()
    TYPE: ClassVar[str] = "ping"

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": self.TYPE,
            "seq": self.seq,
            "target": self.target,
            "u": _updates_to_wire(self.updates),
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Ping:
        obj = _keys(obj, {"t", "seq", "target", "u"})
        return cls(_uint(obj, "seq"), _peer(obj, "target"), _updates(obj))


@dataclass(frozen=True, slots=True)
class PingReq:
    """Ask the receiver to probe `target` for us (SWIM §3.1 indirect probe)."""

    seq: int
    target: str
    updates: tuple[Update, ...] = ()
    TYPE: ClassVar[str] = "ping_req"

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": self.TYPE,
            "seq": self.seq,
            "target": self.target,
            "u": _updates_to_wire(self.updates),
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> PingReq:
        obj = _keys(obj, {"t", "seq", "target", "u"})
        return cls(_uint(obj, "seq"), _peer(obj, "target"), _updates(obj))


@dataclass(frozen=True, slots=True)
class Ack:
    """Answer to a Ping (or forwarded answer to a PingReq) with sequence `seq`."""

    seq: int
    updates: tuple[Update, ...] = ()
    TYPE: ClassVar[str] = "ack"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TYPE, "seq": self.seq, "u": _updates_to_wire(self.updates)}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Ack:
        obj = _keys(obj, {"t", "seq", "u"})
        return cls(_uint(obj, "seq"), _updates(obj))


@dataclass(frozen=True, slots=True)
class Nack:
    """Lifeguard §IV.A: the helper reached no ack from the target, but it is alive itself."""

    seq: int
    TYPE: ClassVar[str] = "nack"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TYPE, "seq": self.seq}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Nack:
        obj = _keys(obj, {"t", "seq"})
        return cls(_uint(obj, "seq"))


@dataclass(frozen=True, slots=True)
class Gossip:
    """Updates pushed on the fast gossip interval (memberlist's gossip packets)."""

    updates: tuple[Update, ...]
    TYPE: ClassVar[str] = "gossip"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TYPE, "u": _updates_to_wire(self.updates)}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> Gossip:
        obj = _keys(obj, {"t", "u"})
        return cls(_updates(obj))


# --- join handshake (admission) ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinHello:
    """Joiner -> seed: I want to join `mesh`; here is my nonce."""

    mesh: str
    nonce: bytes
    TYPE: ClassVar[str] = "join_hello"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TYPE, "mesh": self.mesh, "nonce": self.nonce}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> JoinHello:
        obj = _keys(obj, {"t", "mesh", "nonce"})
        return cls(
            _text(obj, "mesh", MESH_CHARS_MAX), _bytes(obj, "nonce", NONCE_BYTES, NONCE_BYTES)
        )


@dataclass(frozen=True, slots=True)
class JoinChallenge:
    """Seed -> joiner: my nonce, and (psk) my proof that I hold the mesh key."""

    mesh: str
    joiner_nonce: bytes
    nonce: bytes
    proof: bytes
    TYPE: ClassVar[str] = "join_challenge"

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": self.TYPE,
            "mesh": self.mesh,
            "jnonce": self.joiner_nonce,
            "nonce": self.nonce,
            "proof": self.proof,
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> JoinChallenge:
        obj = _keys(obj, {"t", "mesh", "jnonce", "nonce", "proof"})
        return cls(
            _text(obj, "mesh", MESH_CHARS_MAX),
            _bytes(obj, "jnonce", NONCE_BYTES, NONCE_BYTES),
            _bytes(obj, "nonce", NONCE_BYTES, NONCE_BYTES),
            _bytes(obj, "proof", 0, PROOF_BYTES_MAX),
        )


@dataclass(frozen=True, slots=True)
class JoinRequest:
    """Joiner -> seed: my credential, incarnation and advert."""

    mesh: str
    nonce: bytes
    incarnation: int
    advert: CapabilityAdvert | None
    credential: Credential
    TYPE: ClassVar[str] = "join"

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "t": self.TYPE,
            "mesh": self.mesh,
            "nonce": self.nonce,
            "inc": self.incarnation,
            "cred": self.credential.to_wire(),
        }
        if self.advert is not None:
            wire["adv"] = self.advert.to_wire()
        return wire

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> JoinRequest:
        obj = _keys(obj, {"t", "mesh", "nonce", "inc", "cred"}, frozenset({"adv"}))
        try:
            credential = credential_from_wire(obj["cred"])
        except AdmissionRejected as error:
            raise MembershipWireError(str(error)) from None
        return cls(
            _text(obj, "mesh", MESH_CHARS_MAX),
            _bytes(obj, "nonce", NONCE_BYTES, NONCE_BYTES),
            _uint(obj, "inc"),
            _advert(obj, "adv"),
            credential,
        )


@dataclass(frozen=True, slots=True)
class JoinAccept:
    """Seed -> joiner: admitted; chunk `chunk` of `chunks` of the seed's member table
    (a push-pull sync as memberlist does on join; chunks may arrive in any order)."""

    mesh: str
    your_incarnation: int
    updates: tuple[Update, ...]
    chunk: int
    chunks: int
    TYPE: ClassVar[str] = "join_accept"

    def to_wire(self) -> dict[str, Any]:
        return {
            "t": self.TYPE,
            "mesh": self.mesh,
            "your_inc": self.your_incarnation,
            "u": _updates_to_wire(self.updates),
            "chunk": self.chunk,
            "chunks": self.chunks,
        }

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> JoinAccept:
        obj = _keys(obj, {"t", "mesh", "your_inc", "u", "chunk", "chunks"})
        chunk, chunks = _uint(obj, "chunk"), _uint(obj, "chunks")
        if not chunk < chunks <= SYNC_CHUNKS_MAX:
            raise MembershipWireError(f"chunk {chunk} of {chunks} is out of range")
        return cls(
            _text(obj, "mesh", MESH_CHARS_MAX), _uint(obj, "your_inc"), _updates(obj), chunk, chunks
        )


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """Member -> member: send me your table (periodic push-pull anti-entropy, as in
    memberlist; repairs what infection-style dissemination missed)."""

    mesh: str
    TYPE: ClassVar[str] = "sync"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TYPE, "mesh": self.mesh}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> SyncRequest:
        obj = _keys(obj, {"t", "mesh"})
        return cls(_text(obj, "mesh", MESH_CHARS_MAX))


@dataclass(frozen=True, slots=True)
class JoinReject:
    """Seed -> joiner: not admitted, with the stable reason code."""

    mesh: str
    reason: str
    TYPE: ClassVar[str] = "join_reject"

    def to_wire(self) -> dict[str, Any]:
        return {"t": self.TYPE, "mesh": self.mesh, "reason": self.reason}

    @classmethod
    def from_wire(cls, obj: dict[str, Any]) -> JoinReject:
        obj = _keys(obj, {"t", "mesh", "reason"})
        return cls(_text(obj, "mesh", MESH_CHARS_MAX), _text(obj, "reason", REASON_CHARS_MAX))


Message = (
    Ping
    | PingReq
    | Ack
    | Nack
    | Gossip
    | JoinHello
    | JoinChallenge
    | JoinRequest
    | JoinAccept
    | JoinReject
    | SyncRequest
)

_BY_TYPE: Final[dict[str, Any]] = {
    cls.TYPE: cls
    for cls in (
        Ping,
        PingReq,
        Ack,
        Nack,
        Gossip,
        JoinHello,
        JoinChallenge,
        JoinRequest,
        JoinAccept,
        JoinReject,
        SyncRequest,
    )
}


def message_from_wire(obj: object) -> Message:
    """Parse any membership message; raises MembershipWireError."""
    if not isinstance(obj, dict):
        raise MembershipWireError("a message must be a map")
    kind = obj.get("t")
    cls = _BY_TYPE.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise MembershipWireError(f"unknown message type {kind!r}")
    message: Message = cls.from_wire(obj)
    return message
