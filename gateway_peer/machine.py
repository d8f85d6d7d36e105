"""The gateway's bridge as a sans-I/O machine: datagrams in, datagrams and events out.

Follows the node contract (core/node.py): time is `now_ms` passed in, the host
drains `take_outbox()` after every call. `Send.to` is the device's UDP address
as "host:port" and `Send.message` the sealed datagram. Every refusal of peer
input is a counter in `counters` (global) and in the device's `stats`, never
an exception.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable
from typing import Any

import numpy as np

from agentmesh.core.identity import Identity
from agentmesh.core.node import ContractError, MachineBase, Send
from agentmesh.gateway_peer import messages, protocol
from agentmesh.gateway_peer.devices import (
    ALIVE,
    DEAD,
    BridgedAdvert,
    DeviceRecord,
    DeviceState,
    PendingInference,
    TokenBucket,
    membership_capabilities,
)
from agentmesh.gateway_peer.limits import DEFAULT_GATEWAY_LIMITS, GatewayLimits
from agentmesh.gateway_peer.model import MlpModel, ModelError
from agentmesh.gateway_peer.replay import ReplayWindow
from agentmesh.gateway_peer.transfer import ModelTransfer

KeyLookup = Callable[[str], DeviceRecord | None]
SWEEP_EVERY_MS = 500
_BRIDGED_SEED_DOMAIN = b"agentmesh-bridged-device-v1\x00"


class DeviceUnavailable(ContractError):  # type: ignore[misc,unused-ignore]
    """A command names a device that has no open session (never said hello)."""


class GatewayMachine(MachineBase):  # type: ignore[misc,unused-ignore]
    """Authenticates devices, keeps their state, moves models and inferences."""

    def __init__(
        self,
        gateway: Identity,
        lookup: KeyLookup,
        rng: random.Random,
        limits: GatewayLimits = DEFAULT_GATEWAY_LIMITS,
    ) -> None:
        super().__init__(gateway.peer_id, rng)
        self.gateway = gateway
        self.limits = limits
        self._lookup = lookup
        self._bounds = protocol.decode_limits(limits)
        self._devices: dict[str, DeviceState] = {}
        self._lookup_bucket = TokenBucket(
            limits.unknown_lookups_per_s, limits.unknown_lookup_burst, 0
        )
        self._dirty_counters: dict[str, int] = {}
        self._next_sweep_ms = 0
        self._next_request_id = rng.randrange(1, 2**16)

    # ------------------------------------------------------------------ input

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        """One datagram from UDP address `sender`; refusals are counted, never raised."""
        self.count("datagrams")
        if not isinstance(message, bytes | bytearray):
            self.count("rejected_schema")
            return
        try:
            frame = protocol.open_frame(
                bytes(message), protocol.UPLINK_TYPES, self.limits, self._bounds
            )
            device = self._authenticate(frame, now_ms)
        except protocol.ProtocolError as error:
            self.count("rejected_" + error.reason)
            return
        if device is None:
            return
        device.address = sender
        device.last_seen_ms = now_ms
        if device.state != ALIVE:
            self._set_state(device, ALIVE)
        if frame.nonce != device.nonce:
            # An authenticated, fresh message with a new boot nonce: the device
            # rebooted, so downlink counters restart for the new session.
            # Its first message of the boot names the incarnation (counters only grow).
            device.nonce = frame.nonce
            device.downlink_counter = 0
            device.incarnation = frame.counter
            device.advert_seq = 0
            device.hello = None
            device.model_id = 0
            device.transfer = None
            device.infer_pending.clear()
        try:
            self._dispatch(device, frame, now_ms)
        except protocol.ProtocolError as error:
            self.count("rejected_" + error.reason)
            device.count(error.reason)
            return
        self.count("accepted")
        device.count("accepted")

    def _authenticate(self, frame: protocol.Frame, now_ms: int) -> DeviceState | None:
        device = self._devices.get(frame.device_id)
        if device is None:
            device = self._admit(frame, now_ms)
            if device is None:
                return None
        elif not protocol.tag_matches(device.record.key, frame):
            self._reject(device, "bad_mac")
            return None
        if not device.replay.accept(frame.counter):
            self._reject(device, "replay")
            return None
        device.counter_max = device.replay.highest
        self._dirty_counters[device.device_id] = device.counter_max
        if not device.bucket.take(now_ms):
            self._reject(device, "rate_limited")
            return None
        return device

    def _admit(self, frame: protocol.Frame, now_ms: int) -> DeviceState | None:
        """A device not in memory: look its key up (rate-bounded), verify, add state."""
        if not self._lookup_bucket.take(now_ms):
            self.count("rejected_lookup_rate")
            return None
        record = self._lookup(frame.device_id)
        if record is None:
            self.count("rejected_unknown_device")
            return None
        if not protocol.tag_matches(record.key, frame):
            self.count("rejected_bad_mac")
            return None
        if len(self._devices) >= self.limits.devices_max:
            self.count("rejected_table_full")
            return None
        floor = max(record.counter_max, self._dirty_counters.get(record.device_id, 0))
        device = DeviceState(
            record=record,
            bucket=TokenBucket(self.limits.messages_per_s, self.limits.message_burst, now_ms),
            first_seen_ms=now_ms,
            counter_max=floor,
            replay=ReplayWindow(floor),
        )
        self._devices[record.device_id] = device
        self.emit("device_joined", device_id=record.device_id)
        return device

    def _reject(self, device: DeviceState, reason: str) -> None:
        self.count("rejected_" + reason)
        device.count(reason)

    def _dispatch(self, device: DeviceState, frame: protocol.Frame, now_ms: int) -> None:
        kind = frame.msg_type
        if kind == protocol.HELLO:
            self._on_hello(device, messages.parse_hello(frame.body, self.limits), frame)
        elif kind == protocol.HEARTBEAT:
            beat = messages.parse_heartbeat(frame.body)
            device.heartbeat = beat
            device.model_id = beat.model_id
        elif kind == protocol.READING:
            self._on_reading(device, messages.parse_reading(frame.body, self.limits))
        elif kind == protocol.INFER_RESULT:
            self._on_infer_result(device, messages.parse_infer_result(frame.body, self.limits))
        elif kind == protocol.CHUNK_ACK:
            self._on_chunk_ack(device, messages.parse_chunk_ack(frame.body, self.limits), now_ms)
        elif kind == protocol.SAMPLE:
            self._on_sample(device, messages.parse_sample(frame.body, self.limits))

    def _on_hello(self, device: DeviceState, hello: messages.Hello, frame: protocol.Frame) -> None:
        if device.hello != hello:
            device.advert_seq += 1
        device.hello = hello
        self._send(device, protocol.WELCOME, {"g": self.node_id, "hb": hello.heartbeat_ms})

    def _on_reading(self, device: DeviceState, reading: messages.Reading) -> None:
        if (
            reading.sensor not in device.readings
            and len(device.readings) >= self.limits.sensors_max
        ):
            raise protocol.ProtocolError("bad_body", "more sensors than announced")
        device.readings[reading.sensor] = reading
        self.emit(
            "reading",
            device_id=device.device_id,
            sensor=reading.sensor,
            device_time_us=reading.device_time_us,
            values=reading.values,
        )

    def _on_sample(self, device: DeviceState, sample: messages.Sample) -> None:
        """Kept for the gateway-side trainer; the oldest goes when the buffer is full."""
        device.samples.append(sample)
        while len(device.samples) > self.limits.samples_per_device_max:
            device.samples.popleft()
            self.count("samples_evicted")
        self.count("samples")

    def _on_infer_result(self, device: DeviceState, result: messages.InferResult) -> None:
        pending = device.infer_pending.pop(result.request_id, None)
        if pending is None:
            raise protocol.ProtocolError("unexpected", "inference result for no request")
        self.emit(
            "infer_result",
            device_id=device.device_id,
            request_id=result.request_id,
            model_id=result.model_id,
            inputs=pending.inputs,
            outputs=result.outputs,
            error=result.error,
        )

    def _on_chunk_ack(self, device: DeviceState, ack: messages.ChunkAck, now_ms: int) -> None:
        transfer = device.transfer
        if transfer is None or transfer.model.model_id != ack.model_id:
            raise protocol.ProtocolError("unexpected", "chunk ack for no transfer")
        if ack.error is not None:
            device.transfer = None
            self.emit(
                "model_rejected", device_id=device.device_id, model_id=ack.model_id, error=ack.error
            )
            return
        transfer.on_ack(ack.have_bitmap)
        if ack.loaded and transfer.all_held():
            transfer.loaded = True
            device.transfer = None
            device.model_id = ack.model_id
            self.emit(
                "model_loaded",
                device_id=device.device_id,
                model_id=ack.model_id,
                chunks_sent=transfer.chunks_sent,
            )
            return
        self._send_chunks(device, transfer, now_ms)

    # ------------------------------------------------------------------ output

    def _send(self, device: DeviceState, msg_type: int, body: dict[str, Any]) -> None:
        if len(self._outbox) >= self.limits.outbox_max:
            self.count("dropped_outbox_full")
            return
        device.downlink_counter += 1
        datagram = protocol.seal(
            device.record.key,
            msg_type,
            device.device_id,
            device.downlink_counter,
            device.nonce,
            body,
        )
        self.count("sent_" + protocol.TYPE_NAMES[msg_type])
        self.send(device.address, datagram)

    def emit(self, kind: str, /, **data: Any) -> None:
        if len(self._outbox) >= self.limits.events_max:
            self.count("dropped_events")
            return
        super().emit(kind, **data)

    def _send_chunks(self, device: DeviceState, transfer: ModelTransfer, now_ms: int) -> None:
        for index in transfer.due(now_ms):
            self._send(device, protocol.MODEL_CHUNK, transfer.chunk_body(index))
        if transfer.failed:
            device.transfer = None
            self.emit(
                "model_failed",
                device_id=device.device_id,
                model_id=transfer.model.model_id,
                error=transfer.failed,
            )

    # ------------------------------------------------------------------ commands

    def _session(self, device_id: str) -> DeviceState:
        device = self._devices.get(device_id)
        if device is None or device.hello is None or not device.address:
            raise DeviceUnavailable(f"device {device_id!r} has not said hello")
        return device

    def send_model(self, device_id: str, model: MlpModel, now_ms: int) -> None:
        """Start moving `model` to the device (replacing a transfer in progress)."""
        device = self._session(device_id)
        assert device.hello is not None
        count = len(model.data) // 4
        if count > device.hello.params_max:
            raise ModelError(f"{count} parameters exceed the device's {device.hello.params_max}")
        device.transfer = ModelTransfer(
            model,
            self.limits.chunk_bytes,
            self.limits.transfer_window_chunks,
            self.limits.chunk_retry_ms,
            self.limits.chunk_retries_max,
        )
        self._send_chunks(device, device.transfer, now_ms)

    def request_inference(self, device_id: str, inputs: np.ndarray, now_ms: int) -> int:
        """Ask the device to run its loaded model on `inputs`; returns the request id."""
        device = self._session(device_id)
        values = np.ascontiguousarray(inputs, dtype="<f4").reshape(-1)
        if values.size > self.limits.floats_per_message_max:
            raise ModelError(f"at most {self.limits.floats_per_message_max} inputs")
        if len(device.infer_pending) >= self.limits.infer_pending_per_device_max:
            raise DeviceUnavailable(f"device {device_id!r} has too many inferences pending")
        request_id = self._next_request_id
        self._next_request_id = request_id + 1 if request_id < 2**32 - 1 else 1
        device.infer_pending[request_id] = PendingInference(device.model_id, values, now_ms)
        body = {"m": device.model_id, "r": request_id, "x": values.tobytes()}
        self._send(device, protocol.INFER_REQUEST, body)
        return request_id

    # ------------------------------------------------------------------ time

    def tick(self, now_ms: int) -> None:
        for device in list(self._devices.values()):
            if device.transfer is not None:
                self._send_chunks(device, device.transfer, now_ms)
        if now_ms >= self._next_sweep_ms:
            self._next_sweep_ms = now_ms + SWEEP_EVERY_MS
            self._sweep(now_ms)

    def next_deadline(self) -> int | None:
        deadlines = [self._next_sweep_ms]
        for device in self._devices.values():
            if device.transfer is not None:
                deadline = device.transfer.next_deadline()
                if deadline is not None:
                    deadlines.append(deadline)
        return min(deadlines)

    def _sweep(self, now_ms: int) -> None:
        """Liveness of every device; expired inferences; forget long-dead devices."""
        limits = self.limits
        for device_id, device in list(self._devices.items()):
            state = device.state_at(now_ms, limits.suspect_after_ms, limits.dead_after_ms)
            if state != device.state:
                self._set_state(device, state)
            for request_id, pending in list(device.infer_pending.items()):
                if now_ms - pending.sent_ms >= limits.infer_timeout_ms:
                    del device.infer_pending[request_id]
                    self.count("infer_timeouts")
            if state == DEAD and now_ms - device.last_seen_ms >= limits.forget_after_ms:
                # The replay counter survives in the registry (flushed via take_counter_updates).
                del self._devices[device_id]
                self.count("devices_forgotten")

    def _set_state(self, device: DeviceState, state: str) -> None:
        device.state = state
        self.emit("device_state", device_id=device.device_id, state=state)

    # ------------------------------------------------------------------ views

    def device(self, device_id: str) -> DeviceState | None:
        return self._devices.get(device_id)

    def devices_status(self) -> list[dict[str, Any]]:
        return [device.status() for device in sorted(self._devices.values(), key=_by_id)]

    def signer_for(self, device_id: str) -> Identity:
        """The Ed25519 identity the gateway signs with on behalf of a bridged device.

        Derived from the gateway's seed and the device id, so it is stable across
        gateway restarts and no device key ever leaves the gateway.
        """
        device = self._devices.get(device_id)
        if device is not None and device.signer is not None:
            return device.signer
        seed = hashlib.sha256(
            _BRIDGED_SEED_DOMAIN + self.gateway.seed + device_id.encode()
        ).digest()
        signer = Identity.from_seed(seed)
        if device is not None:
            device.signer = signer
        return signer

    def bridged_adverts(self, now_ms: int) -> list[BridgedAdvert]:
        """Adverts of every device that said hello, marked as bridged through this gateway."""
        adverts = []
        for device in sorted(self._devices.values(), key=_by_id):
            if device.hello is None:
                continue
            mcu = device.hello.capabilities()
            mcu["model_id"] = device.model_id
            adverts.append(
                BridgedAdvert(
                    peer_id=self.signer_for(device.device_id).peer_id,
                    device_id=device.device_id,
                    bridged_via=self.node_id,
                    state=device.state_at(
                        now_ms, self.limits.suspect_after_ms, self.limits.dead_after_ms
                    ),
                    incarnation=device.incarnation,
                    seq=device.advert_seq,
                    capabilities=membership_capabilities(device.hello, device.heartbeat),
                    mcu=mcu,
                    last_seen_ms=device.last_seen_ms,
                )
            )
        return adverts

    def sample_sets(self, now_ms: int, samples_min: int) -> list[tuple[str, list[messages.Sample]]]:
        """(device id, its buffered samples) of alive devices with at least `samples_min`."""
        limits = self.limits
        found = []
        for device in sorted(self._devices.values(), key=_by_id):
            state = device.state_at(now_ms, limits.suspect_after_ms, limits.dead_after_ms)
            if state == ALIVE and len(device.samples) >= samples_min:
                found.append((device.device_id, list(device.samples)))
        return found

    def take_counter_updates(self) -> dict[str, int]:
        """Replay counters changed since the last call, for the host to persist."""
        updates, self._dirty_counters = self._dirty_counters, {}
        return updates

    def check_invariants(self) -> None:
        assert len(self._devices) <= self.limits.devices_max
        for device in self._devices.values():
            assert len(device.infer_pending) <= self.limits.infer_pending_per_device_max
            assert len(device.readings) <= self.limits.sensors_max
            assert len(device.samples) <= self.limits.samples_per_device_max


def _by_id(device: DeviceState) -> str:
    device_id: str = device.device_id
    return device_id


__all__ = ["DeviceUnavailable", "GatewayMachine", "KeyLookup", "Send"]
