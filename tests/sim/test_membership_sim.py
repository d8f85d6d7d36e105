"""The `membership` scenario on the deterministic simulator: convergence of a join
and a crash at 1,000 nodes, false positives under loss, per-node load vs N."""

from __future__ import annotations

import pytest

from agentmesh.core.membership.scenario import run_membership
from agentmesh.core.sim import get_scenario


def test_scenario_is_registered() -> None:
    assert get_scenario("membership").name == "membership"


def test_join_and_crash_converge_at_1000_nodes() -> None:
    sim, hooks = run_membership(1_000, duration_ms=20_000)
    assert sim.violation is None, sim.violation
    assert hooks.check_liveness(sim, sim.config.duration_ms) == []
    metrics = hooks.metrics()
    print("membership 1000 nodes:", metrics)
    assert metrics["join_reached_fraction"] == 1.0
    assert metrics["crash_dead_reached_fraction"] == 1.0
    # SWIM + the 200 ms fanout-3 gossip timer: a join reaches all 1,000 within seconds
    assert 0 < metrics["join_max_sim_s"] < 3.0
    # detection needs the Lifeguard minimum suspicion timeout (4 * log10(1000) * 1 s = 12 s)
    assert 12.0 <= metrics["crash_dead_max_sim_s"] < 17.0
    assert metrics["false_suspicions"] == 0 and metrics["false_deaths"] == 0


def test_false_positives_under_10_percent_loss_are_rare() -> None:
    sim, hooks = run_membership(200, duration_ms=15_000, loss=0.10, join=False, crash=False)
    assert sim.violation is None, sim.violation
    metrics = hooks.metrics()
    print("membership 200 nodes, 10% loss:", metrics)
    # a false *death* needs an unrefuted suspicion for the whole Lifeguard timeout
    assert metrics["falsely_dead_fraction"] < 0.02
    assert hooks.check_liveness(sim, sim.config.duration_ms) == []


def test_messages_per_node_per_second_stay_flat_as_n_grows() -> None:
    rates = {}
    for nodes in (100, 1_000):
        sim, _ = run_membership(nodes, duration_ms=10_000, join=False, crash=False)
        assert sim.violation is None
        rates[nodes] = sim.stats.sends / nodes / (sim.config.duration_ms / 1000)
    print("messages per node per second:", rates)
    assert rates[1_000] / rates[100] == pytest.approx(1.0, abs=0.2)


@pytest.mark.slow
def test_join_and_crash_converge_at_10000_nodes() -> None:
    sim, hooks = run_membership(10_000, duration_ms=24_000)
    assert sim.violation is None, sim.violation
    metrics = hooks.metrics()
    print("membership 10000 nodes:", metrics)
    assert metrics["join_reached_fraction"] == 1.0 and metrics["crash_dead_reached_fraction"] == 1.0
    assert metrics["false_deaths"] == 0
