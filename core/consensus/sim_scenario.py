"""The `bft` simulator scenario: a PBFT committee under Byzantine plug-ins and faults.

Layout over the simulator's nodes n0..nN-1: the committee is n0..n{c-1} with
c = N - 2 when 6 <= N <= 12 (c = N below 6), else c in {4, 7, 10} drawn per seed; node c is a twin
slot (it runs a second replica with the identity of one member when the seed
picks the `twins` attack, else it is an observer); node c+1 is an observer;
the rest are idle. Up to f members run a Byzantine behaviour (adversary.py).

Safety, checked on every decision as it happens (so after every delivery): no
two honest nodes decide different digests at one sequence number, each honest
node decides in order, and every certificate verifies against the committee of
its epoch. Liveness: every entry an honest member takes after the last fault
healed is decided by every live honest member (in time, at most f Byzantine).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field
from typing import Any

from agentmesh.core.node import Event, InvariantViolation
from agentmesh.core.sim.engine import ScheduledCall, Simulation, node_name
from agentmesh.core.sim.faults import Crash, Partition, last_heal_ms
from agentmesh.core.sim.scenario import (
    Scenario,
    ScenarioHooks,
    ScenarioParams,
    ScenarioSetup,
    register_scenario,
)

from .adversary import BEHAVIOURS, ByzantineReplica, SlowPrimary, TwinRelay
from .committee import COMMITTEE_ENTRY_KIND, Committee, encode_committee_entry
from .config import ConsensusConfig
from .durable import DurableState
from .messages import Entry
from .pbft import Replica
from .proofs import verify_certificate
from .testing import FakeKeyring

SIM_CONSENSUS = ConsensusConfig(
    checkpoint_interval=8,
    window=32,
    batch_entries_max=8,
    inflight_batches_max=4,
    view_change_timeout_ms=400,
    view_change_timeout_max_ms=1600,
    fetch_interval_ms=100,
    fetch_batches_max=32,
    retained_batches_max=64,
)
COMMITTEE_SIZES = (4, 7, 10)
SUBMIT_EVERY_MS = 150
ATTACKS = tuple(name for name in BEHAVIOURS if name != "honest")
FAILURES_LISTED_MAX = 10


@dataclass
class BftPlan:
    """Who is who in one seed."""

    committee_size: int
    byzantine: dict[int, str] = field(default_factory=dict)  # member index -> behaviour
    twin_slot: int | None = None  # node running the second replica of a twin pair
    twin_of: int | None = None
    observers: tuple[int, ...] = ()

    @property
    def faulty_ids(self) -> set[str]:
        ids = {node_name(i) for i in self.byzantine}
        if self.twin_slot is not None:
            ids.add(node_name(self.twin_slot))
        return ids


class IdleNode:
    """A node with nothing to do in this scenario."""

    def start(self, now_ms: int) -> None: ...
    def receive(self, message: Any, sender: str, now_ms: int) -> None: ...
    def tick(self, now_ms: int) -> None: ...
    def next_deadline(self) -> int | None:
        return None

    def take_outbox(self) -> list[Any]:
        return []

    def check_invariants(self) -> None: ...


def draw_plan(nodes: int, rng: random.Random, attack: str | None = None) -> BftPlan:
    """The seed's committee size and faulty members (`attack` forces f of that kind)."""
    if nodes < 6:
        size = nodes
    elif nodes <= 12:
        size = nodes - 2  # two spare nodes: the twin slot and an observer
    else:
        size = rng.choice(COMMITTEE_SIZES)
    plan = BftPlan(size)
    f = (size - 1) // 3
    spare = list(range(size, min(nodes, size + 2)))
    count = rng.randint(0, f) if attack is None else f
    for index in rng.sample(range(size), count):
        chosen = rng.choice(ATTACKS) if attack is None else attack
        if chosen == "twins" and (not spare or spare[0] != size):
            chosen = "silent"
        if chosen == "twins":
            if plan.twin_slot is not None:
                chosen = "equivocate"
            else:
                plan.twin_slot, plan.twin_of = size, index
        plan.byzantine[index] = chosen
    plan.observers = tuple(i for i in spare if i != plan.twin_slot)
    return plan


class BftChecks(ScenarioHooks):
    """Safety on every decision; liveness at the end."""

    def __init__(self, plan: BftPlan, keyring: FakeKeyring, genesis: Committee) -> None:
        self.plan = plan
        self.keyring = keyring
        self.sim: Simulation | None = None
        self.committees: dict[int, Committee] = {genesis.epoch: genesis}
        self.digests: dict[int, bytes] = {}
        self.entry_seq: dict[bytes, int] = {}
        self.progress: dict[str, int] = {}
        self.submitted: list[tuple[int, str, bytes]] = []
        self.views_max = 0

    def attach(self, sim: Simulation) -> None:
        self.sim = sim

    def on_event(self, node_id: str, event: Event, now_ms: int) -> None:
        if node_id in self.plan.faulty_ids:
            return
        kind = event.kind
        if kind == "decided":
            self._check_decided(node_id, event.data)
        elif kind == "state_gap":
            self.progress[node_id] = event.data["to_seq"]
        elif kind == "epoch":
            self._check_epoch(node_id, event.data)
        elif kind == "new_view":
            self.views_max = max(self.views_max, event.data["view"])

    def _check_decided(self, node_id: str, data: Any) -> None:
        seq, digest, cert = data["seq"], data["digest"], data["certificate"]
        last = self.progress.get(node_id, 0)
        if seq != last + 1:
            raise InvariantViolation(f"{node_id} decided seq {seq} right after {last}")
        self.progress[node_id] = seq
        known = self.digests.setdefault(seq, digest)
        if known != digest:
            raise InvariantViolation(f"{node_id} decided another digest at seq {seq}")
        committee = self.committees.get(data["epoch"])
        if committee is None or not verify_certificate(cert, committee, self.keyring.verify):
            raise InvariantViolation(f"{node_id} decided seq {seq} on an invalid certificate")
        if cert.seq != seq or cert.digest != digest:
            raise InvariantViolation(f"{node_id}: certificate of seq {seq} is for another batch")
        for entry in data["entries"]:
            self.entry_seq.setdefault(entry.entry_id(), seq)

    def _check_epoch(self, node_id: str, data: Any) -> None:
        committee = Committee(data["epoch"], tuple(data["members"]))
        known = self.committees.setdefault(committee.epoch, committee)
        if known != committee:
            raise InvariantViolation(
                f"{node_id} derived another committee for epoch {committee.epoch}"
            )

    def check_global(self, sim: Simulation) -> None:
        for node in sim.live_nodes():
            machine = sim.machines[node]
            replica = getattr(machine, "inner", machine)
            if isinstance(replica, Replica):
                replica.check_invariants_full()

    def submit(self, entry: Entry, machine: Any, now_ms: int) -> None:
        assert self.sim is not None
        if machine.propose(entry, now_ms):
            self.submitted.append((self.sim.now_ms, machine.node_id, entry.entry_id()))

    def check_liveness(self, sim: Simulation, judged_until_ms: int) -> list[str]:
        healed = last_heal_ms(sim.config.partitions, sim.config.crashes) or 0
        final = self.committees[max(self.committees)]
        honest = [
            node_name(i)
            for i in sim.live_nodes()
            if node_name(i) in final and node_name(i) not in self.plan.faulty_ids
        ]
        failures: list[str] = []
        judged = [s for s in self.submitted if healed <= s[0] <= judged_until_ms]
        for time_ms, origin, entry_id in judged:
            seq = self.entry_seq.get(entry_id)
            if seq is None:
                failures.append(f"entry from {origin} at {time_ms} ms was never decided")
            else:
                behind = [n for n in honest if self.progress.get(n, 0) < seq]
                if behind:
                    failures.append(
                        f"seq {seq} (from {origin} at {time_ms} ms) missing at {behind}"
                    )
            if len(failures) >= FAILURES_LISTED_MAX:
                break
        return failures


def _factory(
    plan: BftPlan,
    keyring: FakeKeyring,
    genesis: Committee,
    node_id: str,
    rng: random.Random,
    durable: Any,
) -> Any:
    index = int(node_id[1:])
    state = durable if isinstance(durable, DurableState) else None
    if index == plan.twin_slot and plan.twin_of is not None:
        identity = node_name(plan.twin_of)
    elif index < plan.committee_size or index in plan.observers:
        identity = node_id
    else:
        return IdleNode()
    replica = Replica(keyring.signer(identity), keyring.verify, genesis, rng, SIM_CONSENSUS, state)
    attack = plan.byzantine.get(index)
    if attack is None:
        return replica
    behaviour_rng = random.Random(f"{rng.random()}/behaviour")
    signer = keyring.signer(identity)
    if attack == "twins":
        assert plan.twin_slot is not None
        return ByzantineReplica(
            replica, TwinRelay(signer, behaviour_rng, node_name(plan.twin_slot))
        )
    if attack == "slow_primary":
        delay = SIM_CONSENSUS.view_change_timeout_ms - 80
        return ByzantineReplica(replica, SlowPrimary(signer, behaviour_rng, delay))
    return ByzantineReplica(replica, BEHAVIOURS[attack](signer, behaviour_rng))


def _faults(
    params: ScenarioParams, plan: BftPlan
) -> tuple[tuple[Partition, ...], tuple[Crash, ...]]:
    rng = params.rng
    fault_end_ms = params.duration_ms - params.liveness_bound_ms - 200
    if fault_end_ms < 1000:
        return (), ()
    size = plan.committee_size
    partitions: list[Partition] = []
    crashes: list[Crash] = []
    if rng.random() < 0.5:
        start = rng.randint(200, fault_end_ms - 500)
        end = min(fault_end_ms, start + rng.randint(300, 3000))
        side = frozenset(rng.sample(range(size), rng.randint(1, size // 2)))
        if rng.random() < 0.5:
            partitions.append(Partition(start, end, "isolate", side))
        else:
            other = frozenset(range(size)) - side
            partitions.append(Partition(start, end, "sym", side, other))
    honest = [i for i in range(size) if i not in plan.byzantine]
    if rng.random() < 0.5 and honest:
        at = rng.randint(100, fault_end_ms - 300)
        restart = min(fault_end_ms, at + rng.randint(200, 2500))
        down = frozenset(rng.sample(honest, rng.randint(1, max(1, (size - 1) // 3))))
        crashes.append(Crash(at, down, restart))
    return tuple(partitions), tuple(crashes)


def build(params: ScenarioParams, attack: str | None = None) -> ScenarioSetup:
    """The scenario of one seed; `attack` pins every faulty member to one behaviour."""
    rng = params.rng
    plan = draw_plan(params.nodes, rng, attack)
    keyring = FakeKeyring(rng.randbytes(16))
    genesis = Committee(0, tuple(node_name(i) for i in range(plan.committee_size)))
    checks = BftChecks(plan, keyring, genesis)
    honest_members = [i for i in range(plan.committee_size) if i not in plan.byzantine]
    calls: list[ScheduledCall] = []
    judged_until = params.duration_ms - params.liveness_bound_ms
    reconfigure_at = rng.randint(500, max(600, judged_until)) if rng.random() < 0.4 else -1
    for k, at_ms in enumerate(range(100, max(101, judged_until + 1), SUBMIT_EVERY_MS)):
        entry = Entry("task", b"%d/%d" % (params.seed, k))
        if reconfigure_at >= 0 and at_ms >= reconfigure_at:
            scores = {node_name(i): rng.randint(1, 100) for i in range(plan.committee_size)}
            entry = Entry(COMMITTEE_ENTRY_KIND, encode_committee_entry(scores, plan.committee_size))
            reconfigure_at = -1
        node = rng.choice(honest_members)
        calls.append(ScheduledCall(at_ms, node, functools.partial(checks.submit, entry)))
    partitions, crashes = _faults(params, plan)
    factory = functools.partial(_factory, plan, keyring, genesis)
    return ScenarioSetup(factory, checks, tuple(calls), partitions, crashes)


register_scenario(
    Scenario(
        "bft",
        "PBFT committee (n in 4/7/10) with up to f Byzantine plug-ins, partitions and restarts",
        build,
        nodes_min=4,
    )
)
