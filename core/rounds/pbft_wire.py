"""Wire and storage form of the PBFT objects (core/consensus) as nested CBOR lists.

core/consensus keeps its messages as frozen dataclasses and has no codec yet, so
the rounds layer carries them: `to_wire(obj)` gives `[tag, field, ...]` with
tuples as lists, `from_wire(value)` rebuilds the exact dataclasses (the replica's
`wellformed` checks rely on `type(x) is Entry`, ...). The decoder is driven by
each class's type hints, checks every field's type and raises `PbftWireError`
on anything else, so a peer's bytes never reach the replica malformed. The
same form persists the replica's `Event("persist")` records (durable.py).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any

from agentmesh.core.consensus import durable, messages

ITEMS_MAX = 4096  # elements of any one list (the envelope size bounds the total)


class PbftWireError(ValueError):
    """A value that is not the wire form of a PBFT object."""


_CLASSES: tuple[type, ...] = (
    messages.Entry,
    messages.Request,
    messages.Vote,
    messages.PrePrepare,
    messages.Checkpoint,
    messages.PreparedProof,
    messages.CheckpointProof,
    messages.ViewChange,
    messages.NewView,
    messages.CommitCertificate,
    messages.CertifiedBatch,
    messages.Snapshot,
    messages.FetchState,
    messages.StateReply,
    durable.PersistView,
    durable.PersistVote,
    durable.PersistPrepared,
    durable.PersistExecuted,
    durable.PersistStable,
    durable.PersistViewChange,
    durable.PersistEpoch,
    durable.PersistNewView,
    durable.PersistSnapshot,
)
# Tags are positions in _CLASSES: append only, never reorder.
_TAG_OF: dict[type, int] = {cls: tag for tag, cls in enumerate(_CLASSES, start=1)}

Decoder = Callable[[Any], Any]


def to_wire(obj: Any) -> Any:
    """The nested-list form of a PBFT dataclass (or of a field value)."""
    tag = _TAG_OF.get(type(obj))
    if tag is not None:
        return [tag, *(to_wire(getattr(obj, f.name)) for f in dataclasses.fields(obj))]
    if isinstance(obj, tuple):
        return [to_wire(item) for item in obj]
    if obj is None or type(obj) in (int, str, bytes):
        return obj
    raise PbftWireError(f"cannot encode {type(obj).__name__}")


def from_wire(value: Any) -> Any:
    """The dataclass `value` encodes; PbftWireError for anything malformed."""
    return _decode_object(value)


def _decode_object(value: Any) -> Any:
    if type(value) is not list or not value or type(value[0]) is not int:
        raise PbftWireError("expected [tag, fields...]")
    tag = value[0]
    if not 1 <= tag <= len(_CLASSES):
        raise PbftWireError(f"unknown tag {tag}")
    cls = _CLASSES[tag - 1]
    decoders = _field_decoders(cls)
    if len(value) != len(decoders) + 1:
        raise PbftWireError(f"{cls.__name__} needs {len(decoders)} fields")
    return cls(*(decode(item) for decode, item in zip(decoders, value[1:], strict=True)))


_DECODERS: dict[type, tuple[Decoder, ...]] = {}


def _field_decoders(cls: type) -> tuple[Decoder, ...]:
    found = _DECODERS.get(cls)
    if found is None:
        hints = typing.get_type_hints(cls, vars(durable) | vars(messages))
        found = tuple(_decoder_for(hints[f.name]) for f in dataclasses.fields(cls))
        _DECODERS[cls] = found
    return found


def _decoder_for(hint: Any) -> Decoder:
    """A checking decoder for one type hint (int, str, bytes, tuples, unions, dataclasses)."""
    if hint in (int, str, bytes):
        return _scalar(hint)
    if hint in _TAG_OF:
        return _instance(hint)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (types.UnionType, typing.Union) and len(args) == 2 and type(None) in args:
        inner = _decoder_for(next(a for a in args if a is not type(None)))
        return lambda v: None if v is None else inner(v)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        item = _decoder_for(args[0])
        return lambda v: tuple(item(x) for x in _list(v, ITEMS_MAX))
    if origin is tuple:
        parts = tuple(_decoder_for(a) for a in args)
        return lambda v: _fixed_tuple(v, parts)
    raise TypeError(f"no wire decoder for {hint!r}")  # a programming error, at import


def _scalar(kind: type) -> Decoder:
    def check(value: Any) -> Any:
        if type(value) is not kind:
            raise PbftWireError(f"expected {kind.__name__}, got {type(value).__name__}")
        return value

    return check


def _instance(cls: type) -> Decoder:
    def check(value: Any) -> Any:
        obj = _decode_object(value)
        if type(obj) is not cls:
            raise PbftWireError(f"expected {cls.__name__}, got {type(obj).__name__}")
        return obj

    return check


def _list(value: Any, size_max: int) -> list[Any]:
    if type(value) is not list or len(value) > size_max:
        raise PbftWireError("expected a bounded list")
    return value


def _fixed_tuple(value: Any, parts: tuple[Decoder, ...]) -> tuple[Any, ...]:
    items = _list(value, len(parts))
    if len(items) != len(parts):
        raise PbftWireError("tuple of the wrong length")
    return tuple(decode(item) for decode, item in zip(parts, items, strict=True))


# Build every decoder at import: a type hint the codec cannot follow fails here, once.
for _cls in _CLASSES:
    _field_decoders(_cls)
