"""The deterministic discrete-event simulator (docs/simulator.md)."""

from agentmesh.core.sim.engine import (
    MachineFactory,
    ScheduledCall,
    SimConfig,
    SimHooks,
    SimStats,
    Simulation,
    Violation,
    node_name,
    stream,
)
from agentmesh.core.sim.faults import Crash, Partition
from agentmesh.core.sim.network import NetworkConfig
from agentmesh.core.sim.scenario import (
    RunOutcome,
    Scenario,
    ScenarioHooks,
    ScenarioParams,
    ScenarioSetup,
    get_scenario,
    register_scenario,
    run_scenario,
    scenario_names,
)

__all__ = [
    "Crash",
    "MachineFactory",
    "NetworkConfig",
    "Partition",
    "RunOutcome",
    "Scenario",
    "ScenarioHooks",
    "ScenarioParams",
    "ScenarioSetup",
    "ScheduledCall",
    "SimConfig",
    "SimHooks",
    "SimStats",
    "Simulation",
    "Violation",
    "get_scenario",
    "node_name",
    "register_scenario",
    "run_scenario",
    "scenario_names",
    "stream",
]
