"""Capability adverts: what a member offers, signed by its owner and size-bounded.

An advert travels inside membership gossip (piggybacked `Alive` updates), so
every field is bounded and the whole signed form stays under
`ADVERT_BYTES_MAX`. Newer adverts replace older ones by `(incarnation, seq)`:
the incarnation is the owner's SWIM incarnation when it signed (a rejoin with a
higher incarnation beats anything from before the restart), `seq` counts
adverts within one incarnation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

import cbor2

from agentmesh.core.identity import is_peer_id
from agentmesh.core.node import Signer

ADVERT_BYTES_MAX: Final = 512
ACCELERATORS_MAX: Final = 4
ROLES_MAX: Final = 8
NAME_CHARS_MAX: Final = 24
UINT32_MAX: Final = 2**32 - 1
ADDRESS_CHARS_MAX: Final = 64
UINT63_MAX: Final = 2**63 - 1

TRAINER_RUNTIMES: Final = ("litert", "tflite-runtime", "numpy", "none")
DEVICE_CLASSES: Final = ("mcu", "edge", "laptop", "server")
ROLES: Final = ("trainer", "aggregator", "validator", "gateway")


class AdvertError(ValueError):
    """An advert that is malformed, oversized or badly signed."""


@dataclass(frozen=True, slots=True)
class Capabilities:
    """The owner's resources; units last. Loads are per-mille of all cores."""

    cpu_cores: int
    cpu_load_permille: int
    ram_total_mb: int
    ram_free_mb: int
    battery_percent: int | None
    accelerators: tuple[str, ...]
    trainer_runtime: str
    link_bandwidth_kbps: int
    device_class: str
    roles_allowed: tuple[str, ...]
    # "host:port" where the owner's QUIC endpoint listens. Signed with the advert,
    # so a member learned through gossip is reachable and nobody can redirect it.
    address: str | None = None

    def __post_init__(self) -> None:
        _check_capabilities(self)

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "cores": self.cpu_cores,
            "load_pm": self.cpu_load_permille,
            "ram_mb": self.ram_total_mb,
            "ram_free_mb": self.ram_free_mb,
            "acc": list(self.accelerators),
            "rt": self.trainer_runtime,
            "bw_kbps": self.link_bandwidth_kbps,
            "class": self.device_class,
            "roles": list(self.roles_allowed),
        }
        if self.battery_percent is not None:
            wire["bat_pct"] = self.battery_percent
        if self.address is not None:
            wire["addr"] = self.address
        return wire

    def to_status(self) -> dict[str, Any]:
        """The `agent status --json` form (readable names)."""
        return {
            "cpu_cores": self.cpu_cores,
            "cpu_load": self.cpu_load_permille / 1000,
            "ram_total_mb": self.ram_total_mb,
            "ram_free_mb": self.ram_free_mb,
            "battery_percent": self.battery_percent,
            "accelerators": list(self.accelerators),
            "trainer_runtime": self.trainer_runtime,
            "link_bandwidth_kbps": self.link_bandwidth_kbps,
            "device_class": self.device_class,
            "roles_allowed": list(self.roles_allowed),
            "address": self.address,
        }

    @classmethod
    def from_wire(cls, obj: object) -> Capabilities:
        required = {"cores", "load_pm", "ram_mb", "ram_free_mb", "acc", "rt", "bw_kbps", "class"}
        if not isinstance(obj, dict) or not all(isinstance(key, str) for key in obj):
            raise AdvertError("capabilities must be a map with text keys")
        keys = set(obj)
        if not required <= keys <= required | {"bat_pct", "roles", "addr"}:
            raise AdvertError(f"capabilities keys {sorted(keys)} are not the expected ones")
        try:
            return cls(
                cpu_cores=obj["cores"],
                cpu_load_permille=obj["load_pm"],
                ram_total_mb=obj["ram_mb"],
                ram_free_mb=obj["ram_free_mb"],
                battery_percent=obj.get("bat_pct"),
                accelerators=_str_tuple(obj["acc"], ACCELERATORS_MAX, "accelerators"),
                trainer_runtime=obj["rt"],
                link_bandwidth_kbps=obj["bw_kbps"],
                device_class=obj["class"],
                roles_allowed=_str_tuple(obj.get("roles", []), ROLES_MAX, "roles"),
                address=obj.get("addr"),
            )
        except TypeError as error:
            raise AdvertError(f"capabilities field of the wrong type: {error}") from None


def _is_uint(value: object, maximum: int = UINT32_MAX) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= maximum


def _str_tuple(value: object, count_max: int, what: str) -> tuple[str, ...]:
    if not isinstance(value, list | tuple) or len(value) > count_max:
        raise AdvertError(f"{what} must be a list of at most {count_max} names")
    return tuple(value)


def _check_capabilities(caps: Capabilities) -> None:
    numbers_ok = (
        _is_uint(caps.cpu_cores, 4096)
        and _is_uint(caps.cpu_load_permille)
        and _is_uint(caps.ram_total_mb)
        and _is_uint(caps.ram_free_mb)
        and _is_uint(caps.link_bandwidth_kbps)
        and (caps.battery_percent is None or _is_uint(caps.battery_percent, 100))
    )
    if not numbers_ok:
        raise AdvertError("capability numbers must be unsigned and in range")
    if caps.ram_free_mb > caps.ram_total_mb:
        raise AdvertError("ram_free_mb exceeds ram_total_mb")
    if caps.trainer_runtime not in TRAINER_RUNTIMES:
        raise AdvertError(f"trainer_runtime must be one of {TRAINER_RUNTIMES}")
    if caps.device_class not in DEVICE_CLASSES:
        raise AdvertError(f"device_class must be one of {DEVICE_CLASSES}")
    if len(caps.accelerators) > ACCELERATORS_MAX or not all(
        isinstance(name, str) and 0 < len(name) <= NAME_CHARS_MAX for name in caps.accelerators
    ):
        raise AdvertError(f"at most {ACCELERATORS_MAX} accelerator names of 1..24 chars")
    if len(set(caps.roles_allowed)) != len(caps.roles_allowed) or not all(
        role in ROLES for role in caps.roles_allowed
    ):
        raise AdvertError(f"roles_allowed must be distinct names from {ROLES}")
    if caps.address is not None and not _is_address(caps.address):
        raise AdvertError("address must be 'host:port' of at most 64 characters")


def _is_address(text: object) -> bool:
    if not isinstance(text, str) or not 0 < len(text) <= ADDRESS_CHARS_MAX:
        return False
    host, _, port = text.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


@dataclass(frozen=True, slots=True)
class CapabilityAdvert:
    """Capabilities of `peer_id`, signed by it; compare freshness with `order_key`."""

    peer_id: str
    incarnation: int
    seq: int
    capabilities: Capabilities
    signature: bytes
    # Cached deterministic encoding of the signed part: one advert object is shared by
    # every node that relays it in the simulator, so it is encoded once.
    _signed: bytes = field(default=b"", init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Any node id is accepted here (the simulator names nodes n0, n1, ...); the
        # wire boundary (from_wire) insists on a libp2p peer id.
        if not isinstance(self.peer_id, str) or not 0 < len(self.peer_id) <= 60:
            raise AdvertError("advert peer_id must be a node id of 1..60 characters")
        if not (_is_uint(self.incarnation, UINT63_MAX) and _is_uint(self.seq, UINT63_MAX)):
            raise AdvertError("advert incarnation and seq must be unsigned 63-bit integers")
        if not isinstance(self.signature, bytes) or len(self.signature) > 64:
            raise AdvertError("advert signature must be at most 64 bytes")
        signed = signed_advert_bytes(self.peer_id, self.incarnation, self.seq, self.capabilities)
        if len(signed) + len(self.signature) + 16 > ADVERT_BYTES_MAX:
            raise AdvertError(f"advert exceeds {ADVERT_BYTES_MAX} bytes")
        object.__setattr__(self, "_signed", signed)

    @property
    def order_key(self) -> tuple[int, int]:
        return (self.incarnation, self.seq)

    def signed_bytes(self) -> bytes:
        return self._signed

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.peer_id,
            "inc": self.incarnation,
            "seq": self.seq,
            "caps": self.capabilities.to_wire(),
            "sig": self.signature,
        }

    @classmethod
    def from_wire(cls, obj: object) -> CapabilityAdvert:
        """Parse and bound-check (signature is checked by the receiver's verify fn)."""
        if not isinstance(obj, dict) or set(obj) != {"id", "inc", "seq", "caps", "sig"}:
            raise AdvertError("advert must be a map with keys id, inc, seq, caps, sig")
        if not is_peer_id(obj["id"]):
            raise AdvertError("advert id is not a peer id")
        return cls(
            peer_id=obj["id"],
            incarnation=obj["inc"],
            seq=obj["seq"],
            capabilities=Capabilities.from_wire(obj["caps"]),
            signature=obj["sig"],
        )


def signed_advert_bytes(peer_id: str, incarnation: int, seq: int, caps: Capabilities) -> bytes:
    """Deterministic CBOR (single-type keys, so RFC 8949 §4.2.1 order) of what is signed."""
    body = ["agentmesh-advert-v1", peer_id, incarnation, seq, caps.to_wire()]
    return cbor2.dumps(body, canonical=True)


def sign_advert(signer: Signer, incarnation: int, seq: int, caps: Capabilities) -> CapabilityAdvert:
    """A fresh advert for the signer's own peer id."""
    signature = signer.sign(signed_advert_bytes(signer.peer_id, incarnation, seq, caps))
    return CapabilityAdvert(signer.peer_id, incarnation, seq, caps, signature)
