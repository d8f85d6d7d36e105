"""Bridged devices' update offers in the round machine: carried by a cohort gateway,
signed by the device's own key, capped per gateway; every other offer is a typed drop."""

from __future__ import annotations

import dataclasses
import hashlib
import random

import pytest

from agentmesh.core.identity import Identity, verify_from_peer_id
from agentmesh.core.node import Send
from agentmesh.core.rounds import RoundsConfig, RoundsMachine
from agentmesh.core.rounds.entries import (
    RoundStart,
    UpdateOffer,
    offer_from_wire,
    sign_device_offer,
    sign_offer,
    sign_result,
    update_payload,
)
from agentmesh.core.rounds.machine import FetchRequest
from agentmesh.core.rounds.roles import genesis_roles
from agentmesh.core.rounds.testing import ALL_ROLES, fake_delta, initial_model

PARAMS = 16
CAP = 2
MEMBERS = {i.peer_id: i for i in (Identity.from_seed(bytes([k + 1]) * 32) for k in range(4))}
DEVICES = [Identity.from_seed(bytes([k + 100]) * 32) for k in range(CAP + 1)]
OUTSIDER = Identity.from_seed(b"\x77" * 32)
MODEL = initial_model(PARAMS)
GENESIS = genesis_roles("devtest", dict.fromkeys(MEMBERS, ALL_ROLES),
                        hashlib.sha256(MODEL).digest(), 4)  # fmt: skip
CONFIG = RoundsConfig(params=PARAMS, window_ms=400, takeover_ms=300, abort_after_ms=2000,
                      device_offers_per_gateway_max=CAP, device_samples_max=64)  # fmt: skip
ME, GATEWAY, OTHER = GENESIS.committee[0], GENESIS.committee[1], GENESIS.committee[2]


def started(config: RoundsConfig = CONFIG) -> RoundsMachine:
    machine = RoundsMachine(MEMBERS[ME], verify_from_peer_id, GENESIS, config, MODEL,
                            random.Random(1))  # fmt: skip
    machine.start(0)
    machine.on_decided([RoundStart(1, GENESIS.initial_model, GENESIS.cohort, 400).entry()], 0)
    machine.take_outbox()
    assert machine.current is not None
    return machine


def device_offer(device: Identity, via: str = GATEWAY, samples: int = 20) -> UpdateOffer:
    delta = fake_delta(device.peer_id, 1, PARAMS)
    digest = hashlib.sha256(delta).digest()
    return sign_device_offer(device, GENESIS.genesis_id, 1, digest, samples, via)


def test_a_device_offer_carried_by_its_cohort_gateway_is_accepted_and_fetched_from_it() -> None:
    machine = started()
    offer = device_offer(DEVICES[0])
    machine.receive(offer, GATEWAY, 10)
    assert machine.current is not None and machine.current.offers[DEVICES[0].peer_id] == offer
    machine.tick(10 + CONFIG.fetch_retry_ms)
    fetches = [s for s in machine.take_outbox() if isinstance(s, Send)]
    assert fetches == [Send(GATEWAY, FetchRequest(offer.digest))], "the carrier serves the blob"
    machine.on_blob(GATEWAY, fake_delta(DEVICES[0].peer_id, 1, PARAMS), 300)
    assert offer.digest in machine.current.updates
    assert not any(name.startswith("dropped") for name in machine.counters)


def forged(offer: UpdateOffer) -> UpdateOffer:
    return dataclasses.replace(offer, signature=bytes(64))


@pytest.mark.parametrize(
    ("offer", "sender", "counter"),
    [
        (device_offer(DEVICES[0]), OTHER, "dropped_device_offer_wrong_carrier"),
        (device_offer(DEVICES[0], via=OUTSIDER.peer_id), OUTSIDER.peer_id,
         "dropped_device_offer_not_via_cohort"),
        (device_offer(DEVICES[0], samples=65), GATEWAY, "dropped_device_offer_samples"),
        (forged(device_offer(DEVICES[0])), GATEWAY, "dropped_offer_bad_signature"),
        (sign_device_offer(MEMBERS[OTHER], GENESIS.genesis_id, 1, b"d" * 32, 5, GATEWAY),
         GATEWAY, "dropped_device_offer_trainer_is_member"),
    ],
    ids=["wrong-carrier", "not-via-cohort", "samples-over-cap", "bad-signature",
         "member-as-device"],
)  # fmt: skip
def test_a_device_offer_breaking_a_rule_is_a_counted_drop(
    offer: UpdateOffer, sender: str, counter: str
) -> None:
    machine = started()
    machine.receive(offer, sender, 10)
    assert machine.counters.get(counter) == 1
    assert machine.current is not None and offer.trainer not in machine.current.offers
    machine.check_invariants()


def test_a_gateway_carries_at_most_the_cap_of_device_offers_per_round() -> None:
    machine = started()
    for device in DEVICES:
        machine.receive(device_offer(device), GATEWAY, 10)
    assert machine.current is not None
    carried = [o for o in machine.current.offers.values() if o.via == GATEWAY]
    assert len(carried) == CAP
    assert machine.counters.get("dropped_device_offer_over_cap") == 1
    # the same device's offer again is not a new one (no cap counted against it)
    machine.receive(device_offer(DEVICES[0]), GATEWAY, 11)
    assert machine.counters.get("dropped_device_offer_over_cap") == 1


def test_device_offers_before_the_round_start_wait_within_the_cap() -> None:
    machine = RoundsMachine(MEMBERS[ME], verify_from_peer_id, GENESIS, CONFIG, MODEL,
                            random.Random(1))  # fmt: skip
    machine.start(0)
    for device in DEVICES:
        machine.receive(device_offer(device), GATEWAY, 1)
    assert len(machine.early) == CAP
    machine.on_decided([RoundStart(1, GENESIS.initial_model, GENESIS.cohort, 400).entry()], 2)
    assert machine.current is not None and len(machine.current.offers) == CAP


def result_with(devices: list[Identity]) -> bytes:
    """A decided round_result of the round's first aggregator listing these device offers."""
    aggregator = MEMBERS[started().current.aggregators[0]]  # type: ignore[union-attr]
    member = sign_offer(MEMBERS[GATEWAY], GENESIS.genesis_id, 1, b"g" * 32, 10)
    offers = sorted([member, *(device_offer(d) for d in devices)], key=lambda o: o.trainer)
    return sign_result(aggregator, GENESIS.genesis_id, 1, b"m" * 32, CONFIG.rule.name,
                       tuple(offers)).entry().body  # fmt: skip


def test_results_are_judged_by_the_same_device_rules() -> None:
    from agentmesh.core.consensus import Entry

    within = started()
    within.on_decided([Entry("round_result", result_with(DEVICES[:CAP]))], 5)
    assert within.current is not None and len(within.current.candidates) == 1
    assert "ignored_invalid_result" not in within.counters
    over = started()
    over.on_decided([Entry("round_result", result_with(DEVICES))], 5)
    assert over.counters.get("ignored_invalid_result") == 1
    assert over.current is not None and not over.current.candidates


def test_device_offers_travel_with_via_and_plain_offers_keep_their_bytes() -> None:
    offer = device_offer(DEVICES[0])
    wire = offer.to_wire()
    assert len(wire) == 5 and wire[4] == GATEWAY
    assert offer_from_wire(1, wire) == offer
    assert offer.verify(GENESIS.genesis_id, verify_from_peer_id)
    moved = dataclasses.replace(offer, via=OTHER)
    assert not moved.verify(GENESIS.genesis_id, verify_from_peer_id), "via is signed"
    plain = sign_offer(MEMBERS[GATEWAY], GENESIS.genesis_id, 1, b"d" * 32, 10)
    assert len(plain.to_wire()) == 4 and offer_from_wire(1, plain.to_wire()) == plain
    expected = (b"agentmesh/round-update/1\x00" + GENESIS.genesis_id
                + (1).to_bytes(8, "big") + (10).to_bytes(4, "big") + b"d" * 32
                + GATEWAY.encode())  # fmt: skip
    assert update_payload(GENESIS.genesis_id, 1, GATEWAY, b"d" * 32, 10) == expected


def test_a_cap_of_zero_refuses_every_device_offer() -> None:
    machine = started(dataclasses.replace(CONFIG, device_offers_per_gateway_max=0))
    machine.receive(device_offer(DEVICES[0]), GATEWAY, 10)
    assert machine.current is not None
    assert not [o for o in machine.current.offers.values() if o.via == GATEWAY]
    assert machine.counters.get("dropped_device_offer_over_cap") == 1
