"""Membership messages and capability adverts: wire forms, bounds, signatures."""

from __future__ import annotations

import math

import cbor2
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmesh.core.admission import OpenCredential, PskCredential
from agentmesh.core.identity import Identity, verify_from_peer_id
from agentmesh.core.membership import (
    Ack,
    AdvertError,
    Alive,
    Capabilities,
    CapabilityAdvert,
    Dead,
    Gossip,
    JoinAccept,
    JoinChallenge,
    JoinHello,
    JoinReject,
    JoinRequest,
    Left,
    MembershipConfig,
    MembershipWireError,
    Nack,
    Ping,
    PingReq,
    Suspect,
    SyncRequest,
    message_from_wire,
    sign_advert,
)
from agentmesh.core.membership.config import (
    retransmit_limit,
    suspicion_confirmations_expected,
    suspicion_timeout_bounds_ms,
    suspicion_timeout_ms,
)
from agentmesh.core.membership.gossip import GossipQueue

A = Identity.from_seed(bytes([1] * 32))
B = Identity.from_seed(bytes([2] * 32))
CAPS = Capabilities(8, 250, 16_384, 8_000, 80, ("gpu",), "litert", 100_000, "laptop", ("trainer",))


def advert() -> CapabilityAdvert:
    return sign_advert(A, 3, 1, CAPS)


def all_messages() -> list[object]:
    updates = (
        Alive(A.peer_id, 3, advert()),
        Suspect(B.peer_id, 1, A.peer_id),
        Dead(B.peer_id, 2, A.peer_id),
        Left(A.peer_id, 4),
    )
    return [
        Ping(1, B.peer_id, updates),
        PingReq(2, B.peer_id, ()),
        Ack(3, updates[:2]),
        Nack(4),
        Gossip(updates),
        JoinHello("lab", b"n" * 16),
        JoinChallenge("lab", b"n" * 16, b"m" * 16, b"p" * 32),
        JoinRequest("lab", b"n" * 16, 2, advert(), PskCredential(b"c" * 32)),
        JoinRequest("lab", b"n" * 16, 0, None, OpenCredential()),
        JoinAccept("lab", 1, updates, 0, 2),
        JoinReject("lab", "bad_mac"),
        SyncRequest("lab"),
    ]


@pytest.mark.parametrize("message", all_messages(), ids=lambda m: type(m).__name__)
def test_wire_round_trip_through_deterministic_cbor(message: object) -> None:
    wire = message.to_wire()  # type: ignore[attr-defined]
    encoded = cbor2.dumps(wire, canonical=True)
    assert message_from_wire(cbor2.loads(encoded)) == message


def test_advert_signature_and_order() -> None:
    signed = advert()
    assert verify_from_peer_id(A.peer_id, signed.signed_bytes(), signed.signature)
    assert not verify_from_peer_id(B.peer_id, signed.signed_bytes(), signed.signature)
    newer = sign_advert(A, 3, 2, CAPS)
    rejoined = sign_advert(A, 4, 1, CAPS)
    assert signed.order_key < newer.order_key < rejoined.order_key
    assert len(cbor2.dumps(signed.to_wire(), canonical=True)) <= 512


@pytest.mark.parametrize(
    "change",
    [
        {"trainer_runtime": "torch"},
        {"device_class": "phone"},
        {"roles_allowed": ("king",)},
        {"battery_percent": 101},
        {"ram_free_mb": 20_000},
        {"accelerators": ("a", "b", "c", "d", "e")},
        {"cpu_cores": -1},
    ],
)
def test_capabilities_reject_out_of_range(change: dict[str, object]) -> None:
    fields = {name: getattr(CAPS, name) for name in CAPS.__dataclass_fields__}
    fields.update(change)
    with pytest.raises(AdvertError):
        Capabilities(**fields)  # type: ignore[arg-type]


def test_alive_with_another_peers_advert_is_rejected() -> None:
    wire = Alive(B.peer_id, 1, advert()).to_wire()
    with pytest.raises(MembershipWireError):
        message_from_wire({"t": "gossip", "u": [wire]})


def test_updates_per_message_are_bounded() -> None:
    update = Left(A.peer_id, 1).to_wire()
    with pytest.raises(MembershipWireError):
        message_from_wire({"t": "gossip", "u": [update] * 129})


wire_values = st.recursive(
    st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(max_size=10), st.binary(max_size=20)
    ),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=5)
    ),
    max_leaves=20,
)


@given(
    st.dictionaries(st.sampled_from(["t", "seq", "target", "u", "mesh", "nonce", "k"]), wire_values)
)
def test_from_wire_raises_only_typed_errors(obj: dict[str, object]) -> None:
    for kind in ("ping", "gossip", "join", "join_accept", "ack"):
        try:
            message_from_wire({**obj, "t": kind})
        except MembershipWireError:
            pass


def test_lifeguard_suspicion_formula_matches_memberlist() -> None:
    config = MembershipConfig()  # alpha 4, beta 6, 1 s interval
    low, high = suspicion_timeout_bounds_ms(config, 1_000)
    assert (low, high) == (12_000, 72_000)
    expected = suspicion_confirmations_expected(config, 1_000)
    assert expected == 2
    assert suspicion_timeout_ms(low, high, 0, expected) == 72_000
    one = 72_000 - 60_000 * math.log(2) / math.log(3)
    assert suspicion_timeout_ms(low, high, 1, expected) == int(one)
    assert suspicion_timeout_ms(low, high, 2, expected) == 12_000
    assert suspicion_confirmations_expected(config, 3) == 0
    assert retransmit_limit(4, 1_000) == 16 and retransmit_limit(4, 10_000) == 20


def test_gossip_queue_prefers_least_sent_and_retires_at_limit() -> None:
    queue = GossipQueue(items_max=3)
    queue.push(Left("a", 1))
    assert queue.take(1, limit=2) == (Left("a", 1),)
    queue.push(Left("b", 1))
    assert queue.take(1, limit=2) == (Left("b", 1),)  # b was sent less often
    assert len(queue.take(5, limit=2)) == 2 and len(queue) == 0  # both hit the limit


def test_gossip_queue_replaces_per_subject_and_drops_when_full() -> None:
    queue = GossipQueue(items_max=2)
    queue.push(Suspect("a", 1, "x"))
    queue.push(Dead("a", 1, "x"))
    assert len(queue) == 1 and queue.take(5, 10) == (Dead("a", 1, "x"),)
    queue.push(Left("b", 1))
    queue.push(Left("c", 1))
    assert queue.dropped == 1 and len(queue) == 2 and "a" not in queue
