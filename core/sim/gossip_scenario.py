"""The gossip scenarios: `gossip` (workload only) and `gossip-chaos` (plus random faults).

Workload: about one rumor per simulated second, originated at random nodes until
`duration - liveness_bound`. Safety: every rumor a live node knows was originated,
with the payload its origin gave it, and ids are never reused (which a node
restarted without its durable state would do). Liveness: every judged rumor
that some live node (or its live origin) holds is known by every live node.
"""

from __future__ import annotations

import functools
from typing import Any

from agentmesh.core.gossip import GossipConfig, GossipDurable, GossipNode, RumorId
from agentmesh.core.node import Event, InvariantViolation
from agentmesh.core.sim.engine import ScheduledCall, Simulation, node_name
from agentmesh.core.sim.faults import Crash, Partition
from agentmesh.core.sim.scenario import (
    Scenario,
    ScenarioHooks,
    ScenarioParams,
    ScenarioSetup,
    register_scenario,
)

RUMORS_MAX = 200
FIRST_RUMOR_MS = 500
FAILURES_LISTED_MAX = 10


class GossipChecks(ScenarioHooks):
    """Safety and liveness of the gossip workload."""

    def __init__(self) -> None:
        self.sim: Simulation | None = None
        self.originated: dict[RumorId, tuple[str, int]] = {}  # id -> (payload, virtual ms)
        self.payloads: dict[RumorId, str] = {}  # id -> payload (for a C-speed subset test)

    def attach(self, sim: Simulation) -> None:
        self.sim = sim

    def on_event(self, node_id: str, event: Event, now_ms: int) -> None:
        if event.kind != "rumor_originated":
            return
        rumor_id, payload = event.data["rumor"], event.data["payload"]
        seen = self.originated.get(rumor_id)
        if seen is not None and seen[0] != payload:
            raise InvariantViolation(f"{node_id} reused rumor id {rumor_id} for a new payload")
        time_ms = self.sim.now_ms if self.sim is not None else now_ms
        self.originated.setdefault(rumor_id, (payload, time_ms))
        self.payloads.setdefault(rumor_id, payload)

    def check_global(self, sim: Simulation) -> None:
        originated = self.originated
        payloads = self.payloads.items()
        for node in sim.live_nodes():
            machine = sim.machines[node]
            machine.check_invariants_full()
            if machine.known.items() <= payloads:
                continue  # every (id, payload) was originated: the common case
            for rumor_id, payload in machine.known.items():
                seen = originated.get(rumor_id)
                if seen is None:
                    raise InvariantViolation(
                        f"{sim.node_ids[node]} knows rumor {rumor_id} that was never originated"
                    )
                if seen[0] != payload:
                    raise InvariantViolation(
                        f"{sim.node_ids[node]} holds rumor {rumor_id} with a forged payload"
                    )

    def check_liveness(self, sim: Simulation, judged_until_ms: int) -> list[str]:
        live = sim.live_nodes()
        failures: list[str] = []
        for rumor_id, (_, time_ms) in self.originated.items():
            if time_ms > judged_until_ms:
                continue
            holders = [node for node in live if rumor_id in sim.machines[node].known]
            origin_up = sim.alive[sim.index[rumor_id[0]]]
            if not holders and not origin_up:
                continue  # died with a node that never came back: nobody can spread it
            if len(holders) < len(live):
                missing = sorted(set(live) - set(holders))
                failures.append(
                    f"rumor {rumor_id} from t={time_ms} ms missing on {len(missing)} of "
                    f"{len(live)} live nodes (e.g. {sim.node_ids[missing[0]]}) at the end"
                )
                if len(failures) >= FAILURES_LISTED_MAX:
                    break
        return failures


def _originate(payload: str, machine: Any, now_ms: int) -> None:
    machine.originate(payload, now_ms)


def _workload(params: ScenarioParams) -> tuple[ScheduledCall, ...]:
    last_ms = max(FIRST_RUMOR_MS, params.duration_ms - params.liveness_bound_ms)
    count = max(1, min(RUMORS_MAX, (last_ms - FIRST_RUMOR_MS) // 1000))
    rng = params.rng
    times = sorted(rng.randint(FIRST_RUMOR_MS, last_ms) for _ in range(count))
    return tuple(
        ScheduledCall(at_ms, rng.randrange(params.nodes), functools.partial(_originate, f"r{k}"))
        for k, at_ms in enumerate(times)
    )


def _gossip_setup(
    params: ScenarioParams,
    partitions: tuple[Partition, ...] = (),
    crashes: tuple[Crash, ...] = (),
) -> ScenarioSetup:
    config = GossipConfig()
    peers = [node_name(i) for i in range(params.nodes)]  # shared by every node

    def factory(node_id: str, rng: Any, durable: GossipDurable | None) -> GossipNode:
        return GossipNode(node_id, rng, peers, config, durable)

    return ScenarioSetup(factory, GossipChecks(), _workload(params), partitions, crashes)


def build_gossip(params: ScenarioParams) -> ScenarioSetup:
    """Gossip with only the faults given on the command line."""
    return _gossip_setup(params)


def chaos_plan(params: ScenarioParams) -> tuple[tuple[Partition, ...], tuple[Crash, ...]]:
    """Random faults, all healed by `duration - liveness_bound`: a symmetric split, a
    one-way cut, an isolated node, crashes with restart, and one crash for good."""
    rng, nodes = params.rng, params.nodes
    start_ms, end_ms = 1000, params.duration_ms - params.liveness_bound_ms
    if end_ms - start_ms < 2000 or nodes < 4:
        return (), ()
    everyone = list(range(nodes))

    def window() -> tuple[int, int]:
        begin = rng.randint(start_ms, end_ms - 1000)
        return begin, rng.randint(begin + 500, min(end_ms, begin + (end_ms - start_ms) // 2))

    shuffled = rng.sample(everyone, nodes)
    half = nodes // 2
    partitions = [
        Partition(*window(), "sym", frozenset(shuffled[:half]), frozenset(shuffled[half:])),
        Partition(*window(), "oneway", frozenset(shuffled[half:]), frozenset(shuffled[:half])),
        Partition(*window(), "isolate", frozenset([rng.randrange(nodes)])),
    ]
    crashes = []
    for node in rng.sample(everyone, max(1, nodes // 50)):
        at_ms = rng.randint(start_ms, end_ms - 600)
        crashes.append(Crash(at_ms, frozenset([node]), rng.randint(at_ms + 500, end_ms)))
    crashes.append(Crash(rng.randint(start_ms, end_ms), frozenset([rng.randrange(nodes)])))
    return tuple(partitions), tuple(crashes)


def build_gossip_chaos(params: ScenarioParams) -> ScenarioSetup:
    """Gossip under a per-seed random fault plan (plus any command-line faults)."""
    partitions, crashes = chaos_plan(params)
    return _gossip_setup(params, partitions, crashes)


register_scenario(
    Scenario("gossip", "push/pull rumor gossip; faults only from the command line", build_gossip)
)
register_scenario(
    Scenario(
        "gossip-chaos",
        "gossip under a random per-seed plan of partitions, crashes and restarts",
        build_gossip_chaos,
        nodes_min=4,
    )
)
