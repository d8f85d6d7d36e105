"""Event order of the calendar queue: by virtual time, then by scheduling order, also for
events due inside the time bucket being played and across bucket boundaries."""

from __future__ import annotations

import random
from typing import Any

from agentmesh.core.node import MachineBase
from agentmesh.core.sim import ScheduledCall, SimConfig, Simulation
from agentmesh.core.sim.engine import BUCKET_US_BITS
from agentmesh.core.sim.network import ConstantLatency, NetworkConfig

Log = list[tuple[str, Any, int]]


class Hop(MachineBase):
    """Logs every message and passes `k + 1` on to the next node until `hops`."""

    def __init__(self, node_id: str, rng: random.Random, log: Log, nodes: int, hops: int):
        super().__init__(node_id, rng)
        self.log, self.nodes, self.hops = log, nodes, hops

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        self.log.append((self.node_id, message, now_ms))
        if message < self.hops:
            self.send(f"n{(int(self.node_id[1:]) + 1) % self.nodes}", message + 1)

    def tick(self, now_ms: int) -> None:
        """No timers."""

    def next_deadline(self) -> int | None:
        return None


def _call(label: str, log: Log, machine: Any, now_ms: int) -> None:
    log.append(("call", label, now_ms))
    machine.send("n1", 100)  # due at the call's own time + latency


def _run(latency_ms: float, hops: int, calls: list[tuple[int, str]]) -> Log:
    log: Log = []
    nodes = 3
    config = SimConfig(
        nodes=nodes,
        seed=1,
        duration_ms=20,
        network=NetworkConfig(latency=ConstantLatency(latency_ms)),
        global_check_ms=0,
    )
    plan = tuple(
        ScheduledCall(at_ms, 0, lambda m, now, label=label: _call(label, log, m, now))
        for at_ms, label in calls
    )
    sim = Simulation(
        config, lambda node_id, rng, _: Hop(node_id, rng, log, nodes, hops), None, plan
    )
    sim.machines[0].send("n1", 0)  # queued at start, delivered at t = latency
    sim.run()
    assert sim.violation is None
    return log


def test_sub_bucket_latency_interleaves_with_a_call_in_time_order() -> None:
    # 0.3 ms hops: 300, 600, 900 µs (each queued while its bucket plays), then the call
    # at 1,000 µs, then 1,200 µs onwards.
    log = _run(0.3, 5, [(1, "c1")])
    assert [(who, what) for who, what, _ in log] == [
        ("n1", 0),
        ("n2", 1),
        ("n0", 2),
        ("call", "c1"),
        ("n1", 3),
        ("n1", 100),  # sent by the call at 1,000 µs: due at 1,300 µs, before hop 4 at 1,500
        ("n2", 4),
        ("n0", 5),
    ]
    assert [now for *_, now in log] == [0, 0, 0, 1, 1, 1, 1, 1]


def test_zero_latency_chain_runs_before_later_events_at_the_same_time() -> None:
    # Everything at t = 0 µs runs in scheduling order, the whole zero-latency chain first;
    # at 1 ms both calls (scheduled before the run) come before the messages they send.
    log = _run(0.0, 4, [(1, "c1"), (1, "c2")])
    assert [(who, what) for who, what, _ in log] == [
        ("n1", 0),
        ("n2", 1),
        ("n0", 2),
        ("n1", 3),
        ("n2", 4),
        ("call", "c1"),
        ("call", "c2"),
        ("n1", 100),
        ("n1", 100),
    ]


def test_hops_across_bucket_boundaries_interleave_with_calls_in_time_order() -> None:
    # 1.3 ms hops through 13 ms cross several buckets (2**BUCKET_US_BITS µs); all times
    # are distinct, so the expected order is simply by time.
    latency_us, hops = 1300, 9
    log = _run(latency_us / 1000, hops, [(3, "c1"), (9, "c2")])
    expected = [((k + 1) * latency_us, f"n{(k + 1) % 3}", k) for k in range(hops + 1)]
    for at_us, label in ((3000, "c1"), (9000, "c2")):
        expected += [(at_us, "call", label), (at_us + latency_us, "n1", 100)]
    expected.sort()
    assert BUCKET_US_BITS < 13 and latency_us * (hops + 1) > 2 * 2**BUCKET_US_BITS
    assert log == [(who, what, at_us // 1000) for at_us, who, what in expected]
