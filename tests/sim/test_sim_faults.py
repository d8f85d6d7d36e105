"""Every fault kind of the simulator, observed through recording probe machines."""

from __future__ import annotations

import functools
import random
from typing import Any

from agentmesh.core.node import InvariantViolation, MachineBase
from agentmesh.core.sim import Crash, Partition, ScheduledCall, SimConfig, Simulation
from agentmesh.core.sim.network import ConstantLatency, LinkLatency, NetworkConfig, ParetoLatency


class Probe(MachineBase):
    """Receives and records; ticks every `tick_ms` local ms if > 0; `fail_after` deliveries
    makes its invariant fail; its durable state is its boot count."""

    def __init__(
        self,
        node_id: str,
        rng: random.Random,
        durable: Any = None,
        tick_ms: int = 0,
        fail_after: int = 0,
    ) -> None:
        super().__init__(node_id, rng)
        self.received: list[tuple[int, str, Any]] = []
        self.ticks: list[int] = []
        self.boots = (durable or 0) + 1
        self.durable_in = durable
        self.tick_ms = tick_ms
        self.fail_after = fail_after
        self.started_ms: int | None = None
        self._next: int | None = None

    def start(self, now_ms: int) -> None:
        self.started_ms = now_ms
        self._next = now_ms + self.tick_ms if self.tick_ms else None

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        self.received.append((now_ms, sender, message))

    def tick(self, now_ms: int) -> None:
        self.ticks.append(now_ms)
        self._next = now_ms + self.tick_ms

    def next_deadline(self) -> int | None:
        return self._next

    def check_invariants(self) -> None:
        if self.fail_after and len(self.received) >= self.fail_after:
            raise InvariantViolation(f"{self.node_id} received {len(self.received)} messages")

    def durable_state(self) -> int:
        return self.boots


def _send(target: str, message: Any, machine: Any, now_ms: int) -> None:
    machine.send(target, message)


def send_call(at_ms: int, source: int, target: int, message: Any) -> ScheduledCall:
    """A scheduled call making node `source` send `message` to node `target`."""
    return ScheduledCall(at_ms, source, functools.partial(_send, f"n{target}", message))


def run_probes(
    nodes: int = 3,
    sends: tuple[tuple[int, int, int, Any], ...] = (),
    latency_ms: float = 10.0,
    duration_ms: int = 5_000,
    tick_ms: int = 0,
    fail_after: int = 0,
    **options: Any,
) -> Simulation:
    """Run `nodes` probes; `sends` are (at_ms, source, target, message)."""
    network = options.pop("network", None) or NetworkConfig(latency=ConstantLatency(latency_ms))
    config = SimConfig(
        nodes=nodes,
        seed=options.pop("seed", 1),
        duration_ms=duration_ms,
        network=network,
        **options,
    )
    calls = tuple(send_call(*send) for send in sends)

    def factory(node_id: str, rng: random.Random, durable: Any) -> Probe:
        return Probe(node_id, rng, durable, tick_ms, fail_after)

    sim = Simulation(config, factory, calls=calls)
    sim.run()
    return sim


def received(sim: Simulation, node: int) -> list[tuple[int, str, Any]]:
    return list(sim.machines[node].received)


# -- latency ------------------------------------------------------------------------


def test_constant_latency_delivers_exactly_that_late() -> None:
    sim = run_probes(sends=((100, 0, 1, "a"),), latency_ms=25)
    assert received(sim, 1) == [(125, "n0", "a")]


def test_per_link_latency_override_applies_to_the_named_direction_only() -> None:
    links = (LinkLatency(frozenset([0]), frozenset([1]), ConstantLatency(300)),)
    network = NetworkConfig(latency=ConstantLatency(10), links=links)
    sim = run_probes(sends=((100, 0, 1, "slow"), (100, 1, 0, "fast")), network=network)
    assert received(sim, 1) == [(400, "n0", "slow")]
    assert received(sim, 0) == [(110, "n1", "fast")]


def test_long_tailed_latency_spreads_delivery_times() -> None:
    network = NetworkConfig(latency=ParetoLatency(10, 1.2))
    sends = tuple((100, 0, 1, k) for k in range(200))
    sim = run_probes(sends=sends, network=network, duration_ms=40_000)
    delays = sorted(now - 100 for now, _, _ in received(sim, 1))
    assert len(delays) == 200 and delays[0] >= 10
    assert delays[-1] > 10 * delays[100]  # the tail is far beyond the median


# -- loss, duplication, reordering --------------------------------------------------


def test_loss_one_delivers_nothing() -> None:
    sends = tuple((100 + k, 0, 1, k) for k in range(50))
    sim = run_probes(sends=sends, network=NetworkConfig(loss=1.0))
    assert received(sim, 1) == []
    assert sim.stats.drops["loss"] == 50 and sim.stats.deliveries == 0


def test_partial_loss_drops_some_and_delivers_the_rest() -> None:
    sends = tuple((100 + k, 0, 1, k) for k in range(400))
    sim = run_probes(sends=sends, network=NetworkConfig(loss=0.5))
    assert 100 < len(received(sim, 1)) < 300
    assert sim.stats.drops["loss"] + len(received(sim, 1)) == 400


def test_duplicate_one_delivers_every_message_twice() -> None:
    sends = tuple((100 + k, 0, 1, k) for k in range(20))
    sim = run_probes(sends=sends, network=NetworkConfig(duplicate=1.0))
    messages = sorted(message for _, _, message in received(sim, 1))
    assert messages == sorted(list(range(20)) * 2)
    assert sim.stats.duplicates == 20


def test_reordering_lets_later_messages_overtake() -> None:
    sends = tuple((100 + k, 0, 1, k) for k in range(50))
    in_order = run_probes(sends=sends, network=NetworkConfig(latency=ConstantLatency(10)))
    assert [m for _, _, m in received(in_order, 1)] == list(range(50))
    network = NetworkConfig(latency=ConstantLatency(10), reorder_ms=200)
    shuffled = run_probes(sends=sends, network=network)
    order = [m for _, _, m in received(shuffled, 1)]
    assert sorted(order) == list(range(50)) and order != list(range(50))


# -- partitions ---------------------------------------------------------------------


def _probe_traffic(partition: Partition, nodes: int = 4) -> Simulation:
    """Every ordered pair exchanges one message at t=1 s (inside the cut) and t=3 s (healed)."""
    sends = tuple(
        (at_ms, a, b, (at_ms, a))
        for at_ms in (1000, 3000)
        for a in range(nodes)
        for b in range(nodes)
        if a != b
    )
    return run_probes(nodes=nodes, sends=sends, partitions=(partition,))


def _links_used(sim: Simulation, at_ms: int) -> set[tuple[int, int]]:
    links = set()
    for target, machine in enumerate(sim.machines):
        for _, _, (sent_ms, source) in machine.received:
            if sent_ms == at_ms:
                links.add((source, target))
    return links


ALL_PAIRS = {(a, b) for a in range(4) for b in range(4) if a != b}


def test_symmetric_partition_blocks_both_directions_until_it_heals() -> None:
    cut = Partition(500, 2000, "sym", frozenset([0, 1]), frozenset([2, 3]))
    sim = _probe_traffic(cut)
    crossing = {(a, b) for a, b in ALL_PAIRS if (a < 2) != (b < 2)}
    assert _links_used(sim, 1000) == ALL_PAIRS - crossing
    assert _links_used(sim, 3000) == ALL_PAIRS
    assert sim.stats.drops["partition"] == len(crossing)


def test_one_way_partition_blocks_exactly_one_direction() -> None:
    cut = Partition(500, 2000, "oneway", frozenset([0]), frozenset([1, 2]))
    sim = _probe_traffic(cut)
    assert _links_used(sim, 1000) == ALL_PAIRS - {(0, 1), (0, 2)}
    assert _links_used(sim, 3000) == ALL_PAIRS


def test_isolated_node_is_cut_from_everyone_else_only() -> None:
    cut = Partition(500, 2000, "isolate", frozenset([3]))
    sim = _probe_traffic(cut)
    assert _links_used(sim, 1000) == {(a, b) for a, b in ALL_PAIRS if 3 not in (a, b)}
    assert _links_used(sim, 3000) == ALL_PAIRS


def test_partition_without_heal_time_never_heals() -> None:
    sim = _probe_traffic(Partition(500, None, "isolate", frozenset([3])))
    assert not any(3 in link for link in _links_used(sim, 3000))


# -- crash and restart --------------------------------------------------------------


def test_crash_stops_deliveries_and_restart_resumes_them_with_durable_state() -> None:
    sends = tuple((at_ms, 0, 1, at_ms) for at_ms in range(100, 5000, 100))
    crash = Crash(1000, frozenset([1]), restart_ms=3000)
    sim = run_probes(sends=sends, crashes=(crash,), tick_ms=50)
    after = received(sim, 1)
    # The restarted machine is a new object: it only saw messages after the restart.
    assert after and all(now >= 3000 for now, _, _ in after)
    assert sim.machines[1].durable_in == 1 and sim.machines[1].boots == 2
    assert sim.machines[1].started_ms == 3000
    assert sim.stats.drops["crashed"] == 20  # sent 990..2890 ms, arriving while down
    assert all(now >= 3000 for now in sim.machines[1].ticks)  # old timers died with it


def test_crash_without_restart_is_down_for_good() -> None:
    sends = tuple((at_ms, 0, 1, at_ms) for at_ms in range(100, 5000, 100))
    sim = run_probes(sends=sends, crashes=(Crash(1000, frozenset([1])),))
    assert [now for now, _, _ in received(sim, 1)] == list(range(110, 1000, 100))
    assert not sim.alive[1] and sim.live_nodes() == [0, 2]


# -- clock drift --------------------------------------------------------------------


def test_drift_skews_each_nodes_clock_and_timers() -> None:
    sim = run_probes(nodes=6, tick_ms=100, duration_ms=20_000, drift_ppm=100_000)
    rates = [rate / 1_000_000 for rate in sim.rate_ppm]
    assert len({round(rate, 3) for rate in rates}) > 1
    for machine, rate in zip(sim.machines, rates, strict=True):
        # A node with a fast clock reaches its deadlines sooner in virtual time.
        assert abs(len(machine.ticks) - 20_000 * rate / 100) <= 2
        assert machine.ticks[-1] <= 20_000 * rate + 1


def test_clock_offset_shifts_what_each_node_reads() -> None:
    sim = run_probes(nodes=5, clock_offset_ms_max=10_000)
    starts = [machine.started_ms for machine in sim.machines]
    assert starts == sim.offset_ms and len(set(starts)) > 1


# -- invariants ---------------------------------------------------------------------


def test_failed_invariant_stops_the_run_naming_node_and_time() -> None:
    sends = tuple((at_ms, 0, 1, at_ms) for at_ms in range(100, 5000, 100))
    sim = run_probes(sends=sends, fail_after=3)
    assert sim.violation is not None
    assert sim.violation.node_id == "n1" and sim.violation.time_ms == 310
    assert "received 3 messages" in sim.violation.message
    assert sim.stats.deliveries == 3  # nothing ran after the failure
