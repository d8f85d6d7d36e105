"""Simulated PBFT throughput and commit latency for a committee of n (used by the benchmark).

One committee over the deterministic simulator with a constant one-way latency;
node n1 (a backup) proposes. Latency: one entry at a time, from `propose` to the
`decided` event at n1, in network round trips. Throughput: an open-loop load
above capacity, entries decided per simulated second. Each replica is modelled
as one serial CPU (`CpuModel`): a signed message costs an Ed25519 verify to take
in and a signature to send (the costs measured on the 2-core box), so throughput
falls with n as PBFT's O(n) messages per replica per batch predict.
"""

from __future__ import annotations

import functools
import random
import statistics
from dataclasses import dataclass
from typing import Any

from agentmesh.core.node import Event, Output, Send
from agentmesh.core.sim.engine import ScheduledCall, SimConfig, SimHooks, Simulation, node_name
from agentmesh.core.sim.network import ConstantLatency, NetworkConfig

from .committee import Committee
from .config import ConsensusConfig
from .messages import Entry, Request
from .pbft import Replica
from .testing import FakeKeyring

ONE_WAY_MS = 5.0
VERIFY_US = 41 + 15  # Ed25519 verify (PyNaCl) + decode, per signed message taken in
REQUEST_US = 15  # an unsigned request
SIGN_US = 18  # Ed25519 sign, once per signed message sent (a broadcast signs once)
BENCH_CONSENSUS = ConsensusConfig(
    batch_entries_max=64,
    inflight_batches_max=4,
    pending_entries_max=8192,
    view_change_timeout_ms=5000,
)


class CpuModel:
    """A Machine wrapper: outputs leave only when the replica's serial CPU gets to them."""

    def __init__(self, inner: Replica) -> None:
        self.inner = inner
        self.node_id = inner.node_id
        self.busy_us = 0
        self._held: list[tuple[int, Output]] = []
        self._ready: list[Output] = []

    def start(self, now_ms: int) -> None:
        self.inner.start(now_ms)
        self._collect(now_ms)

    def receive(self, message: Any, sender: str, now_ms: int) -> None:
        cost = REQUEST_US if isinstance(message, Request) else VERIFY_US
        self.busy_us = max(self.busy_us, now_ms * 1000) + cost
        self.inner.receive(message, sender, now_ms)
        self._collect(now_ms)

    def propose(self, entry: Entry, now_ms: int) -> None:
        self.inner.propose(entry, now_ms)
        self._collect(now_ms)

    def tick(self, now_ms: int) -> None:
        deadline = self.inner.next_deadline()
        if deadline is not None and deadline <= now_ms:
            self.inner.tick(now_ms)
        self._collect(now_ms)

    def next_deadline(self) -> int | None:
        deadlines = [self.inner.next_deadline()]
        if self._held:
            deadlines.append(-(-self._held[0][0] // 1000))
        return min((d for d in deadlines if d is not None), default=None)

    def _collect(self, now_ms: int) -> None:
        signed: set[int] = set()
        for item in self.inner.take_outbox():
            if isinstance(item, Send) and not isinstance(item.message, Request):
                if id(item.message) not in signed:
                    signed.add(id(item.message))
                    self.busy_us = max(self.busy_us, now_ms * 1000) + SIGN_US
            self._held.append((self.busy_us, item))
        while self._held and self._held[0][0] <= now_ms * 1000:
            self._ready.append(self._held.pop(0)[1])

    def take_outbox(self) -> list[Output]:
        out, self._ready = self._ready, []
        return out

    def check_invariants(self) -> None:
        self.inner.check_invariants()


@dataclass(frozen=True, slots=True)
class SimFigures:
    """What one committee size measured."""

    n: int
    latency_rtt_p50: float
    latency_rtt_p99: float
    decisions_per_s: float
    batches_per_s: float
    deliveries_per_batch: float


class _Recorder(SimHooks):
    def __init__(self, watch: str) -> None:
        self.watch = watch
        self.sim: Simulation | None = None
        self.submitted_ms: dict[bytes, int] = {}
        self.latencies_ms: list[int] = []
        self.decided: list[tuple[int, int]] = []  # (ms, entries)

    def attach(self, sim: Simulation) -> None:
        self.sim = sim

    def propose(self, entries: list[Entry], machine: Any, now_ms: int) -> None:
        for entry in entries:
            self.submitted_ms[entry.entry_id()] = now_ms
            machine.propose(entry, now_ms)

    def on_event(self, node_id: str, event: Event, now_ms: int) -> None:
        if node_id != self.watch or event.kind != "decided":
            return
        self.decided.append((now_ms, len(event.data["entries"])))
        for entry in event.data["entries"]:
            start = self.submitted_ms.pop(entry.entry_id(), None)
            if start is not None:
                self.latencies_ms.append(now_ms - start)


def _simulation(n: int, calls: list[tuple[int, list[Entry]]], duration_ms: int) -> _Recorder:
    keyring = FakeKeyring(b"bench")
    committee = Committee(0, tuple(node_name(i) for i in range(n)))
    recorder = _Recorder(node_name(1))

    def factory(node_id: str, rng: random.Random, durable: Any) -> CpuModel:
        signer = keyring.signer(node_id)
        return CpuModel(Replica(signer, keyring.verify, committee, rng, BENCH_CONSENSUS))

    scheduled = tuple(
        ScheduledCall(at_ms, 1, functools.partial(recorder.propose, entries))
        for at_ms, entries in calls
    )
    config = SimConfig(
        nodes=n,
        seed=1,
        duration_ms=duration_ms,
        network=NetworkConfig(latency=ConstantLatency(ONE_WAY_MS)),
        global_check_ms=0,
    )
    sim = Simulation(config, factory, recorder, scheduled)
    sim.run()
    if sim.violation is not None:
        raise RuntimeError(f"simulated committee of {n} failed: {sim.violation.message}")
    recorder.sim = sim
    return recorder


def measure(n: int, latency_samples: int, load_ms: int) -> SimFigures:
    """Latency (sequential entries) and saturated throughput of a committee of `n`."""
    gap_ms = 20
    light = [(10 + k * gap_ms, [Entry("bench", b"lat-%d" % k)]) for k in range(latency_samples)]
    recorder = _simulation(n, light, 10 + gap_ms * (latency_samples + 1))
    rtts = sorted(ms / (2 * ONE_WAY_MS) for ms in recorder.latencies_ms)
    offered_per_ms = BENCH_CONSENSUS.batch_entries_max // 2
    heavy = [
        (t, [Entry("bench", b"%d-%d" % (t, i)) for i in range(offered_per_ms)])
        for t in range(1, load_ms + 1)
    ]
    loaded = _simulation(n, heavy, load_ms + 20)
    assert loaded.sim is not None
    warm_ms = load_ms // 4
    window = [(t, k) for t, k in loaded.decided if warm_ms <= t <= load_ms]
    span_s = (load_ms - warm_ms) / 1000
    batches = len(loaded.decided)
    return SimFigures(
        n=n,
        latency_rtt_p50=statistics.median(rtts),
        latency_rtt_p99=rtts[min(len(rtts) - 1, int(len(rtts) * 0.99))],
        decisions_per_s=sum(k for _, k in window) / span_s,
        batches_per_s=len(window) / span_s,
        deliveries_per_batch=loaded.sim.stats.deliveries / max(1, batches),
    )
