"""Per-device state of the gateway: session, replay counter, rate, capabilities, model."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentmesh.core.identity import Identity
from agentmesh.gateway_peer.messages import Heartbeat, Hello, Reading, Sample
from agentmesh.gateway_peer.replay import ReplayWindow
from agentmesh.gateway_peer.transfer import ModelTransfer

ALIVE, SUSPECT, DEAD = "alive", "suspect", "dead"
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """A provisioned device as the registry holds it."""

    device_id: str
    key: bytes
    counter_max: int  # highest uplink counter accepted so far (persisted)


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved; time as integer ms."""

    __slots__ = ("burst", "rate_per_ms", "tokens", "updated_ms")

    def __init__(self, rate_per_s: float, burst: int, now_ms: int) -> None:
        self.rate_per_ms = rate_per_s / 1000.0
        self.burst = float(burst)
        self.tokens = float(burst)
        self.updated_ms = now_ms

    def take(self, now_ms: int) -> bool:
        """One token if there is one; False (and nothing taken) otherwise."""
        elapsed_ms = max(0, now_ms - self.updated_ms)
        self.tokens = min(self.burst, self.tokens + elapsed_ms * self.rate_per_ms)
        self.updated_ms = now_ms
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


@dataclass(slots=True)
class PendingInference:
    model_id: int
    inputs: np.ndarray
    sent_ms: int


@dataclass(slots=True)
class DeviceState:
    """What the gateway knows about one authenticated device."""

    record: DeviceRecord
    bucket: TokenBucket
    first_seen_ms: int
    counter_max: int
    replay: ReplayWindow
    address: str = ""
    nonce: bytes = b""
    downlink_counter: int = 0
    last_seen_ms: int = 0
    state: str = ALIVE
    hello: Hello | None = None
    incarnation: int = 0  # counter of the hello that opened the current boot
    advert_seq: int = 0
    heartbeat: Heartbeat | None = None
    readings: dict[str, Reading] = field(default_factory=dict)
    model_id: int = 0  # model the device reports as loaded
    transfer: ModelTransfer | None = None
    infer_pending: dict[int, PendingInference] = field(default_factory=dict)
    stats: dict[str, int] = field(default_factory=dict)
    signer: Identity | None = None
    samples: deque[Sample] = field(default_factory=deque)  # newest, bounded by the machine

    @property
    def device_id(self) -> str:
        return self.record.device_id

    def count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    def state_at(self, now_ms: int, suspect_after_ms: int, dead_after_ms: int) -> str:
        silent_ms = now_ms - self.last_seen_ms
        if silent_ms >= dead_after_ms:
            return DEAD
        return SUSPECT if silent_ms >= suspect_after_ms else ALIVE

    def status(self) -> dict[str, Any]:
        """The JSON-ready view of this device (for `status` and tests)."""
        beat = self.heartbeat
        return {
            "device_id": self.device_id,
            "state": self.state,
            "address": self.address,
            "last_seen_ms": self.last_seen_ms,
            "counter_max": self.counter_max,
            "capabilities": self.hello.capabilities() if self.hello else {},
            "model_id": self.model_id,
            "uptime_ms": beat.uptime_ms if beat else None,
            "mem_free_bytes": beat.mem_free_bytes if beat else None,
            "sensors_seen": sorted(self.readings),
            "samples": len(self.samples),
            "stats": dict(self.stats),
        }


@dataclass(frozen=True, slots=True)
class BridgedAdvert:
    """A bridged device as a membership-ready capability advert.

    `capabilities` has the wire form of core.membership's `Capabilities`
    (device_class "mcu"); `peer_id` is the device's own Ed25519 id, derived by
    the gateway, which signs on the device's behalf (see `GatewayMachine.signer_for`);
    `bridged_via` is the gateway's peer id. (incarnation, seq) orders adverts.
    """

    peer_id: str
    device_id: str
    bridged_via: str
    state: str
    incarnation: int
    seq: int
    capabilities: dict[str, Any]
    mcu: dict[str, Any]
    last_seen_ms: int

    def to_status(self) -> dict[str, Any]:
        """A member entry in the shape of `agent status --json`."""
        return {
            "peer_id": self.peer_id,
            "state": self.state,
            "incarnation": self.incarnation,
            "capabilities": {**self.capabilities, "mcu": self.mcu},
            "roles": [],
            "bridged_via": self.bridged_via,
            "device_id": self.device_id,
        }


def membership_capabilities(hello: Hello, heartbeat: Heartbeat | None) -> dict[str, Any]:
    """The device's resources in the wire form of core.membership.Capabilities."""
    ram_mb = hello.ram_bytes // MIB
    free_mb = heartbeat.mem_free_bytes // MIB if heartbeat else 0
    return {
        "cores": 1,
        "load_pm": 0,
        "ram_mb": ram_mb,
        "ram_free_mb": min(free_mb, ram_mb),
        "acc": [],
        "rt": "none",
        "bw_kbps": 0,
        "class": "mcu",
        "roles": [],
    }
