"""Message types: number on the wire, name in code, body schema and size limit.

Each protocol module registers its own types at import time:

    from agentmesh.core.wire.registry import DEFAULT_REGISTRY, Field, MessageType
    DEFAULT_REGISTRY.register(MessageType(16, "swim.ping", {"incarnation": Field("uint")}))

Type numbers are allocated in ranges so that modules never collide:

    1-15      core transport and liveness (ping, ack, gossip)
    16-47     membership (SWIM, capability adverts)
    48-95     consensus (PBFT normal case, view change, checkpoints, state transfer)
    96-143    federated rounds, aggregation, secure aggregation
    144-191   blobs: chunk offers, requests, chunks
    192-255   gateway peers and microcontrollers
    256-      experiments and plug-ins (attacks, defences) in the simulator

Registering the same type twice is a no-op; a different type under a taken
number or name is a RegistryError (a programming error, caught at import).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from agentmesh.core import identity
from agentmesh.core.limits import KIB
from agentmesh.core.wire.errors import RegistryError, SchemaError, UnknownMessageType
from agentmesh.core.wire.tensor import TENSOR_BYTES_MAX, check_tensor

KINDS = frozenset(
    ("uint", "int", "bool", "float", "text", "bytes", "peer_id", "tensor", "list", "map")
)
POSITION_KINDS = {"seq": ("seq",), "round": ("epoch", "round", "view")}
MESSAGE_BYTES_MAX_DEFAULT = 64 * KIB
_UINT_LIMIT = 1 << 64


@dataclass(frozen=True, slots=True)
class Field:
    """One body field: its kind, whether it must be present, and a size bound.

    size_max counts bytes for text/bytes/tensor and elements for list/map.
    `items` checks each list element; `fields` makes a map a nested record.
    """

    kind: str
    required: bool = True
    size_max: int | None = None
    items: Field | None = None
    fields: Mapping[str, Field] | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise RegistryError(f"field kind {self.kind!r} is not one of {sorted(KINDS)}")


@dataclass(frozen=True, slots=True)
class MessageType:
    """A registered message type; `position` is "seq" or "round" (epoch, round, view)."""

    number: int
    name: str
    body: Mapping[str, Field] = field(default_factory=dict)
    size_bytes_max: int = MESSAGE_BYTES_MAX_DEFAULT
    position: str = "seq"

    def __post_init__(self) -> None:
        if not 0 < self.number < 1 << 32:
            raise RegistryError(f"type number {self.number} is outside 1..2**32-1")
        if self.position not in POSITION_KINDS:
            raise RegistryError(f"position {self.position!r} is not one of {list(POSITION_KINDS)}")
        object.__setattr__(self, "body", MappingProxyType(dict(self.body)))

    def validate_body(self, body: object) -> None:
        """Raise SchemaError unless `body` matches this type's schema."""
        _check_record(body, self.body, self.name)


class Registry:
    """Message types by number and by name."""

    def __init__(self, types: tuple[MessageType, ...] = ()) -> None:
        self._by_number: dict[int, MessageType] = {}
        self._by_name: dict[str, MessageType] = {}
        for message_type in types:
            self.register(message_type)

    def register(self, message_type: MessageType) -> MessageType:
        """Add a type; idempotent for an identical type, RegistryError on a clash."""
        for taken in (
            self._by_number.get(message_type.number),
            self._by_name.get(message_type.name),
        ):
            if taken is not None and taken != message_type:
                raise RegistryError(
                    f"{message_type.name!r} (#{message_type.number}) clashes with "
                    f"{taken.name!r} (#{taken.number})"
                )
        self._by_number[message_type.number] = message_type
        self._by_name[message_type.name] = message_type
        return message_type

    def by_number(self, number: object) -> MessageType:
        """The type for a wire number; UnknownMessageType otherwise."""
        found = self._by_number.get(number) if type(number) is int else None
        if found is None:
            raise UnknownMessageType(f"message type {number!r} is not registered")
        return found

    def by_name(self, name: str) -> MessageType:
        found = self._by_name.get(name)
        if found is None:
            raise UnknownMessageType(f"message type {name!r} is not registered")
        return found

    def copy(self) -> Registry:
        """An independent registry with the same types (for simulator plug-ins, tests)."""
        return Registry(tuple(self._by_number.values()))

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return len(self._by_number)


def _check_record(value: object, fields: Mapping[str, Field], where: str) -> None:
    if not isinstance(value, dict):
        raise SchemaError(f"{where}: expected a map, got {type(value).__name__}")
    unknown = [key for key in value if key not in fields]
    if unknown:
        raise SchemaError(f"{where}: unknown field(s) {sorted(map(repr, unknown))}")
    for name, spec in fields.items():
        if name in value:
            _check_field(value[name], spec, f"{where}.{name}")
        elif spec.required:
            raise SchemaError(f"{where}: missing field {name!r}")


def _check_size(size: int, spec: Field, where: str, unit: str) -> None:
    if spec.size_max is not None and size > spec.size_max:
        raise SchemaError(f"{where}: {size} {unit} exceed the limit of {spec.size_max}")


def _check_field(value: Any, spec: Field, where: str) -> None:
    kind = spec.kind
    if kind == "uint" or kind == "int":
        if type(value) is not int or (kind == "uint" and not 0 <= value < _UINT_LIMIT):
            raise SchemaError(f"{where}: expected {kind}, got {value!r:.40}")
    elif kind == "bool":
        if type(value) is not bool:
            raise SchemaError(f"{where}: expected bool, got {type(value).__name__}")
    elif kind == "float":
        if type(value) is not float:
            raise SchemaError(f"{where}: expected float, got {type(value).__name__}")
    elif kind in ("text", "peer_id"):
        if type(value) is not str:
            raise SchemaError(f"{where}: expected text, got {type(value).__name__}")
        _check_size(len(value.encode("utf-8", "surrogatepass")), spec, where, "bytes")
        if kind == "peer_id" and not identity.is_peer_id(value):
            raise SchemaError(f"{where}: {value!r:.60} is not an Ed25519 peer id")
    elif kind == "bytes":
        if type(value) is not bytes:
            raise SchemaError(f"{where}: expected bytes, got {type(value).__name__}")
        _check_size(len(value), spec, where, "bytes")
    elif kind == "tensor":
        check_tensor(value, spec.size_max if spec.size_max is not None else TENSOR_BYTES_MAX)
    elif kind == "list":
        if type(value) is not list:
            raise SchemaError(f"{where}: expected a list, got {type(value).__name__}")
        _check_size(len(value), spec, where, "elements")
        if spec.items is not None:
            for index, item in enumerate(value):
                _check_field(item, spec.items, f"{where}[{index}]")
    else:  # map
        if type(value) is not dict:
            raise SchemaError(f"{where}: expected a map, got {type(value).__name__}")
        _check_size(len(value), spec, where, "pairs")
        if spec.fields is not None:
            _check_record(value, spec.fields, where)


NONCE_BYTES_MAX = 32
GOSSIP_TOPIC_BYTES_MAX = 64
GOSSIP_PAYLOAD_BYTES_MAX = 60 * KIB

PING = MessageType(1, "ping", {"nonce": Field("bytes", size_max=NONCE_BYTES_MAX)}, 512)
ACK = MessageType(2, "ack", {"nonce": Field("bytes", size_max=NONCE_BYTES_MAX)}, 512)
GOSSIP = MessageType(
    3,
    "gossip",
    {
        "topic": Field("text", size_max=GOSSIP_TOPIC_BYTES_MAX),
        "payload": Field("bytes", size_max=GOSSIP_PAYLOAD_BYTES_MAX),
        "hops": Field("uint"),
    },
    size_bytes_max=GOSSIP_PAYLOAD_BYTES_MAX + 1 * KIB,
)

DEFAULT_REGISTRY = Registry((PING, ACK, GOSSIP))
"""The process-wide registry: protocol modules register their types into it on import."""
