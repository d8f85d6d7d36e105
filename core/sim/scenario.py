"""Named scenarios: a workload (factory + scheduled calls), a fault plan, and checks.

A scenario module registers itself with `register_scenario(Scenario(...))` when
it is imported, and is listed in `SCENARIO_MODULES` (one line per module), so
`get_scenario(name)` finds it without the CLI knowing about it:

    def build(params: ScenarioParams) -> ScenarioSetup:
        hooks = MyChecks()                       # a ScenarioHooks subclass
        return ScenarioSetup(factory=..., hooks=hooks, calls=(...), crashes=(...))

    register_scenario(Scenario("mine", "what it exercises", build))

Safety = any failed invariant (a machine's after each delivery/tick, or the
scenario's `check_global` at the configured cadence). Liveness = what
`check_liveness` reports at the end, judged only when every fault has healed at
least `liveness_bound_ms` before the end of the run.
"""

from __future__ import annotations

import importlib
import random
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agentmesh.core.sim.engine import (
    MachineFactory,
    ProgressCallback,
    ScheduledCall,
    SimConfig,
    SimHooks,
    Simulation,
    stream,
)
from agentmesh.core.sim.faults import Crash, Partition, last_heal_ms

# One line per module that registers scenarios; other modules append theirs.
SCENARIO_MODULES: tuple[str, ...] = (
    "agentmesh.core.sim.gossip_scenario",
    "agentmesh.core.membership.scenario",
    "agentmesh.core.consensus.sim_scenario",
)


class ScenarioHooks(SimHooks):
    """SimHooks plus the end-of-run liveness check."""

    def check_liveness(self, sim: Simulation, judged_until_ms: int) -> list[str]:
        """Failures (one line each) for work started at or before `judged_until_ms`."""
        return []


@dataclass(frozen=True, slots=True)
class ScenarioParams:
    """What a scenario's `build` is told about the run."""

    nodes: int
    seed: int
    duration_ms: int
    liveness_bound_ms: int
    rng: random.Random  # the "scenario" stream: draw the fault plan and workload from it


@dataclass(frozen=True, slots=True)
class ScenarioSetup:
    """What a scenario's `build` returns."""

    factory: MachineFactory
    hooks: ScenarioHooks
    calls: tuple[ScheduledCall, ...] = ()
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    build: Callable[[ScenarioParams], ScenarioSetup]
    nodes_min: int = 1


@dataclass(slots=True)
class RunOutcome:
    """One seed of one scenario."""

    sim: Simulation
    liveness_failures: list[str] = field(default_factory=list)
    liveness_judged: bool = False
    liveness_note: str = ""

    @property
    def safe(self) -> bool:
        return self.sim.violation is None


_REGISTRY: dict[str, Scenario] = {}


def register_scenario(scenario: Scenario) -> None:
    """Make `scenario` available by name (a later registration replaces an earlier one)."""
    _REGISTRY[scenario.name] = scenario


def _load_modules() -> None:
    for module_name in SCENARIO_MODULES:
        importlib.import_module(module_name)


def scenario_names() -> list[str]:
    _load_modules()
    return sorted(_REGISTRY)


def get_scenario(name: str) -> Scenario:
    """The registered scenario; KeyError names the known ones."""
    _load_modules()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(
            f"unknown scenario {name!r}; known: {', '.join(sorted(_REGISTRY))}"
        ) from None


def build_simulation(
    scenario: Scenario, config: SimConfig, liveness_bound_ms: int
) -> tuple[Simulation, ScenarioHooks]:
    """The Simulation of one seed: the config's faults plus the scenario's own plan."""
    params = ScenarioParams(
        nodes=config.nodes,
        seed=config.seed,
        duration_ms=config.duration_ms,
        liveness_bound_ms=liveness_bound_ms,
        rng=stream(config.seed, "scenario"),
    )
    setup = scenario.build(params)
    merged = replace(
        config,
        partitions=config.partitions + setup.partitions,
        crashes=config.crashes + setup.crashes,
    )
    return Simulation(merged, setup.factory, setup.hooks, setup.calls), setup.hooks


def run_scenario(
    scenario: Scenario,
    config: SimConfig,
    liveness_bound_ms: int,
    progress: ProgressCallback | None = None,
) -> RunOutcome:
    """Run one seed and judge liveness when the fault plan leaves room for it."""
    sim, hooks = build_simulation(scenario, config, liveness_bound_ms)
    sim.run(progress)
    outcome = RunOutcome(sim)
    if sim.violation is not None:
        outcome.liveness_note = "not judged: the run stopped on a safety violation"
        return outcome
    judged_until_ms = config.duration_ms - liveness_bound_ms
    healed_ms = last_heal_ms(sim.config.partitions, sim.config.crashes)
    if healed_ms is None:
        outcome.liveness_note = "not judged: a partition never heals"
    elif healed_ms > judged_until_ms:
        outcome.liveness_note = (
            f"not judged: faults heal at {healed_ms} ms, later than duration - bound "
            f"= {judged_until_ms} ms"
        )
    else:
        outcome.liveness_judged = True
        outcome.liveness_failures = hooks.check_liveness(sim, judged_until_ms)
    return outcome
