"""The "gateway.bridged" message and the receivers' table of bridged devices."""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.identity import Identity
from agentmesh.core.wire import WireError, open_envelope, seal
from agentmesh.gateway_peer.bridged import (
    BRIDGED_TYPE,
    AdvertCache,
    BridgedView,
    bridged_bodies,
    bridged_item,
)
from agentmesh.gateway_peer.devices import BridgedAdvert
from agentmesh.gateway_peer.limits import DEFAULT_BRIDGE_LIMITS, BridgeLimits

MESH = "unit"
GATEWAY = Identity.from_seed(bytes([1]) * 32)
OTHER_GATEWAY = Identity.from_seed(bytes([2]) * 32)
RECEIVER = Identity.from_seed(bytes([3]) * 32)
CAPS = {
    "cores": 1,
    "load_pm": 0,
    "ram_mb": 0,
    "ram_free_mb": 0,
    "acc": [],
    "rt": "none",
    "bw_kbps": 0,
    "class": "mcu",
    "roles": [],
}
MCU = {"firmware": "amesh-1", "ram_bytes": 65536, "sensors": ["sim_temp"], "model_id": 0}


def device_signer(gateway: Identity, device_id: str) -> Identity:
    return Identity.from_seed(hashlib.sha256(gateway.seed + device_id.encode()).digest())


def advert(gateway: Identity, device_id: str, seq: int = 1, state: str = "alive") -> BridgedAdvert:
    return BridgedAdvert(
        peer_id=device_signer(gateway, device_id).peer_id,
        device_id=device_id,
        bridged_via=gateway.peer_id,
        state=state,
        incarnation=7,
        seq=seq,
        capabilities=dict(CAPS),
        mcu=dict(MCU),
        last_seen_ms=0,
    )


def bodies(
    gateway: Identity,
    device_ids: list[str],
    generation: int,
    limits: BridgeLimits = DEFAULT_BRIDGE_LIMITS,
) -> list[dict[str, Any]]:
    cache = AdvertCache(16)
    items = []
    for device_id in device_ids:
        bridged = advert(gateway, device_id)
        items.append(bridged_item(bridged, cache.sign(bridged, device_signer(gateway, device_id))))
    return bridged_bodies(gateway.peer_id, generation, items, limits)


def over_the_wire(sender: Identity, body: dict[str, Any]) -> dict[str, Any]:
    """Seal and open as the agent does: the registry checks the body's schema."""
    envelope = open_envelope(seal(sender, BRIDGED_TYPE.name, MESH, (1,), body), mesh=MESH)
    return dict(envelope.body)


class Membership:
    def __init__(self, *live: str) -> None:
        self.live = set(live)
        self.known = set(live)

    def view(self, limits: BridgeLimits = DEFAULT_BRIDGE_LIMITS) -> BridgedView:
        return BridgedView(
            RECEIVER.peer_id, self.live.__contains__, self.known.__contains__, limits
        )


def test_devices_listed_as_bridged_members_after_the_wire() -> None:
    view = Membership(GATEWAY.peer_id).view()
    for body in bodies(GATEWAY, ["mcu-a", "mcu-b", "mcu-c"], 10):
        view.receive(GATEWAY.peer_id, over_the_wire(GATEWAY, body), 1_000)
    members = view.members_status()
    assert [m["device_id"] for m in sorted(members, key=lambda m: m["device_id"])] == [
        "mcu-a",
        "mcu-b",
        "mcu-c",
    ]
    for member in members:
        assert member["bridged_via"] == GATEWAY.peer_id
        assert member["state"] == "alive" and member["roles"] == []
        assert member["capabilities"]["device_class"] == "mcu"
        assert member["capabilities"]["mcu"]["sensors"] == ["sim_temp"]
    assert view.gateways() == {GATEWAY.peer_id: 3}
    view.check_invariants()


def test_forged_misattributed_and_non_member_lists_are_refused() -> None:
    membership = Membership(GATEWAY.peer_id, OTHER_GATEWAY.peer_id)
    view = membership.view()
    (body,) = bodies(GATEWAY, ["mcu-a", "mcu-b"], 10)
    forged = dict(body)
    forged["devices"] = [dict(item) for item in body["devices"]]
    forged["devices"][0]["ad"] = {**body["devices"][0]["ad"], "seq": 99}  # signature breaks
    forged["devices"][1]["via"] = OTHER_GATEWAY.peer_id
    view.receive(GATEWAY.peer_id, forged, 1_000)
    assert view.members_status() == []
    assert view.counters["bridged_rejected_signature"] == 1
    assert view.counters["bridged_rejected_via"] == 1

    view.receive(OTHER_GATEWAY.peer_id, body, 1_000)  # relayed by someone else
    assert view.counters["bridged_rejected_via"] == 2
    membership.live.discard(GATEWAY.peer_id)
    view.receive(GATEWAY.peer_id, body, 1_000)
    assert view.counters["bridged_rejected_not_member"] == 1
    assert view.members_status() == []


def test_a_swim_member_id_or_another_gateways_device_is_a_conflict() -> None:
    membership = Membership(GATEWAY.peer_id, OTHER_GATEWAY.peer_id)
    view = membership.view()
    (body,) = bodies(GATEWAY, ["mcu-a", "mcu-b"], 10)
    membership.known.add(body["devices"][0]["ad"]["id"])
    view.receive(GATEWAY.peer_id, body, 1_000)
    assert len(view.members_status()) == 1
    # OTHER_GATEWAY re-sends GATEWAY's signed device (it saw it): it cannot take it over.
    stolen = {**body, "gw": OTHER_GATEWAY.peer_id}
    stolen["devices"] = [{**body["devices"][1], "via": OTHER_GATEWAY.peer_id}]
    view.receive(OTHER_GATEWAY.peer_id, stolen, 1_000)
    assert view.counters["bridged_rejected_conflict"] == 2
    assert view.gateways() == {GATEWAY.peer_id: 1, OTHER_GATEWAY.peer_id: 0}


def test_a_complete_generation_drops_devices_missing_from_it() -> None:
    limits = BridgeLimits(adverts_per_message_max=2)
    view = Membership(GATEWAY.peer_id).view(limits)
    for body in bodies(GATEWAY, ["a1", "a2", "a3"], 10, limits):
        view.receive(GATEWAY.peer_id, body, 1_000)
    assert view.devices_count == 3
    first, second = bodies(GATEWAY, ["a1", "a3", "a4"], 11, limits)
    view.receive(GATEWAY.peer_id, first, 2_000)
    assert "a2" in {m["device_id"] for m in view.members_status()}, "until every part is in"
    view.receive(GATEWAY.peer_id, second, 2_000)
    assert sorted(m["device_id"] for m in view.members_status()) == ["a1", "a3", "a4"]
    old = bodies(GATEWAY, ["a2"], 10, limits)[0]
    view.receive(GATEWAY.peer_id, old, 2_100)
    assert view.counters["bridged_stale_generation"] == 1 and view.devices_count == 3
    view.check_invariants()


def test_devices_expire_with_their_gateway_or_without_refresh() -> None:
    limits = BridgeLimits(ttl_ms=5_000)
    membership = Membership(GATEWAY.peer_id, OTHER_GATEWAY.peer_id)
    view = membership.view(limits)
    view.receive(GATEWAY.peer_id, bodies(GATEWAY, ["a1", "a2"], 1)[0], 1_000)
    view.receive(OTHER_GATEWAY.peer_id, bodies(OTHER_GATEWAY, ["b1"], 1)[0], 1_000)
    view.expire(4_000)
    assert view.devices_count == 3
    membership.live.discard(GATEWAY.peer_id)  # it died or left
    view.expire(4_100)
    assert [m["device_id"] for m in view.members_status()] == ["b1"]
    view.expire(6_001)  # b1 not refreshed for ttl_ms
    assert view.members_status() == [] and view.counters["bridged_expired_ttl"] == 1
    view.check_invariants()


def test_tables_are_bounded() -> None:
    limits = BridgeLimits(devices_per_gateway_max=2, devices_max=3, gateways_max=1)
    view = Membership(GATEWAY.peer_id, OTHER_GATEWAY.peer_id).view(limits)
    view.receive(GATEWAY.peer_id, bodies(GATEWAY, ["a1", "a2", "a3"], 1)[0], 1_000)
    assert view.devices_count == 2 and view.counters["bridged_dropped_table_full"] == 1
    view.receive(OTHER_GATEWAY.peer_id, bodies(OTHER_GATEWAY, ["b1"], 1)[0], 1_000)
    assert view.counters["bridged_dropped_gateways_full"] == 1
    view.check_invariants()


def test_the_advert_cache_resigns_only_on_change() -> None:
    cache = AdvertCache(2)
    signer = device_signer(GATEWAY, "a1")
    first = cache.sign(advert(GATEWAY, "a1"), signer)
    assert cache.sign(advert(GATEWAY, "a1"), signer) is first
    assert cache.sign(advert(GATEWAY, "a1", seq=2), signer).seq == 2
    for name in ("a2", "a3", "a4"):
        cache.sign(advert(GATEWAY, name), device_signer(GATEWAY, name))
    assert len(cache._signed) == 2


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_mutated_lists_never_raise(data: st.DataObject) -> None:
    view = Membership(GATEWAY.peer_id).view()
    (body,) = bodies(GATEWAY, ["a1", "a2"], 5)
    item = dict(body["devices"][data.draw(st.integers(0, 1))])
    key = data.draw(st.sampled_from(sorted(item)))
    junk = st.one_of(
        st.integers(-(2**70), 2**70), st.text(max_size=70), st.binary(max_size=70), st.none(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    )  # fmt: skip
    if key in ("ad", "mcu") and data.draw(st.booleans()):
        nested = dict(item[key])
        nested[data.draw(st.sampled_from(sorted(nested)))] = data.draw(junk)
        item[key] = nested
    else:
        item[key] = data.draw(junk)
    mutated = {**body, "devices": [item]}
    try:
        checked = over_the_wire(GATEWAY, mutated)
    except WireError:
        return  # the registry's schema refused it before the table saw it
    view.receive(GATEWAY.peer_id, checked, 1_000)
    view.check_invariants()
    for member in view.members_status():
        assert member["bridged_via"] == GATEWAY.peer_id


def test_a_full_part_with_the_largest_fields_fits_its_message_type() -> None:
    cache = AdvertCache(64)
    items = []
    for index in range(DEFAULT_BRIDGE_LIMITS.adverts_per_message_max):
        device_id = f"{index:02d}".ljust(32, "x")
        bridged = dataclasses.replace(
            advert(GATEWAY, device_id),
            capabilities={**CAPS, "ram_mb": 2**32 - 1, "ram_free_mb": 2**32 - 1},
            mcu={
                "firmware": "f" * 16,
                "ram_bytes": 2**63 - 1,
                "flash_bytes": 2**63 - 1,
                "sensors": ["s" * 16] * 8,
                "model_slots": 2**63 - 1,
                "params_max": 2**63 - 1,
                "heartbeat_ms": 2**63 - 1,
                "model_id": 2**63 - 1,
            },
        )
        items.append(bridged_item(bridged, cache.sign(bridged, device_signer(GATEWAY, device_id))))
    (body,) = bridged_bodies(GATEWAY.peer_id, 2**63 - 1, items)
    frame = seal(GATEWAY, BRIDGED_TYPE.name, MESH, (2**63,), body)
    assert len(frame) <= BRIDGED_TYPE.size_bytes_max
    view = Membership(GATEWAY.peer_id).view()
    view.receive(GATEWAY.peer_id, dict(open_envelope(frame, mesh=MESH).body), 1)
    assert view.devices_count == DEFAULT_BRIDGE_LIMITS.adverts_per_message_max
