"""The `membership` simulator scenario: a formed mesh, one join, one crash.

All nodes but the last start from one shared snapshot of a formed mesh (the
records are immutable, so 10,000 machines share them). The last node starts
alone and joins through `n0` at `JOIN_AT_MS`; `n1` crashes for good at
`CRASH_AT_MS`. Capability adverts use cheap fake signatures (the verify function
is injected) and a psk admission policy.

Safety: every machine's invariants after each step, a rotating sample of full
table checks at each global check, and, on a network without loss or
partitions, no live node is ever declared dead (no false positives).
Liveness: at the end every live node holds the joiner alive and the crashed
node dead (or already reaped).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

from agentmesh.core.admission import PskPolicy
from agentmesh.core.membership.capabilities import Capabilities, sign_advert
from agentmesh.core.membership.config import MembershipConfig
from agentmesh.core.membership.machine import MembershipMachine
from agentmesh.core.membership.table import (
    ALIVE,
    DEAD,
    LEFT,
    VIA_SNAPSHOT,
    Member,
    MembershipSnapshot,
)
from agentmesh.core.node import Event, InvariantViolation
from agentmesh.core.sim.engine import ScheduledCall, SimConfig, Simulation, node_name, stream
from agentmesh.core.sim.faults import Crash
from agentmesh.core.sim.network import NetworkConfig
from agentmesh.core.sim.scenario import (
    Scenario,
    ScenarioHooks,
    ScenarioParams,
    ScenarioSetup,
    register_scenario,
)

JOIN_AT_MS = 2_000
CRASH_AT_MS = 3_000
MESH = "sim-mesh"
MESH_KEY = b"simulated-mesh-key-0123456789abc"
FULL_CHECKS_PER_GLOBAL = 8
PAIRS_CHECKED_MAX = 200_000


class FakeSigner:
    """A cheap stand-in for Ed25519 in the simulator (sha-256 of id and data)."""

    def __init__(self, peer_id: str) -> None:
        self._peer_id = peer_id

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def sign(self, data: bytes) -> bytes:
        return hashlib.sha256(self._peer_id.encode() + data).digest()


def fake_verify(peer_id: str, data: bytes, signature: bytes) -> bool:
    return signature == hashlib.sha256(peer_id.encode() + data).digest()


def sim_capabilities(index: int) -> Capabilities:
    """Varied but deterministic capabilities for node `index`."""
    device_class = ("edge", "laptop", "server", "edge")[index % 4]
    return Capabilities(
        cpu_cores=(4, 8, 32, 2)[index % 4],
        cpu_load_permille=(index * 37) % 1000,
        ram_total_mb=(1024, 16384, 131072, 512)[index % 4],
        ram_free_mb=(512, 8192, 65536, 256)[index % 4],
        battery_percent=(index % 101) if device_class == "edge" else None,
        accelerators=("gpu",) if device_class == "server" else (),
        trainer_runtime=("litert", "numpy", "litert", "tflite-runtime")[index % 4],
        link_bandwidth_kbps=(10_000, 100_000, 1_000_000, 1_000)[index % 4],
        device_class=device_class,
        roles_allowed=("trainer", "aggregator") if device_class != "edge" else ("trainer",),
    )


def formed_snapshot(node_ids: list[str]) -> MembershipSnapshot:
    """One shared table in which every listed node is alive at incarnation 0."""
    members = {}
    for index, node_id in enumerate(node_ids):
        advert = sign_advert(FakeSigner(node_id), 0, 1, sim_capabilities(index))
        members[node_id] = Member(node_id, ALIVE, 0, advert, 0, VIA_SNAPSHOT)
    return MembershipSnapshot(members)


@dataclass
class MembershipChecks(ScenarioHooks):
    """Records when each node learns of the join and the crash; judges the run."""

    joiner: str
    crashed: str
    strict: bool = True  # no loss, no partition: any false death is a bug
    sim: Simulation | None = None
    join_known_ms: dict[str, int] = field(default_factory=dict)
    crash_suspected_ms: dict[str, int] = field(default_factory=dict)
    crash_dead_ms: dict[str, int] = field(default_factory=dict)
    false_suspicions: int = 0
    false_deaths: int = 0
    falsely_suspected: set[str] = field(default_factory=set)
    falsely_dead: set[str] = field(default_factory=set)
    _cursor: int = 0

    def attach(self, sim: Simulation) -> None:
        self.sim = sim
        network = sim.config.network
        self.strict = network.loss == 0 and not sim.config.partitions

    def on_event(self, node_id: str, event: Event, now_ms: int) -> None:
        kind = event.kind
        if kind not in ("member_joined", "member_suspect", "member_dead", "member_alive"):
            return
        assert self.sim is not None
        peer_id = event.data["peer_id"]
        time_ms = now_ms  # the engine's own clock is only updated on control events
        if peer_id == self.joiner and kind == "member_joined":
            self.join_known_ms.setdefault(node_id, time_ms)
        elif peer_id == self.crashed and self._crashed_by(time_ms):
            if kind == "member_suspect":
                self.crash_suspected_ms.setdefault(node_id, time_ms)
            elif kind == "member_dead":
                self.crash_dead_ms.setdefault(node_id, time_ms)
        elif kind == "member_suspect" and self.sim.alive[self.sim.index[peer_id]]:
            self.false_suspicions += 1
            self.falsely_suspected.add(peer_id)
        elif kind == "member_dead" and self.sim.alive[self.sim.index[peer_id]]:
            self.false_deaths += 1
            self.falsely_dead.add(peer_id)
            if self.strict:
                raise InvariantViolation(
                    f"{node_id} declared live {peer_id} dead on a lossless network"
                )

    def _crashed_by(self, time_ms: int) -> bool:
        return time_ms >= CRASH_AT_MS

    def check_global(self, sim: Simulation) -> None:
        live = sim.live_nodes()
        for _ in range(min(FULL_CHECKS_PER_GLOBAL, len(live))):
            self._cursor = (self._cursor + 1) % len(live)
            sim.machines[live[self._cursor]].check_invariants_full()

    def check_liveness(self, sim: Simulation, judged_until_ms: int) -> list[str]:
        failures: list[str] = []
        live = sim.live_nodes()
        joiner_up = bool(self.joiner) and sim.alive[sim.index[self.joiner]]
        crashed_down = bool(self.crashed) and not sim.alive[sim.index[self.crashed]]
        for node in live:
            machine = sim.machines[node]
            node_id = sim.node_ids[node]
            joiner = machine.member(self.joiner)
            if joiner_up and node_id != self.joiner and (joiner is None or joiner.state != ALIVE):
                failures.append(
                    f"{node_id} holds joiner {self.joiner} as {joiner and joiner.state}"
                )
            crashed = machine.member(self.crashed)
            if crashed_down and crashed is not None and crashed.state not in (DEAD, LEFT):
                failures.append(f"{node_id} still holds crashed {self.crashed} as {crashed.state}")
            falsely_dead = [
                peer
                for peer in self.falsely_dead
                if machine.member(peer) and machine.member(peer).state == DEAD
            ]
            if falsely_dead:
                failures.append(
                    f"{node_id} still holds live {falsely_dead[0]} dead (never refuted)"
                )
            if len(failures) >= 10:
                break
        return failures

    def metrics(self) -> dict[str, float | int]:
        """Convergence figures (virtual seconds from the join/crash) for benches and tests."""
        assert self.sim is not None
        live = [sim_id for sim_id in (self.sim.node_ids[i] for i in self.sim.live_nodes())]
        others = [node_id for node_id in live if node_id != self.joiner]
        return {
            **_spread("join", self.join_known_ms, others, JOIN_AT_MS),
            **_spread("crash_suspect", self.crash_suspected_ms, live, CRASH_AT_MS),
            **_spread("crash_dead", self.crash_dead_ms, live, CRASH_AT_MS),
            "false_suspicions": self.false_suspicions,
            "false_deaths": self.false_deaths,
            "falsely_suspected_fraction": len(self.falsely_suspected) / len(live),
            "falsely_dead_fraction": len(self.falsely_dead) / len(live),
        }


def _spread(
    name: str, times_ms: dict[str, int], nodes: list[str], origin_ms: int
) -> dict[str, Any]:
    delays = sorted(times_ms[node] - origin_ms for node in nodes if node in times_ms)
    reached = len(delays) / len(nodes) if nodes else 0.0
    return {
        f"{name}_reached_fraction": reached,
        f"{name}_p50_sim_s": delays[len(delays) // 2] / 1000 if delays else -1.0,
        f"{name}_max_sim_s": delays[-1] / 1000 if delays and reached == 1.0 else -1.0,
    }


def _join(seed: str, machine: MembershipMachine, now_ms: int) -> None:
    machine.join([seed], now_ms)


def membership_setup(
    params: ScenarioParams,
    *,
    join: bool = True,
    crash: bool = True,
    config: MembershipConfig | None = None,
) -> ScenarioSetup:
    """The scenario's pieces; benches and tests switch the join/crash off for baselines."""
    nodes = params.nodes
    node_ids = [node_name(i) for i in range(nodes)]
    joiner = node_ids[-1] if join else ""
    crashed = node_ids[1] if crash and nodes > 2 else ""
    snapshot = formed_snapshot(node_ids[:-1] if join else node_ids)
    policy = PskPolicy(MESH, MESH_KEY)
    config = config or MembershipConfig()

    def factory(node_id: str, rng: Any, durable: dict[str, int] | None) -> MembershipMachine:
        index = int(node_id[1:])
        restarted = durable is not None
        incarnation = durable["incarnation"] + 1 if durable is not None else 0
        fresh_joiner = node_id == joiner and not restarted
        return MembershipMachine(
            node_id,
            rng,
            policy,
            signer=FakeSigner(node_id),
            verify=fake_verify,
            config=config,
            incarnation=incarnation,
            capabilities=sim_capabilities(index),
            snapshot=None if fresh_joiner else snapshot,
            seed_peer_ids=(node_ids[0],) if restarted and index != 0 else (),
        )

    calls: tuple[ScheduledCall, ...] = ()
    if join:
        calls = (ScheduledCall(JOIN_AT_MS, nodes - 1, functools.partial(_join, node_ids[0])),)
    crashes = (Crash(CRASH_AT_MS, frozenset([1])),) if crashed else ()
    hooks = MembershipChecks(joiner=joiner, crashed=crashed)
    return ScenarioSetup(factory, hooks, calls, (), crashes)


def run_membership(
    nodes: int,
    *,
    seed: int = 1,
    duration_ms: int = 20_000,
    loss: float = 0.0,
    join: bool = True,
    crash: bool = True,
) -> tuple[Simulation, MembershipChecks]:
    """One run of the scenario (or of its join/crash-free baseline) for tests and benches."""
    config = SimConfig(nodes, seed, duration_ms, network=NetworkConfig(loss=loss))
    params = ScenarioParams(nodes, seed, duration_ms, 0, stream(seed, "scenario"))
    setup = membership_setup(params, join=join, crash=crash)
    config = replace(config, crashes=setup.crashes)
    hooks = setup.hooks
    assert isinstance(hooks, MembershipChecks)
    sim = Simulation(config, setup.factory, hooks, setup.calls)
    sim.run()
    return sim, hooks


def build_membership(params: ScenarioParams) -> ScenarioSetup:
    return membership_setup(params)


register_scenario(
    Scenario(
        "membership",
        "SWIM/Lifeguard membership: formed mesh, one psk join at 2 s, one crash at 3 s",
        build_membership,
        nodes_min=4,
    )
)
