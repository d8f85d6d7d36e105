"""Bridged devices between agents: the "gateway.bridged" message and the receivers' table.

A bridged device has no QUIC endpoint, so it is never a SWIM member (SWIM §3
probes every member directly). Instead its gateway sends every live member a
signed list of the devices it bridges: each entry a capability advert signed by
the device's derived identity (`GatewayMachine.signer_for`) and the gateway's
peer id as `via`. A list longer than one message is split into parts of one
generation; once a receiver holds every part of a generation, devices of that
gateway missing from it are dropped. Receivers also drop a gateway's devices
when it is no longer a live member, and any device not refreshed for `ttl_ms`.
Sans-I/O: time is `now_ms`, membership is asked through callables.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentmesh.core.identity import verify_from_peer_id
from agentmesh.core.membership.capabilities import (
    Capabilities,
    CapabilityAdvert,
    sign_advert,
)
from agentmesh.core.node import Signer
from agentmesh.core.wire import DEFAULT_REGISTRY, Field, MessageType
from agentmesh.gateway_peer.devices import ALIVE, SUSPECT, BridgedAdvert
from agentmesh.gateway_peer.limits import DEFAULT_BRIDGE_LIMITS, BridgeLimits

_NAME = Field("text", required=False, size_max=16)
_MCU_FIELDS = {
    "firmware": _NAME,
    "ram_bytes": Field("uint", required=False),
    "flash_bytes": Field("uint", required=False),
    "sensors": Field("list", required=False, size_max=8, items=Field("text", size_max=16)),
    "model_slots": Field("uint", required=False),
    "params_max": Field("uint", required=False),
    "heartbeat_ms": Field("uint", required=False),
    "model_id": Field("uint", required=False),
}
_ADVERT_FIELDS = {
    "id": Field("peer_id", size_max=64),
    "inc": Field("uint"),
    "seq": Field("uint"),
    "caps": Field("map", size_max=12),
    "sig": Field("bytes", size_max=64),
}
_ITEM_FIELDS = {
    "ad": Field("map", fields=_ADVERT_FIELDS),
    "dev": Field("text", size_max=32),
    "via": Field("peer_id", size_max=64),
    "st": Field("text", size_max=8),
    "mcu": Field("map", required=False, fields=_MCU_FIELDS),
}
BRIDGED_TYPE = MessageType(
    192,
    "gateway.bridged",
    {
        "gw": Field("peer_id", size_max=64),
        "gen": Field("uint"),
        "part": Field("uint"),
        "parts": Field("uint"),
        "devices": Field(
            "list",
            size_max=DEFAULT_BRIDGE_LIMITS.adverts_per_message_max,
            items=Field("map", fields=_ITEM_FIELDS),
        ),
    },
    48 * 1024,
)
DEFAULT_REGISTRY.register(BRIDGED_TYPE)
BRIDGED_TYPES = frozenset((BRIDGED_TYPE.name,))
PUBLISHED_STATES = (ALIVE, SUSPECT)  # a dead device is left out of the list, so dropped


# ---------------------------------------------------------------------- gateway side


class AdvertCache:
    """Signed adverts per device, re-signed only when what is signed changes."""

    def __init__(self, entries_max: int) -> None:
        self.entries_max = entries_max
        self._signed: dict[str, CapabilityAdvert] = {}

    def sign(self, advert: BridgedAdvert, signer: Signer) -> CapabilityAdvert:
        caps = Capabilities.from_wire(advert.capabilities)
        cached = self._signed.get(advert.device_id)
        if (
            cached is not None
            and cached.peer_id == signer.peer_id
            and cached.order_key == (advert.incarnation, advert.seq)
            and cached.capabilities == caps
        ):
            return cached
        signed = sign_advert(signer, advert.incarnation, advert.seq, caps)
        if advert.device_id not in self._signed and len(self._signed) >= self.entries_max:
            self._signed.pop(next(iter(self._signed)))
        self._signed[advert.device_id] = signed
        return signed


def bridged_item(advert: BridgedAdvert, signed: CapabilityAdvert) -> dict[str, Any]:
    """One device's entry of a "gateway.bridged" body."""
    mcu = {key: value for key, value in advert.mcu.items() if key in _MCU_FIELDS}
    return {
        "ad": signed.to_wire(),
        "dev": advert.device_id,
        "via": advert.bridged_via,
        "st": advert.state,
        "mcu": mcu,
    }


def bridged_bodies(
    gateway_id: str,
    generation: int,
    items: list[dict[str, Any]],
    limits: BridgeLimits = DEFAULT_BRIDGE_LIMITS,
) -> list[dict[str, Any]]:
    """The full list as the parts of one generation (an empty list is one empty part)."""
    per = limits.adverts_per_message_max
    pages = [items[start : start + per] for start in range(0, len(items), per)] or [[]]
    pages = pages[: limits.parts_max]
    return [
        {"gw": gateway_id, "gen": generation, "part": index, "parts": len(pages), "devices": page}
        for index, page in enumerate(pages)
    ]


# ---------------------------------------------------------------------- receiver side


@dataclass(slots=True)
class BridgedEntry:
    advert: CapabilityAdvert
    device_id: str
    state: str
    mcu: dict[str, Any]
    generation: int
    refreshed_ms: int

    def to_status(self, gateway_id: str) -> dict[str, Any]:
        """A member entry in the `agent status --json` shape, marked as bridged."""
        return {
            "peer_id": self.advert.peer_id,
            "state": self.state,
            "incarnation": self.advert.incarnation,
            "capabilities": {**self.advert.capabilities.to_status(), "mcu": dict(self.mcu)},
            "roles": [],
            "bridged_via": gateway_id,
            "device_id": self.device_id,
        }


@dataclass(slots=True)
class _Gateway:
    generation: int = -1
    parts_seen: set[int] = field(default_factory=set)
    devices: dict[str, BridgedEntry] = field(default_factory=dict)


class BridgedView:
    """Devices other gateways bridge, as this agent accepted them; bounded, expiring."""

    def __init__(
        self,
        own_peer_id: str,
        is_live_member: Callable[[str], bool],
        is_member: Callable[[str], bool],
        limits: BridgeLimits = DEFAULT_BRIDGE_LIMITS,
    ) -> None:
        self.own_peer_id = own_peer_id
        self.limits = limits
        self._is_live_member = is_live_member
        self._is_member = is_member
        self._gateways: dict[str, _Gateway] = {}
        self._owner: dict[str, str] = {}  # device peer id -> gateway peer id
        self.counters: dict[str, int] = {}

    def _count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    @property
    def devices_count(self) -> int:
        return len(self._owner)

    def receive(self, sender: str, body: Mapping[str, Any], now_ms: int) -> None:
        """One schema-checked "gateway.bridged" body from the proven peer `sender`."""
        if body["gw"] != sender or sender == self.own_peer_id:
            self._count("bridged_rejected_via")
            return
        if not self._is_live_member(sender):
            self._count("bridged_rejected_not_member")
            return
        parts, part, generation = body["parts"], body["part"], body["gen"]
        if not 0 <= part < parts <= self.limits.parts_max:
            self._count("bridged_rejected_parts")
            return
        gateway = self._gateways.get(sender)
        if gateway is None:
            if len(self._gateways) >= self.limits.gateways_max:
                self._count("bridged_dropped_gateways_full")
                return
            gateway = self._gateways[sender] = _Gateway()
        if generation < gateway.generation:
            self._count("bridged_stale_generation")
            return
        if generation > gateway.generation:
            gateway.generation = generation
            gateway.parts_seen = set()
        for item in body["devices"]:
            self._accept(sender, gateway, item, now_ms)
        gateway.parts_seen.add(part)
        if len(gateway.parts_seen) == parts:
            # Every part of this generation arrived: what is not in it has gone.
            for peer_id, entry in list(gateway.devices.items()):
                if entry.generation < generation:
                    self._remove(gateway, peer_id, "bridged_removed")
        self._count("bridged_messages")

    def _accept(self, sender: str, gateway: _Gateway, item: Mapping[str, Any], now_ms: int) -> None:
        if item["via"] != sender:
            self._count("bridged_rejected_via")
            return
        if item["st"] not in PUBLISHED_STATES:
            self._count("bridged_rejected_state")
            return
        try:
            advert = CapabilityAdvert.from_wire(item["ad"])
        except (ValueError, TypeError):
            self._count("bridged_rejected_advert")
            return
        peer_id = advert.peer_id
        if advert.capabilities.device_class != "mcu" or advert.capabilities.address is not None:
            self._count("bridged_rejected_advert")
            return
        owner = self._owner.get(peer_id)
        if (owner is not None and owner != sender) or peer_id in (sender, self.own_peer_id):
            self._count("bridged_rejected_conflict")
            return
        if self._is_member(peer_id):  # a SWIM member's id is never a bridged device
            self._count("bridged_rejected_conflict")
            return
        old = gateway.devices.get(peer_id)
        if old is not None and old.advert.order_key > advert.order_key:
            self._count("bridged_stale_advert")
            advert = old.advert
        elif old is None or old.advert != advert:
            # Signed by the device's own (gateway-derived) key, over its peer id.
            if not verify_from_peer_id(peer_id, advert.signed_bytes(), advert.signature):
                self._count("bridged_rejected_signature")
                return
        if old is None and not self._has_room(gateway):
            return
        entry = BridgedEntry(
            advert, item["dev"], item["st"], dict(item.get("mcu", {})), gateway.generation, now_ms
        )
        gateway.devices[peer_id] = entry
        self._owner[peer_id] = sender

    def _has_room(self, gateway: _Gateway) -> bool:
        if (
            len(gateway.devices) >= self.limits.devices_per_gateway_max
            or len(self._owner) >= self.limits.devices_max
        ):
            self._count("bridged_dropped_table_full")
            return False
        return True

    def _remove(self, gateway: _Gateway, peer_id: str, reason: str) -> None:
        del gateway.devices[peer_id]
        self._owner.pop(peer_id, None)
        self._count(reason)

    def expire(self, now_ms: int) -> None:
        """Drop devices of gateways that left or died, and devices not refreshed in time."""
        for gateway_id, gateway in list(self._gateways.items()):
            if not self._is_live_member(gateway_id):
                for peer_id in list(gateway.devices):
                    self._remove(gateway, peer_id, "bridged_expired_gateway")
                del self._gateways[gateway_id]
                continue
            for peer_id, entry in list(gateway.devices.items()):
                if now_ms - entry.refreshed_ms > self.limits.ttl_ms:
                    self._remove(gateway, peer_id, "bridged_expired_ttl")

    def members_status(self) -> list[dict[str, Any]]:
        """Every bridged device as an `agent status --json` member, sorted by peer id."""
        found = [
            entry.to_status(gateway_id)
            for gateway_id, gateway in self._gateways.items()
            for entry in gateway.devices.values()
        ]
        return sorted(found, key=_peer_id_of)

    def gateways(self) -> dict[str, int]:
        """Devices per gateway."""
        return {gateway_id: len(g.devices) for gateway_id, g in sorted(self._gateways.items())}

    def check_invariants(self) -> None:
        assert len(self._gateways) <= self.limits.gateways_max
        assert len(self._owner) <= self.limits.devices_max
        held = {p: g for g, gw in self._gateways.items() for p in gw.devices}
        assert held == self._owner


def _peer_id_of(member: Mapping[str, Any]) -> str:
    peer_id: str = member["peer_id"]
    return peer_id
