"""GatewayMachine with simulated devices, in memory: auth, replay, rate, models, adverts."""

from __future__ import annotations

import random

import numpy as np
import pytest

from agentmesh.core.identity import Identity, is_peer_id
from agentmesh.core.node import Event, Send
from agentmesh.gateway_peer import protocol
from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.devices import DeviceRecord
from agentmesh.gateway_peer.limits import GatewayLimits
from agentmesh.gateway_peer.machine import DeviceUnavailable, GatewayMachine
from agentmesh.gateway_peer.model import MlpModel

ADDRESS = "127.0.0.1:40000"


class Registry(dict[str, DeviceRecord]):
    def lookup(self, device_id: str) -> DeviceRecord | None:
        return self.get(device_id)


def make(
    count: int = 1, limits: GatewayLimits | None = None
) -> tuple[GatewayMachine, list[SimulatedDevice]]:
    rng = random.Random(1)
    registry = Registry()
    devices = []
    for index in range(count):
        device_id = f"dev-{index}"
        key = rng.randbytes(32)
        registry[device_id] = DeviceRecord(device_id, key, 0)
        devices.append(SimulatedDevice(device_id, key, rng.randbytes(8)))
    gateway = Identity.from_seed(bytes(32))
    machine = GatewayMachine(gateway, registry.lookup, rng, limits or GatewayLimits())
    return machine, devices


def deliver(
    machine: GatewayMachine, device: SimulatedDevice, datagram: bytes, now_ms: int
) -> list[Event]:
    """Datagram in; downlink handled by the device, replies fed back until quiet."""
    queue = [datagram]
    events: list[Event] = []
    while queue:
        machine.receive(queue.pop(0), ADDRESS, now_ms)
        for item in machine.take_outbox():
            if isinstance(item, Send):
                queue.extend(device.handle(item.message))
            else:
                events.append(item)
        machine.check_invariants()
    return events


def test_hello_is_welcomed_and_listed_with_capabilities() -> None:
    machine, (device,) = make()
    events = deliver(machine, device, device.hello(sens=["temp", "light"]), 10)
    assert [event.kind for event in events] == ["device_joined"]
    assert device.welcomed_by == machine.node_id
    (status,) = machine.devices_status()
    assert status["capabilities"]["sensors"] == ["temp", "light"]
    assert status["state"] == "alive" and status["counter_max"] == 1


def test_replayed_forged_unknown_and_garbage_are_counted_not_raised() -> None:
    machine, (device,) = make()
    hello = device.hello()
    deliver(machine, device, hello, 10)
    deliver(machine, device, hello, 11)  # replay
    forged = bytearray(device.reading("temp", 1, np.ones(2)))
    forged[-1] ^= 1
    deliver(machine, device, bytes(forged), 12)
    stranger = SimulatedDevice("nobody", bytes(32), bytes(8))
    deliver(machine, device, stranger.hello(), 13)
    deliver(machine, device, b"\x00" * 40, 14)
    counters = machine.counters
    assert counters["rejected_replay"] == 1
    assert counters["rejected_bad_mac"] == 1
    assert counters["rejected_unknown_device"] == 1
    assert counters["rejected_decode"] == 1
    assert counters["accepted"] == 1
    assert machine.device("dev-0").stats == {"accepted": 1, "replay": 1, "bad_mac": 1}  # type: ignore[union-attr]


def test_flooding_device_is_rate_limited_without_affecting_another() -> None:
    limits = GatewayLimits(messages_per_s=10, message_burst=5)
    machine, (flooder, quiet) = make(2, limits)
    for _ in range(50):
        deliver(machine, flooder, flooder.heartbeat(1), 100)
    deliver(machine, quiet, quiet.hello(), 100)
    assert machine.counters["rejected_rate_limited"] == 45
    assert machine.device("dev-1").stats == {"accepted": 1}  # type: ignore[union-attr]


def test_model_transfer_and_inference_match_numpy() -> None:
    limits = GatewayLimits(chunk_bytes=256, transfer_window_chunks=3)
    machine, (device,) = make(limits=limits)
    deliver(machine, device, device.hello(), 0)
    rng = np.random.default_rng(3)
    arrays = [rng.normal(size=s).astype(np.float32) for s in [(8, 16), (16,), (16, 4), (4,)]]
    model = MlpModel.from_arrays(7, arrays, limits)
    machine.send_model("dev-0", model, 1)
    events = []
    for item in machine.take_outbox():
        assert isinstance(item, Send)
        for reply in device.handle(item.message):
            events += deliver(machine, device, reply, 2)
    assert [e.kind for e in events] == ["model_loaded"]
    assert device.model is not None and device.model.data == model.data
    inputs = rng.normal(size=8).astype(np.float32)
    machine.request_inference("dev-0", inputs, 3)
    (send,) = machine.take_outbox()
    (reply,) = device.handle(send.message)
    (event,) = deliver(machine, device, reply, 4)
    assert event.kind == "infer_result"
    np.testing.assert_allclose(event.data["outputs"], model.forward(inputs), rtol=1e-6)


def test_lost_chunks_are_resent_after_the_retry_interval() -> None:
    limits = GatewayLimits(chunk_bytes=64, transfer_window_chunks=2, chunk_retry_ms=100)
    machine, (device,) = make(limits=limits)
    deliver(machine, device, device.hello(), 0)
    arrays = [np.ones((4, 8), np.float32), np.zeros(8, np.float32)]
    machine.send_model("dev-0", MlpModel.from_arrays(1, arrays, limits), 0)
    dropped = machine.take_outbox()  # both chunks lost
    assert len(dropped) == 2
    machine.tick(50)
    assert machine.take_outbox() == []
    machine.tick(100)
    resent = machine.take_outbox()
    assert len(resent) == 2
    events = []
    for item in resent:
        for reply in device.handle(item.message):
            events += deliver(machine, device, reply, 101)
    assert [e.kind for e in events] == ["model_loaded"]


def test_commands_to_devices_without_session_raise_typed_error() -> None:
    machine, _ = make()
    with pytest.raises(DeviceUnavailable):
        machine.request_inference("dev-0", np.zeros(2), 0)


def test_bridged_adverts_carry_derived_peer_id_and_gateway() -> None:
    machine, devices = make(3)
    for device in devices:
        deliver(machine, device, device.hello(ram=262_144), 5)
    adverts = machine.bridged_adverts(6)
    assert [a.device_id for a in adverts] == ["dev-0", "dev-1", "dev-2"]
    assert len({a.peer_id for a in adverts}) == 3
    assert all(is_peer_id(a.peer_id) and a.bridged_via == machine.node_id for a in adverts)
    assert adverts[0].capabilities["class"] == "mcu"
    assert adverts[0].peer_id == machine.signer_for("dev-0").peer_id
    status = adverts[0].to_status()
    assert status["state"] == "alive" and status["capabilities"]["mcu"]["ram_bytes"] == 262_144
    later = machine.bridged_adverts(6 + GatewayLimits().dead_after_ms)
    assert {a.state for a in later} == {"dead"}


def test_bridged_adverts_sign_as_membership_adverts() -> None:
    capabilities = pytest.importorskip(
        "agentmesh.core.membership.capabilities",
        reason="core.membership (issue: mesh) not present in this checkout",
    )
    machine, (device,) = make()
    deliver(machine, device, device.hello(), 5)
    (advert,) = machine.bridged_adverts(6)
    caps = capabilities.Capabilities.from_wire(advert.capabilities)
    signed = capabilities.sign_advert(
        machine.signer_for("dev-0"), advert.incarnation, advert.seq, caps
    )
    assert signed.peer_id == advert.peer_id


def test_reboot_with_new_nonce_restarts_downlink_session() -> None:
    machine, (device,) = make()
    deliver(machine, device, device.hello(), 1)
    rebooted = SimulatedDevice(device.device_id, device.key, b"\x09" * 8, device.counter)
    deliver(machine, rebooted, rebooted.hello(), 2)
    assert rebooted.welcomed_by == machine.node_id
    state = machine.device("dev-0")
    assert state is not None and state.incarnation == 2 and state.downlink_counter == 1


def test_wrong_direction_is_refused() -> None:
    machine, (device,) = make()
    welcome = protocol.seal(device.key, protocol.WELCOME, "dev-0", 5, device.nonce, {})
    machine.receive(welcome, ADDRESS, 0)
    assert machine.counters["rejected_wrong_direction"] == 1
