"""CBOR forms of the consensus messages and persist records (for real hosts and SQLite).

Every object is a CBOR array: top-level items start with a type tag, nested
objects are untagged arrays whose layout the schema fixes. `decode` checks tags,
arity and field types and raises `CodecError` for anything else; the replica
still applies its own bounds (wellformed.py) and signature checks afterwards.
"""

from __future__ import annotations

from typing import Any

from agentmesh.core.limits import DecodeLimits
from agentmesh.core.wire import cbor
from agentmesh.core.wire.errors import DecodeError, EncodeError

from .durable import (
    DurableState,
    PersistEpoch,
    PersistExecuted,
    PersistNewView,
    PersistPrepared,
    PersistSnapshot,
    PersistStable,
    PersistView,
    PersistViewChange,
    PersistVote,
)
from .messages import (
    CertifiedBatch,
    Checkpoint,
    CheckpointProof,
    CommitCertificate,
    Entry,
    FetchState,
    NewView,
    PreparedProof,
    PrePrepare,
    Request,
    Snapshot,
    StateReply,
    ViewChange,
    Vote,
)

DECODE_LIMITS = DecodeLimits(size_bytes_max=8 * 1024 * 1024, items_max=1 << 20)


class CodecError(ValueError):
    """Bytes that are not a consensus message or record of this schema."""


# Field kinds: i int, b bytes, s str, S tuple[str], m:<cls> nested, M:<cls> tuple of nested,
# o:<cls> optional nested, P tuple of (str, bytes) pairs.
_SCHEMA: dict[type, tuple[str, ...]] = {
    Entry: ("s", "b"),
    Request: ("m:Entry",),
    PrePrepare: ("i", "i", "i", "b", "M:Entry", "s", "b"),
    Vote: ("b", "i", "i", "i", "b", "s", "b"),
    Checkpoint: ("i", "i", "b", "s", "b"),
    CheckpointProof: ("i", "i", "b", "M:Checkpoint"),
    PreparedProof: ("m:PrePrepare", "M:Vote"),
    ViewChange: ("i", "i", "m:CheckpointProof", "M:PreparedProof", "s", "b"),
    NewView: ("i", "i", "M:ViewChange", "M:PrePrepare", "s", "b"),
    CommitCertificate: ("i", "i", "i", "b", "P"),
    CertifiedBatch: ("M:Entry", "m:CommitCertificate"),
    Snapshot: ("i", "i", "b", "S", "i"),
    FetchState: ("i", "i"),
    StateReply: ("M:CertifiedBatch", "o:CheckpointProof", "o:Snapshot", "o:NewView"),
    PersistView: ("i",),
    PersistVote: ("b", "i", "i", "b"),
    PersistPrepared: ("m:PreparedProof",),
    PersistExecuted: ("i", "b", "m:CertifiedBatch", "i"),
    PersistStable: ("m:CheckpointProof", "m:Snapshot", "i"),
    PersistViewChange: ("m:ViewChange",),
    PersistEpoch: ("i", "S", "i"),
    PersistNewView: ("m:NewView",),
    PersistSnapshot: ("m:Snapshot", "m:CheckpointProof"),
}
_BY_NAME = {cls.__name__: cls for cls in _SCHEMA}
_TAGS = {cls: tag for tag, cls in enumerate(_SCHEMA)}
_BY_TAG = dict(enumerate(_SCHEMA))
_FIELDS = {cls: tuple(cls.__dataclass_fields__) for cls in _SCHEMA}  # type: ignore[attr-defined]


def _to_plain(obj: Any) -> list[Any]:
    cls = type(obj)
    out: list[Any] = []
    for name, kind in zip(_FIELDS[cls], _SCHEMA[cls], strict=True):
        value = getattr(obj, name)
        if kind in ("i", "b", "s"):
            out.append(value)
        elif kind == "S":
            out.append(list(value))
        elif kind == "P":
            out.append([[peer, sig] for peer, sig in value])
        elif kind.startswith("M:"):
            out.append([_to_plain(item) for item in value])
        elif kind.startswith("o:"):
            out.append(None if value is None else _to_plain(value))
        else:
            out.append(_to_plain(value))
    return out


_SCALARS = {"i": int, "b": bytes, "s": str}


def _from_plain(cls: type, value: Any) -> Any:
    kinds = _SCHEMA[cls]
    if type(value) is not list or len(value) != len(kinds):
        raise CodecError(f"{cls.__name__}: expected an array of {len(kinds)}")
    args: list[Any] = []
    for kind, item in zip(kinds, value, strict=True):
        scalar = _SCALARS.get(kind)
        if scalar is not None:
            if type(item) is not scalar:
                raise CodecError(f"{cls.__name__}: expected {scalar.__name__}")
            args.append(item)
        elif kind == "S":
            if type(item) is not list or not all(type(x) is str for x in item):
                raise CodecError(f"{cls.__name__}: expected an array of text")
            args.append(tuple(item))
        elif kind == "P":
            args.append(_pairs(item, cls))
        else:
            prefix, name = kind.split(":")
            inner = _BY_NAME[name]
            if prefix == "M":
                if type(item) is not list:
                    raise CodecError(f"{cls.__name__}: expected an array of {name}")
                args.append(tuple(_from_plain(inner, x) for x in item))
            elif prefix == "o":
                args.append(None if item is None else _from_plain(inner, item))
            else:
                args.append(_from_plain(inner, item))
    return cls(*args)


def _pairs(item: Any, cls: type) -> tuple[tuple[str, bytes], ...]:
    if type(item) is not list:
        raise CodecError(f"{cls.__name__}: expected signature pairs")
    pairs = []
    for pair in item:
        if type(pair) is not list or len(pair) != 2:
            raise CodecError(f"{cls.__name__}: a signature pair is [peer, signature]")
        if type(pair[0]) is not str or type(pair[1]) is not bytes:
            raise CodecError(f"{cls.__name__}: a signature pair is [text, bytes]")
        pairs.append((pair[0], pair[1]))
    return tuple(pairs)


def encode(obj: Any) -> bytes:
    """The CBOR bytes of a message or persist record."""
    tag = _TAGS.get(type(obj))
    if tag is None:
        raise CodecError(f"cannot encode {type(obj).__name__}")
    try:
        data: bytes = cbor.encode([tag, *_to_plain(obj)])
    except EncodeError as error:
        raise CodecError(f"cannot encode {type(obj).__name__}: {error}") from error
    return data


def decode(data: bytes) -> Any:
    """The message or record in `data`; raises CodecError."""
    try:
        value = cbor.decode(data, DECODE_LIMITS)
    except DecodeError as error:
        raise CodecError(f"not canonical CBOR: {error}") from error
    if type(value) is not list or not value or type(value[0]) is not int:
        raise CodecError("expected [tag, fields...]")
    cls = _BY_TAG.get(value[0])
    if cls is None:
        raise CodecError(f"unknown tag {value[0]}")
    return _from_plain(cls, value[1:])


def encode_durable(state: DurableState) -> bytes:
    """A whole DurableState (the base a host compacts its record log into)."""
    plain = [
        state.epoch,
        list(state.members),
        state.epoch_start_seq,
        state.view,
        state.last_executed,
        state.chain_hash,
        state.start_chain,
        None if state.stable is None else _to_plain(state.stable),
        None if state.stable_snapshot is None else _to_plain(state.stable_snapshot),
        None if state.view_change is None else _to_plain(state.view_change),
        None if state.new_view is None else _to_plain(state.new_view),
        [[k, v, s, d] for (k, v, s), d in state.votes.items()],
        [_to_plain(p) for p in state.prepared.values()],
        [_to_plain(b) for b in state.retained.values()],
    ]
    data: bytes = cbor.encode(plain)
    return data


def decode_durable(data: bytes) -> DurableState:
    """Inverse of encode_durable; raises CodecError."""
    try:
        value = cbor.decode(data, DECODE_LIMITS)
        if type(value) is not list or len(value) != 14:
            raise CodecError("a durable state is an array of 14")
        (
            epoch,
            members,
            start,
            view,
            executed,
            chain,
            start_chain,
            stable,
            snap,
            vc,
            nv,
            votes,
            prepared,
            retained,
        ) = value
        state = DurableState(epoch, tuple(members), start, view, executed, chain)
        state.start_chain = start_chain
        state.stable = None if stable is None else _from_plain(CheckpointProof, stable)
        state.stable_snapshot = None if snap is None else _from_plain(Snapshot, snap)
        state.view_change = None if vc is None else _from_plain(ViewChange, vc)
        state.new_view = None if nv is None else _from_plain(NewView, nv)
        state.votes = {(k, v, s): d for k, v, s, d in votes}
        proofs = [_from_plain(PreparedProof, p) for p in prepared]
        state.prepared = {p.pre_prepare.seq: p for p in proofs}
        batches = [_from_plain(CertifiedBatch, b) for b in retained]
        state.retained = {b.certificate.seq: b for b in batches}
    except (DecodeError, TypeError, ValueError) as error:
        raise CodecError(f"bad durable state: {error}") from error
    return state
