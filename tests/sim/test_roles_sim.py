"""Role assignment at 10,000 agents with a realistic device mix (pure simulation).

Every agent decodes the adverts itself and holds the view in its own order;
all must derive the same assignment. Figures are printed (pytest -s) and bounded.
"""

from __future__ import annotations

import random

import pytest

from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.roles import (
    RolesConfig,
    assign_roles,
    assignment_digest,
    may_aggregate,
    may_train,
    may_validate,
)
from agentmesh.core.roles.assignment import Assignment
from agentmesh.core.roles.scenario import (
    View,
    all_aggregators_die,
    base_assignment,
    churn_figures,
    spread,
)

AGENTS = 10_000
SEED = 11
CONFIG = RolesConfig()


@pytest.fixture(scope="module")
def base() -> tuple[Assignment, View]:
    return base_assignment(AGENTS, SEED)


def agent_copy(view: View, seed: int) -> View:
    """One agent's copy: its own insertion order and its own decoded advert objects."""
    members, adverts = view
    order = list(members)
    random.Random(seed).shuffle(order)
    own_members = {peer: members[peer] for peer in order}
    random.Random(seed + 10_000).shuffle(order)
    own_adverts = {peer: Capabilities.from_wire(adverts[peer].to_wire()) for peer in order}
    return own_members, own_adverts


def same_digest_over_copies(base: tuple[Assignment, View], copies: int) -> None:
    assignment, view = base
    expected = assignment_digest(assignment)
    for agent in range(copies):
        members, adverts = agent_copy(view, agent)
        mine = assign_roles(members, adverts, assignment.randomness)
        assert assignment_digest(mine) == expected, f"agent {agent} disagrees"


def test_every_agent_computes_the_same_assignment(base: tuple[Assignment, View]) -> None:
    same_digest_over_copies(base, 6)


@pytest.mark.slow
def test_fifty_agents_compute_the_same_assignment(base: tuple[Assignment, View]) -> None:
    same_digest_over_copies(base, 50)


def test_device_mix_and_policies_are_respected(base: tuple[Assignment, View]) -> None:
    assignment, (_, adverts) = base
    classes = {c.device_class for c in adverts.values()}
    assert classes == {"mcu", "edge", "laptop", "server"}
    assert len(assignment.validators) == 7
    for peer in assignment.validators:
        assert may_validate(adverts[peer], CONFIG)
    for peer in assignment.aggregators:
        assert may_aggregate(adverts[peer], CONFIG)
    for peer, roles in assignment.roles.items():
        caps = adverts[peer]
        assert caps.device_class != "mcu" or roles <= {"trainer"}
        battery_low = caps.battery_percent is not None and caps.battery_percent < 20
        assert not (battery_low and roles & {"aggregator", "validator"})
        assert roles <= set(caps.roles_allowed)
    assert list(assignment.trainers) == sorted(p for p, c in adverts.items() if may_train(c))
    weak = sum(1 for p in assignment.validators if adverts[p].device_class == "edge")
    print(f"validators by class: edge {weak} of {len(assignment.validators)}")


def test_fan_in_is_balanced(base: tuple[Assignment, View]) -> None:
    assignment, _ = base
    counts = assignment.fan_in_counts(0)
    figures = spread(counts)
    print(f"{AGENTS} agents, {len(assignment.trainers)} trainers, {len(counts)} aggregators:")
    print(f"  trainers per aggregator {figures}")
    assert len(assignment.aggregator_tiers) == 1
    assert len(counts) == -(-len(assignment.trainers) // CONFIG.trainers_per_aggregator)
    assert sum(counts) == len(assignment.trainers)
    assert 0.6 * figures["mean"] <= figures["min"] and figures["max"] <= 1.4 * figures["mean"]


def test_hierarchy_above_100_aggregators() -> None:
    config = RolesConfig(trainers_per_aggregator=20)
    assignment, _ = base_assignment(AGENTS, SEED, config)
    first, second = (len(tier) for tier in assignment.aggregator_tiers)
    print(f"tiers at 20 trainers/aggregator: {first} first-tier, {second} second-tier")
    assert first > 100 and second == -(-first // 100)
    upper = spread(assignment.fan_in_counts(1))
    print(f"  first-tier aggregators per second-tier aggregator {upper}")
    assert upper["min"] >= 1 and upper["max"] <= 2 * upper["mean"]


def test_churn_moves_few(base: tuple[Assignment, View]) -> None:
    assignment, view = base
    figures = churn_figures(assignment, view, SEED)
    for event, changes in figures.items():
        print(f"  {event:<24} {changes}")
    quiet = dict.fromkeys(figures["join"], 0)
    assert figures["load_jitter_all"] == quiet
    assert figures["join"] == quiet | {"trainers_added": 1}
    assert figures["trainer_leave"] == quiet | {"trainers_removed": 1}
    validator = figures["validator_leave"]
    assert validator["validators_added"] == validator["validators_removed"] == 1
    assert validator["trainers_moved"] == 0
    for event in ("aggregator_failure", "aggregator_battery_low"):
        changes = figures[event]
        assert changes["aggregators_added"] == changes["aggregators_removed"] == 1
        assert changes["validators_added"] == 0
        # the replacement inherits the seat: only the lost aggregator's trainers move
        assert 0 < changes["trainers_moved"] <= max(assignment.fan_in_counts(0))


def test_round_survives_the_death_of_all_aggregators(base: tuple[Assignment, View]) -> None:
    assignment, _ = base
    figures = all_aggregators_die(assignment)
    print(f"  all first-tier aggregators die: {figures}")
    assert figures["orphans"] == 0
    assert figures["trainers_covered"] == figures["trainers_live"] > 0
    assert figures["standbys_used"] == figures["aggregators_killed"]
