"""`agent demo` end to end: real agent processes on loopback run federated rounds."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from agentmesh.edge._cmd_demo import DemoOptions, run_demo

pytestmark = pytest.mark.integration


def test_small_demo_learns_and_every_agent_commits_the_same_models() -> None:
    result = run_demo(DemoOptions(agents=4, rounds=3, verbose=False))
    assert [r["round"] for r in result.rounds] == [1, 2, 3]
    assert result.digests_agree, "every agent must hold the same committed model digests"
    accuracies = [r["accuracy"] for r in result.rounds]
    assert all(a is not None for a in accuracies)
    assert accuracies[-1] > accuracies[0] > 0.2, accuracies
    for figures in result.rounds:
        assert figures["aggregators"] and len(figures["validators"]) >= 1
        assert figures["round_s"] >= figures["slowest_training_s"] >= 0
    assert all(agent["runtime"] == "litert" for agent in result.per_agent)
    assert all(agent["bytes_out"] > 0 for agent in result.per_agent)


@pytest.mark.slow
def test_default_demo_reaches_the_digits8_target() -> None:
    """The README's command: 8 agents, 20 rounds, weighted FedAvg, >= 96% held-out accuracy."""
    done = subprocess.run(
        [sys.executable, "-m", "agentmesh.edge", "demo", "--json"],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert set(report) == {"agents", "rounds", "final_accuracy", "wall_s"}
    assert report["agents"] == 8 and len(report["rounds"]) == 20
    assert report["final_accuracy"] >= 0.96


@pytest.mark.slow
def test_robust_rule_resists_a_quarter_of_byzantine_agents() -> None:
    clean = run_demo(DemoOptions(agents=8, rounds=20, rule="multi-krum", verbose=False))
    attacked = run_demo(
        DemoOptions(agents=8, rounds=20, rule="multi-krum", byzantine=2, verbose=False)
    )
    assert clean.final_accuracy is not None and attacked.final_accuracy is not None
    assert attacked.final_accuracy >= clean.final_accuracy - 0.03
