"""Bridged devices' offers through PBFT rounds in memory (RoundsNet): each device is one
vote of the aggregation rule, a poisoned device is outvoted by the median, and a gateway
offers at most the cap of device updates per round."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import numpy as np

from agentmesh.core.rounds import RoundsConfig, RuleConfig, aggregate_model
from agentmesh.core.rounds.testing import RoundsNet, fake_delta

PARAMS = 64


def config(rule: str = "median", cap: int = 16) -> RoundsConfig:
    return RoundsConfig(params=PARAMS, rounds_total=2, window_ms=400, takeover_ms=300,
                        abort_after_ms=2000, rule=RuleConfig(rule),
                        device_offers_per_gateway_max=cap)  # fmt: skip


def honest(name: str) -> Callable[[int], bytes]:
    return lambda number: fake_delta(name, number, PARAMS)


def poisoned(name: str) -> Callable[[int], bytes]:
    def delta(number: int) -> bytes:
        values = np.frombuffer(fake_delta(name, number, PARAMS), "<f4") * np.float32(1e4)
        return values.astype("<f4").tobytes()

    return delta


def run(rule: str) -> tuple[RoundsNet, str, dict[str, Callable[[int], bytes]]]:
    net = RoundsNet(4, config(rule))
    gateway = net.ids[1]
    devices = {"dev0": honest("dev0"), "dev1": honest("dev1"), "dev2": poisoned("dev2")}
    net.devices[gateway] = devices
    net.run(3000)
    return net, gateway, devices


def step(net: RoundsNet, devices: dict[str, Callable[[int], bytes]]) -> tuple[bytes, float]:
    """Round 1's committed model, checked against a recomputation; and its distance to base."""
    committed = [net.committed(p) for p in net.ids]
    assert all(c == committed[0] for c in committed) and len(committed[0]) == 2
    (first,) = net.events(net.ids[0], "round_committed")[:1]
    trainers = [t for t, _ in first["contributors"]]
    assert {"dev0", "dev1", "dev2"} <= set(trainers) and len(trainers) == 7
    samples = dict(first["contributors"])
    inputs = []
    for trainer in sorted(trainers):
        delta = devices[trainer](1) if trainer in devices else fake_delta(trainer, 1, PARAMS)
        inputs.append((delta, samples[trainer]))
    expected = aggregate_model(net.model, inputs, net.config.rule, PARAMS)
    assert first["model"] == hashlib.sha256(expected).digest()
    moved = np.frombuffer(expected, "<f4") - np.frombuffer(net.model, "<f4")
    return expected, float(np.linalg.norm(moved))


def test_device_offers_are_separate_votes_and_a_poisoned_device_is_outvoted_by_the_median() -> None:
    net, _, devices = run("median")
    _, median_step = step(net, devices)
    honest_norm = max(float(np.linalg.norm(np.frombuffer(fake_delta(p, 1, PARAMS), "<f4")))
                      for p in [*net.ids, "dev0", "dev1"])  # fmt: skip
    assert median_step <= honest_norm, "the median stays among the honest updates"
    # The same round under FedAvg: the poisoned device drags the model far away.
    net, _, devices = run("fedavg")
    _, mean_step = step(net, devices)
    assert mean_step > 100 * median_step


def test_a_gateway_offers_no_more_device_updates_than_the_cap() -> None:
    net = RoundsNet(4, config(cap=2))
    gateway = net.ids[2]
    net.devices[gateway] = {f"dev{k}": honest(f"dev{k}") for k in range(4)}
    net.run(3000)
    for peer in net.ids:
        for event in net.events(peer, "round_committed"):
            trainers = [t for t, _ in event["contributors"]]
            assert sorted(t for t in trainers if t.startswith("dev")) == ["dev0", "dev1"]
    assert net.nodes[gateway].rounds.counters.get("device_offer_not_sent_over_cap") == 4
