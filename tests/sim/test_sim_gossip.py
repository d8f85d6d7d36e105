"""The gossip scenarios: safe and live under chaos; the checks catch real bugs."""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import pytest

from agentmesh.core.gossip import GossipConfig, GossipNode
from agentmesh.core.sim import (
    Crash,
    Partition,
    Scenario,
    ScenarioParams,
    ScenarioSetup,
    SimConfig,
    get_scenario,
    node_name,
    run_scenario,
)
from agentmesh.core.sim.gossip_scenario import GossipChecks, _workload, chaos_plan
from agentmesh.core.sim.network import NetworkConfig


def _run(scenario: Scenario, nodes: int = 40, seed: int = 1, **options: Any) -> Any:
    config = SimConfig(nodes=nodes, seed=seed, duration_ms=40_000, **options)
    return run_scenario(scenario, config, liveness_bound_ms=15_000)


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_chaos_seeds_are_safe_and_live(seed: int) -> None:
    outcome = _run(get_scenario("gossip-chaos"), seed=seed, network=NetworkConfig(loss=0.1))
    assert outcome.sim.violation is None
    assert outcome.liveness_judged, outcome.liveness_note
    assert outcome.liveness_failures == []
    assert outcome.sim.stats.faults_applied >= 5  # the plan really ran
    checks = outcome.sim.hooks
    assert isinstance(checks, GossipChecks) and len(checks.originated) >= 20


def test_chaos_plan_heals_before_the_liveness_window() -> None:
    params = ScenarioParams(40, 3, 40_000, 15_000, random.Random(3))
    partitions, crashes = chaos_plan(params)
    assert {p.kind for p in partitions} == {"sym", "oneway", "isolate"}
    assert all(p.end_ms is not None and p.end_ms <= 25_000 for p in partitions)
    assert any(c.restart_ms is None for c in crashes)


def test_total_loss_is_a_liveness_failure() -> None:
    outcome = _run(get_scenario("gossip"), network=NetworkConfig(loss=1.0))
    assert outcome.sim.violation is None
    assert outcome.liveness_judged and outcome.liveness_failures


def test_partition_that_never_heals_is_not_judged() -> None:
    half = frozenset(range(20))
    cut = Partition(1000, None, "sym", half, frozenset(range(20, 40)))
    outcome = _run(get_scenario("gossip"), partitions=(cut,))
    assert not outcome.liveness_judged and "never heals" in outcome.liveness_note


def _amnesiac(params: ScenarioParams) -> ScenarioSetup:
    """Gossip whose restarted nodes forget their durable state (a real bug)."""
    peers = [node_name(i) for i in range(params.nodes)]

    def factory(node_id: str, rng: random.Random, durable: Any) -> GossipNode:
        return GossipNode(node_id, rng, peers, GossipConfig())  # drops `durable`

    # Node 0 originates every rumor, so after its restart it reuses rumor ids.
    calls = tuple(replace(call, node=0) for call in _workload(params))
    crash = Crash(8_000, frozenset([0]), restart_ms=9_000)
    return ScenarioSetup(factory, GossipChecks(), calls, crashes=(crash,))


def test_restart_without_durable_state_is_caught_as_a_safety_violation() -> None:
    outcome = _run(Scenario("amnesiac", "test", _amnesiac))
    violation = outcome.sim.violation
    assert violation is not None
    reasons = ("reused rumor id", "forged payload", "own rumors it never originated")
    assert any(reason in violation.message for reason in reasons), violation.message


def test_restart_with_durable_state_is_safe() -> None:
    crash = Crash(8_000, frozenset([0]), restart_ms=9_000)
    outcome = _run(get_scenario("gossip"), crashes=(crash,))
    assert outcome.sim.violation is None and outcome.liveness_failures == []
    assert outcome.sim.machines[0].durable_state().rumors  # restored, not empty
