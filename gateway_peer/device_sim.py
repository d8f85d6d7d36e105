"""A CPython device speaking the bridge protocol: for tests and `agent bench gateway`.

It is a second, independent implementation of the device side (the firmware is
the first), so tests that pair it with the gateway also check the spec.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from agentmesh.core.limits import DecodeLimits
from agentmesh.gateway_peer import protocol
from agentmesh.gateway_peer.limits import DEFAULT_GATEWAY_LIMITS, GatewayLimits
from agentmesh.gateway_peer.model import MlpModel
from agentmesh.gateway_peer.replay import ReplayWindow

DOWNLINK_WINDOW = 24  # as the firmware: fits a MicroPython small int on 32-bit boards
DEFAULT_HELLO: dict[str, Any] = {
    "fw": "sim-0.1",
    "ram": 65_536,
    "flash": 2_097_152,
    "sens": ["temp"],
    "slots": 1,
    "pmax": 10_000,
    "hb": 5_000,
}


class SimulatedDevice:
    """Seals uplink messages and opens downlink ones for one device id and key."""

    def __init__(
        self,
        device_id: str,
        key: bytes,
        nonce: bytes,
        counter_start: int = 0,
        limits: GatewayLimits = DEFAULT_GATEWAY_LIMITS,
    ) -> None:
        self.device_id = device_id
        self.key = key
        self.nonce = nonce
        self.counter = counter_start
        self.limits = limits
        self._bounds: DecodeLimits = protocol.decode_limits(limits)
        self.downlink = ReplayWindow(0, DOWNLINK_WINDOW)
        self.welcomed_by: str | None = None
        self.model: MlpModel | None = None
        self._pending: dict[str, Any] = {}
        self.rejected: dict[str, int] = {}

    def message(self, msg_type: int, body: dict[str, Any]) -> bytes:
        self.counter += 1
        datagram: bytes = protocol.seal(
            self.key, msg_type, self.device_id, self.counter, self.nonce, body
        )
        return datagram

    def hello(self, **overrides: Any) -> bytes:
        return self.message(protocol.HELLO, {**DEFAULT_HELLO, **overrides})

    def heartbeat(self, uptime_ms: int, mem_free_bytes: int = 30_000) -> bytes:
        model_id = self.model.model_id if self.model else 0
        return self.message(
            protocol.HEARTBEAT, {"up": uptime_ms, "free": mem_free_bytes, "m": model_id}
        )

    def reading(self, sensor: str, device_time_us: int, values: np.ndarray) -> bytes:
        data = np.ascontiguousarray(values, dtype="<f4").tobytes()
        return self.message(protocol.READING, {"s": sensor, "t": device_time_us, "v": data})

    def sample(self, features: np.ndarray, label: int) -> bytes:
        data = np.ascontiguousarray(features, dtype="<f4").tobytes()
        return self.message(protocol.SAMPLE, {"x": data, "y": label})

    def open_downlink(self, datagram: bytes) -> protocol.Frame | None:
        """A verified, fresh downlink frame, or None (and a counted reason)."""
        try:
            frame = protocol.open_frame(
                datagram, protocol.DOWNLINK_TYPES, self.limits, self._bounds
            )
        except protocol.ProtocolError as error:
            self._reject(error.reason)
            return None
        if frame.device_id != self.device_id or not protocol.tag_matches(self.key, frame):
            self._reject("bad_mac")
            return None
        if frame.nonce != self.nonce or not self.downlink.accept(frame.counter):
            self._reject("replay")
            return None
        return frame

    def _reject(self, reason: str) -> None:
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return None

    def handle(self, datagram: bytes) -> list[bytes]:
        """React to one downlink datagram like the firmware does; returns replies."""
        frame = self.open_downlink(datagram)
        if frame is None:
            return []
        body = frame.body
        if frame.msg_type == protocol.WELCOME:
            self.welcomed_by = body["g"]
            return []
        if frame.msg_type == protocol.MODEL_CHUNK:
            return [self._on_chunk(body)]
        model = self.model
        if model is None or model.model_id != body["m"]:
            return [
                self.message(
                    protocol.INFER_RESULT, {"m": body["m"], "r": body["r"], "e": "no_model"}
                )
            ]
        outputs = model.forward(np.frombuffer(body["x"], dtype="<f4"))
        reply = {"m": model.model_id, "r": body["r"], "y": outputs.astype("<f4").tobytes()}
        return [self.message(protocol.INFER_RESULT, reply)]

    def _on_chunk(self, body: dict[str, Any]) -> bytes:
        model_id, count = body["m"], body["k"]
        if self.model is not None and self.model.model_id == model_id:
            have = bytes([0xFF] * (-(-count // 8)))
            return self.message(protocol.CHUNK_ACK, {"m": model_id, "h": have, "ok": True})
        if self._pending.get("m") != model_id:
            self._pending = {"m": model_id, "buf": bytearray(body["z"]), "got": set()}
        pending = self._pending
        pending["buf"][body["o"] : body["o"] + len(body["d"])] = body["d"]
        pending["got"].add(body["i"])
        bitmap = bytearray(-(-count // 8))
        for index in pending["got"]:
            bitmap[index // 8] |= 1 << (index % 8)
        loaded = False
        if len(pending["got"]) == count:
            data = bytes(pending["buf"])
            if hashlib.sha256(data).digest() == body["h"]:
                self.model = MlpModel(model_id, tuple(body["l"]), data, body["h"])
                loaded = True
        ack = {"m": model_id, "h": bytes(bitmap), "ok": loaded}
        return self.message(protocol.CHUNK_ACK, ack)


def samples_file_bytes(features: np.ndarray, labels: np.ndarray) -> bytes:
    """The firmware's `samples_file`: per sample, float32 LE features then one label byte."""
    rows = np.ascontiguousarray(features, dtype="<f4").reshape(len(labels), -1)
    marks = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    return b"".join(row.tobytes() + mark.tobytes() for row, mark in zip(rows, marks, strict=True))
