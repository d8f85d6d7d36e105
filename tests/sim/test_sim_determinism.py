"""Same seed, same trace hash, in one process and across processes; other seeds differ."""

from __future__ import annotations

import os
import subprocess
import sys

from agentmesh.core.sim import SimConfig, get_scenario, run_scenario
from agentmesh.core.sim.network import LognormalLatency, NetworkConfig

FAULTY = NetworkConfig(latency=LognormalLatency(20, 0.8), loss=0.05, duplicate=0.05, reorder_ms=30)


def _hash(seed: int, scenario: str = "gossip-chaos", network: NetworkConfig = FAULTY) -> str:
    config = SimConfig(nodes=40, seed=seed, duration_ms=30_000, network=network, drift_ppm=2_000)
    outcome = run_scenario(get_scenario(scenario), config, liveness_bound_ms=10_000)
    assert outcome.sim.violation is None
    assert outcome.sim.stats.deliveries > 1_000
    return outcome.sim.trace.digest()


def test_same_seed_same_hash() -> None:
    assert _hash(5) == _hash(5)


def test_different_seed_different_hash() -> None:
    assert len({_hash(5), _hash(6), _hash(7)}) == 3


def test_network_options_change_the_trace() -> None:
    assert _hash(5) != _hash(5, network=NetworkConfig(latency=LognormalLatency(20, 0.8)))


_CHILD = """
from agentmesh.core.sim import SimConfig, get_scenario, run_scenario
from agentmesh.core.sim.network import NetworkConfig
network = NetworkConfig(loss=0.1, duplicate=0.1, reorder_ms=20)
config = SimConfig(nodes=40, seed=9, duration_ms=20_000, network=network, drift_ppm=500)
outcome = run_scenario(get_scenario("gossip-chaos"), config, liveness_bound_ms=8_000)
print(outcome.sim.trace.digest())
"""


def _child_hash(hash_seed: str) -> str:
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    result = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, env=env, check=True
    )
    return result.stdout.strip()


def test_same_seed_same_hash_across_processes_with_different_hash_seeds() -> None:
    first = _child_hash("1")
    assert len(first) == 32 and first == _child_hash("12345")
