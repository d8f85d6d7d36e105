"""Signed envelopes: seal/open, typed rejections, the registry, golden envelopes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.identity import Identity, verify
from agentmesh.core.limits import Limits
from agentmesh.core.node import ContractError, Signer
from agentmesh.core.wire import (
    DEFAULT_REGISTRY,
    GOSSIP,
    SIGNING_CONTEXT,
    BadSignature,
    Field,
    InvalidSender,
    MessageType,
    Registry,
    RegistryError,
    SchemaError,
    TooLarge,
    UnknownMessageType,
    UnknownVersion,
    WireError,
    WrongMesh,
    cbor,
    open_envelope,
    seal,
    signing_bytes,
)

ALICE = Identity.from_seed(bytes(range(32)))
BOB = Identity.from_seed(bytes(range(1, 33)))
MESH = "mesh-test"
GOSSIP_BODY = {"topic": "models", "payload": b"\x01" * 100, "hops": 1}
VECTORS = Path(__file__).resolve().parents[1] / "vectors"


def _resign(raw: dict[str, Any], signer: Signer = ALICE) -> bytes:
    """Re-sign a hand-edited envelope map, to reach checks behind the signature."""
    unsigned = {k: v for k, v in raw.items() if k != "sig"}
    return cbor.encode({**unsigned, "sig": signer.sign(signing_bytes(unsigned))})


def test_identity_satisfies_the_signer_protocol() -> None:
    assert isinstance(ALICE, Signer)


@pytest.mark.parametrize(
    ("type_name", "body"),
    [("ping", {"nonce": b"12345678"}), ("ack", {"nonce": b""}), ("gossip", GOSSIP_BODY)],
)
def test_seal_then_open(type_name: str, body: dict[str, Any]) -> None:
    wire = seal(ALICE, type_name, MESH, (42,), body)
    envelope = open_envelope(wire, mesh=MESH)
    assert envelope.type_name == type_name
    assert envelope.sender == ALICE.peer_id
    assert envelope.position == (42,)
    assert envelope.mesh == MESH and envelope.version == 1
    assert dict(envelope.body) == body


def test_signature_covers_context_and_everything_but_itself() -> None:
    raw = cbor.decode(seal(ALICE, "gossip", MESH, (1,), GOSSIP_BODY))
    unsigned = {k: v for k, v in raw.items() if k != "sig"}
    assert verify(ALICE.public_key, SIGNING_CONTEXT + cbor.encode(unsigned), raw["sig"])
    assert not verify(ALICE.public_key, cbor.encode(unsigned), raw["sig"])


def test_golden_envelopes_open() -> None:
    golden = json.loads((VECTORS / "cbor_golden.json").read_text(encoding="utf-8"))["vectors"]
    envelopes = [v for v in golden if v["name"].startswith("envelope ")]
    assert len(envelopes) == 3
    for vector in envelopes:
        opened = open_envelope(bytes.fromhex(vector["hex"]), mesh="mesh-golden")
        assert opened.sender == ALICE.peer_id


def test_tampered_field_breaks_the_signature() -> None:
    raw = cbor.decode(seal(ALICE, "gossip", MESH, (1,), GOSSIP_BODY))
    raw["body"]["hops"] = 2
    with pytest.raises(BadSignature):
        open_envelope(cbor.encode(raw))


def test_claiming_another_sender_fails_verification() -> None:
    raw = cbor.decode(seal(ALICE, "ping", MESH, (1,), {"nonce": b"n"}))
    raw["from"] = BOB.peer_id
    with pytest.raises(BadSignature):
        open_envelope(cbor.encode(raw))


def test_sender_must_be_a_peer_id() -> None:
    raw = cbor.decode(seal(ALICE, "ping", MESH, (1,), {"nonce": b"n"}))
    raw["from"] = "not-a-peer-id"
    with pytest.raises(InvalidSender):
        open_envelope(_resign(raw))


def test_verify_is_injected() -> None:
    seen: list[str] = []

    def refuse(peer_id: str, data: bytes, signature: bytes) -> bool:
        seen.append(peer_id)
        return False

    wire = seal(ALICE, "ping", MESH, (1,), {"nonce": b"n"})
    with pytest.raises(BadSignature):
        open_envelope(wire, verify=refuse)
    assert seen == [ALICE.peer_id]


def test_unknown_version_and_type() -> None:
    with pytest.raises(UnknownVersion):
        open_envelope(seal(ALICE, "ping", MESH, (1,), {"nonce": b""}, version=2))
    extended = DEFAULT_REGISTRY.copy()
    extended.register(MessageType(999, "test.extra", {"n": Field("uint")}))
    wire = seal(ALICE, "test.extra", MESH, (1,), {"n": 5}, registry=extended)
    assert open_envelope(wire, registry=extended).body == {"n": 5}
    with pytest.raises(UnknownMessageType):
        open_envelope(wire)
    assert "test.extra" not in DEFAULT_REGISTRY


def test_wrong_mesh() -> None:
    with pytest.raises(WrongMesh):
        open_envelope(seal(ALICE, "ping", "other-mesh", (1,), {"nonce": b""}), mesh=MESH)


def test_size_limits() -> None:
    wire = seal(ALICE, "gossip", MESH, (1,), GOSSIP_BODY)
    with pytest.raises(TooLarge):
        open_envelope(wire, limits=Limits(envelope_bytes_max=len(wire) - 1))
    small = Registry((MessageType(GOSSIP.number, "gossip", GOSSIP.body, size_bytes_max=100),))
    with pytest.raises(TooLarge):
        open_envelope(wire, registry=small)
    with pytest.raises(TooLarge):
        seal(ALICE, "gossip", MESH, (1,), GOSSIP_BODY, registry=small)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"topic": "t", "payload": b""}, "missing field 'hops'"),
        ({**GOSSIP_BODY, "extra": 1}, "unknown field"),
        ({**GOSSIP_BODY, "hops": -1}, "expected uint"),
        ({**GOSSIP_BODY, "hops": True}, "expected uint"),
        ({**GOSSIP_BODY, "topic": "t" * 65}, "exceed the limit"),
        ({**GOSSIP_BODY, "payload": "text"}, "expected bytes"),
    ],
)
def test_body_schema(body: dict[str, Any], fragment: str) -> None:
    with pytest.raises(SchemaError, match=fragment):
        seal(ALICE, "gossip", MESH, (1,), body)
    raw = cbor.decode(seal(ALICE, "gossip", MESH, (1,), GOSSIP_BODY))
    raw["body"] = body
    with pytest.raises(SchemaError, match=fragment):
        open_envelope(_resign(raw))


@pytest.mark.parametrize(
    ("key", "value"),
    [("pos", [1, 2]), ("pos", [-1]), ("pos", "1"), ("mesh", ""), ("mesh", "m" * 65), ("mesh", 7)],
)
def test_header_shape(key: str, value: Any) -> None:
    raw = cbor.decode(seal(ALICE, "ping", MESH, (1,), {"nonce": b""}))
    raw[key] = value
    with pytest.raises(SchemaError):
        open_envelope(_resign(raw))


def test_envelope_must_have_exactly_the_keys() -> None:
    raw = cbor.decode(seal(ALICE, "ping", MESH, (1,), {"nonce": b""}))
    for broken in ({**raw, "x": 1}, {k: v for k, v in raw.items() if k != "mesh"}, [1, 2]):
        with pytest.raises(SchemaError):
            open_envelope(cbor.encode(broken))


def test_round_positions() -> None:
    registry = Registry(
        (MessageType(48, "test.prepare", {"digest": Field("bytes")}, position="round"),)
    )
    wire = seal(BOB, "test.prepare", MESH, (3, 7, 0), {"digest": bytes(32)}, registry=registry)
    assert open_envelope(wire, registry=registry).position == (3, 7, 0)
    with pytest.raises(SchemaError, match="epoch, round, view"):
        seal(BOB, "test.prepare", MESH, (3,), {"digest": bytes(32)}, registry=registry)


def test_registry_rules() -> None:
    registry = Registry((GOSSIP,))
    registry.register(GOSSIP)  # identical: no-op
    with pytest.raises(RegistryError):
        registry.register(MessageType(GOSSIP.number, "other"))
    with pytest.raises(RegistryError):
        registry.register(MessageType(77, "gossip"))
    with pytest.raises(RegistryError):
        Field("float64")
    with pytest.raises(RegistryError):
        MessageType(0, "zero")
    assert issubclass(RegistryError, ContractError)
    with pytest.raises(UnknownMessageType):
        registry.by_number("3")
    with pytest.raises(UnknownMessageType):
        registry.by_name("nope")


def test_nested_records_lists_tensors_and_peer_ids() -> None:
    registry = Registry(
        (
            MessageType(
                96,
                "test.update",
                {
                    "weights": Field("list", size_max=4, items=Field("tensor", size_max=64)),
                    "meta": Field("map", fields={"loss": Field("float"), "peer": Field("peer_id")}),
                    "note": Field("text", required=False),
                },
            ),
        )
    )
    tensor_map = {"dtype": "float32", "shape": [2], "data": bytes(8)}
    body = {"weights": [tensor_map], "meta": {"loss": 0.25, "peer": BOB.peer_id}}
    wire = seal(ALICE, "test.update", MESH, (1,), body, registry=registry)
    assert open_envelope(wire, registry=registry).body == body
    for bad in (
        {**body, "weights": [tensor_map] * 5},
        {**body, "weights": [{**tensor_map, "shape": [3]}]},
        {**body, "meta": {"loss": 1, "peer": BOB.peer_id}},
        {**body, "meta": {"loss": 0.5, "peer": "12D3KooWnope"}},
    ):
        with pytest.raises(SchemaError):
            seal(ALICE, "test.update", MESH, (1,), bad, registry=registry)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_envelopes_raise_only_wire_errors(data: st.DataObject) -> None:
    wire = bytearray(seal(ALICE, "gossip", MESH, (9,), GOSSIP_BODY))
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(wire) - 1))
        wire[index] = data.draw(st.integers(0, 255))
    try:
        open_envelope(bytes(wire), mesh=MESH)
    except WireError:
        pass
