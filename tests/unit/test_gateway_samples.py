"""Labelled samples (protocol type 6) at the gateway: buffered per device, bounded, checked."""

from __future__ import annotations

import random

import numpy as np

from agentmesh.core.identity import Identity
from agentmesh.gateway_peer import protocol
from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.devices import DeviceRecord
from agentmesh.gateway_peer.limits import GatewayLimits
from agentmesh.gateway_peer.machine import GatewayMachine

ADDRESS = "127.0.0.1:40000"
LIMITS = GatewayLimits(samples_per_device_max=8, message_burst=1_000)


def make(count: int = 2) -> tuple[GatewayMachine, list[SimulatedDevice]]:
    rng = random.Random(3)
    records, devices = {}, []
    for index in range(count):
        key = rng.randbytes(32)
        records[f"dev-{index}"] = DeviceRecord(f"dev-{index}", key, 0)
        devices.append(SimulatedDevice(f"dev-{index}", key, rng.randbytes(8)))
    machine = GatewayMachine(Identity.from_seed(bytes(32)), records.get, rng, LIMITS)
    for device in devices:
        machine.receive(device.hello(), ADDRESS, 0)
    machine.take_outbox()
    return machine, devices


def features(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 16, 64).astype(np.float32)


def test_samples_are_kept_newest_first_out_within_the_bound() -> None:
    machine, (device, other) = make()
    for index in range(LIMITS.samples_per_device_max + 3):
        machine.receive(device.sample(features(index), index % 10), ADDRESS, 10 + index)
    machine.receive(other.sample(features(99), 4), ADDRESS, 20)
    machine.check_invariants()
    assert machine.counters["samples_evicted"] == 3
    sets = dict(machine.sample_sets(30, samples_min=2))
    assert list(sets) == ["dev-0"], "dev-1 has fewer than samples_min"
    kept = sets["dev-0"]
    assert len(kept) == LIMITS.samples_per_device_max
    assert [s.label for s in kept] == [i % 10 for i in range(3, LIMITS.samples_per_device_max + 3)]
    np.testing.assert_array_equal(kept[-1].features, features(LIMITS.samples_per_device_max + 2))
    assert machine.device("dev-0").status()["samples"] == LIMITS.samples_per_device_max  # type: ignore[union-attr]


def test_bad_samples_are_counted_refusals() -> None:
    machine, (device, _) = make()
    bad = features(1)
    bad[5] = np.nan
    datagrams = [
        device.sample(bad, 1),  # not finite
        device.sample(features(2), LIMITS.sample_label_max + 1),  # label out of range
        device.message(protocol.SAMPLE, {"x": b"\x00" * 5, "y": 1}),  # not float32 bytes
        device.message(protocol.SAMPLE, {"x": b"", "y": 1}),  # empty
        device.message(protocol.SAMPLE, {"x": features(3).tobytes()}),  # no label
        device.sample(np.zeros(LIMITS.floats_per_message_max + 1, np.float32), 1),  # too many
    ]
    for now_ms, datagram in enumerate(datagrams, start=10):
        machine.receive(datagram, ADDRESS, now_ms)
    assert machine.counters.get("rejected_bad_body", 0) + machine.counters.get(
        "rejected_too_large", 0
    ) == len(datagrams)
    assert machine.sample_sets(100, samples_min=1) == []


def test_dead_devices_offer_no_samples() -> None:
    machine, (device, _) = make()
    machine.receive(device.sample(features(1), 3), ADDRESS, 10)
    assert [d for d, _ in machine.sample_sets(20, samples_min=1)] == ["dev-0"]
    later = 10 + LIMITS.suspect_after_ms
    assert machine.sample_sets(later, samples_min=1) == [], "a silent device sits rounds out"
