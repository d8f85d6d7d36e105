"""Bodies of the bridge messages: typed, bound-checked views of peer-supplied maps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from agentmesh.gateway_peer.limits import GatewayLimits
from agentmesh.gateway_peer.protocol import ProtocolError, is_uint

UINT32_MAX = 2**32 - 1


@dataclass(frozen=True, slots=True)
class Hello:
    """A device's announcement: firmware and capabilities."""

    firmware: str
    ram_bytes: int
    flash_bytes: int
    sensors: tuple[str, ...]
    model_slots: int
    params_max: int
    heartbeat_ms: int

    def capabilities(self) -> dict[str, Any]:
        return {
            "firmware": self.firmware,
            "ram_bytes": self.ram_bytes,
            "flash_bytes": self.flash_bytes,
            "sensors": list(self.sensors),
            "model_slots": self.model_slots,
            "params_max": self.params_max,
            "heartbeat_ms": self.heartbeat_ms,
        }


@dataclass(frozen=True, slots=True)
class Heartbeat:
    uptime_ms: int
    mem_free_bytes: int
    model_id: int


@dataclass(frozen=True, slots=True)
class Reading:
    sensor: str
    device_time_us: int
    values: np.ndarray


@dataclass(frozen=True, slots=True)
class Sample:
    """A labelled sample (features, class) for the gateway-side trainer."""

    features: np.ndarray
    label: int


@dataclass(frozen=True, slots=True)
class InferResult:
    model_id: int
    request_id: int
    outputs: np.ndarray | None
    error: str | None


@dataclass(frozen=True, slots=True)
class ChunkAck:
    model_id: int
    have_bitmap: bytes
    loaded: bool
    error: str | None


def _bad(message: str) -> ProtocolError:
    return ProtocolError("bad_body", message)


def _keys(body: dict[str, Any], required: set[str], optional: frozenset[str] = frozenset()) -> None:
    keys = set(body)
    if not required <= keys or not keys <= required | optional:
        raise _bad(f"body keys {sorted(map(str, keys))} != {sorted(required)}")


def _uint(body: dict[str, Any], key: str, maximum: int = UINT32_MAX) -> int:
    value = body[key]
    if not is_uint(value, maximum):
        raise _bad(f"{key} must be an unsigned integer <= {maximum}")
    return int(value)


def _name(value: object, limits: GatewayLimits) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= limits.name_chars_max:
        raise _bad(f"names are 1..{limits.name_chars_max} characters")
    if not value.isprintable():
        raise _bad("names are printable")
    return value


def floats(value: object, limits: GatewayLimits, what: str) -> np.ndarray:
    """Little-endian float32 bytes -> a float32 array (copied, so it owns its memory)."""
    if not isinstance(value, bytes) or len(value) % 4:
        raise _bad(f"{what} must be float32 bytes")
    if len(value) // 4 > limits.floats_per_message_max:
        raise _bad(f"{what} holds more than {limits.floats_per_message_max} floats")
    return np.frombuffer(value, dtype="<f4").copy()


def parse_hello(body: dict[str, Any], limits: GatewayLimits) -> Hello:
    _keys(body, {"fw", "ram", "flash", "sens", "slots", "pmax", "hb"})
    sensors = body["sens"]
    if not isinstance(sensors, list) or len(sensors) > limits.sensors_max:
        raise _bad(f"at most {limits.sensors_max} sensors")
    names = tuple(_name(name, limits) for name in sensors)
    if len(set(names)) != len(names):
        raise _bad("sensor names repeat")
    return Hello(
        firmware=_name(body["fw"], limits),
        ram_bytes=_uint(body, "ram", 2**63 - 1),
        flash_bytes=_uint(body, "flash", 2**63 - 1),
        sensors=names,
        model_slots=_uint(body, "slots", 16),
        params_max=_uint(body, "pmax", limits.params_max),
        heartbeat_ms=_uint(body, "hb", 3_600_000),
    )


def parse_heartbeat(body: dict[str, Any]) -> Heartbeat:
    _keys(body, {"up", "free", "m"})
    return Heartbeat(_uint(body, "up", 2**63 - 1), _uint(body, "free"), _uint(body, "m"))


def parse_reading(body: dict[str, Any], limits: GatewayLimits) -> Reading:
    _keys(body, {"s", "t", "v"})
    return Reading(
        sensor=_name(body["s"], limits),
        device_time_us=_uint(body, "t", 2**63 - 1),
        values=floats(body["v"], limits, "reading values"),
    )


def parse_sample(body: dict[str, Any], limits: GatewayLimits) -> Sample:
    _keys(body, {"x", "y"})
    features = floats(body["x"], limits, "sample features")
    if features.size == 0 or not np.all(np.isfinite(features)):
        raise _bad("sample features must be finite and not empty")
    return Sample(features, _uint(body, "y", limits.sample_label_max))


def parse_infer_result(body: dict[str, Any], limits: GatewayLimits) -> InferResult:
    if "e" in body:
        _keys(body, {"m", "r", "e"})
        return InferResult(_uint(body, "m"), _uint(body, "r"), None, _name(body["e"], limits))
    _keys(body, {"m", "r", "y"})
    outputs = floats(body["y"], limits, "inference outputs")
    return InferResult(_uint(body, "m"), _uint(body, "r"), outputs, None)


def parse_chunk_ack(body: dict[str, Any], limits: GatewayLimits) -> ChunkAck:
    _keys(body, {"m", "h", "ok"}, frozenset({"e"}))
    bitmap, loaded = body["h"], body["ok"]
    if not isinstance(bitmap, bytes) or len(bitmap) > 64:
        raise _bad("chunk bitmap must be at most 64 bytes")
    if not isinstance(loaded, bool):
        raise _bad("ok must be a boolean")
    error = _name(body["e"], limits) if "e" in body else None
    return ChunkAck(_uint(body, "m"), bitmap, loaded, error)
