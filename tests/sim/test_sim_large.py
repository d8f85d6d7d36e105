"""The 10,000-node gossip run: safe, live and deterministic at full size (slow)."""

from __future__ import annotations

import pytest

from agentmesh.core.sim import Crash, SimConfig, get_scenario, run_scenario
from agentmesh.core.sim.network import NetworkConfig


@pytest.mark.slow
def test_ten_thousand_nodes_are_safe_and_live() -> None:
    config = SimConfig(
        nodes=10_000,
        seed=3,
        duration_ms=30_000,
        network=NetworkConfig(loss=0.02),
        crashes=(Crash(2_000, frozenset(range(0, 10_000, 500)), restart_ms=6_000),),
        global_check_ms=10_000,
    )
    outcome = run_scenario(get_scenario("gossip"), config, liveness_bound_ms=15_000)
    assert outcome.sim.violation is None
    assert outcome.liveness_judged and outcome.liveness_failures == []
    assert outcome.sim.stats.deliveries > 500_000
