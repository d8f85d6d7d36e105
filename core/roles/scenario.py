"""Churn and failure experiments over a seeded fleet (shared by sim tests and the bench).

Each event is applied to the same base view and renegotiated from the same base
assignment, so the figures say what one event costs.
"""

from __future__ import annotations

import dataclasses
import random
import statistics
from collections.abc import Callable, Mapping

from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.membership.table import ALIVE, DEAD, LEFT
from agentmesh.core.roles.assign import DEFAULT_CONFIG, assign_roles, renegotiate
from agentmesh.core.roles.assignment import Assignment
from agentmesh.core.roles.config import RolesConfig
from agentmesh.core.roles.fleet import device, device_mix
from agentmesh.core.roles.takeover import churn, takeover

View = tuple[dict[str, str], dict[str, Capabilities]]
Event = Callable[[Assignment, dict[str, str], dict[str, Capabilities], random.Random], None]


def fleet_view(count: int, seed: int) -> View:
    """A formed mesh of `count` alive agents with the realistic device mix."""
    adverts = device_mix(count, random.Random(seed))
    return dict.fromkeys(adverts, ALIVE), adverts


def spread(counts: list[int]) -> dict[str, float | int]:
    """min / median / max / mean of a list of fan-in counts."""
    if not counts:
        return {"min": 0, "median": 0, "max": 0, "mean": 0.0}
    return {
        "min": min(counts),
        "median": statistics.median(counts),
        "max": max(counts),
        "mean": round(statistics.fmean(counts), 2),
    }


def _join(
    _: Assignment, members: dict[str, str], adverts: dict[str, Capabilities], rng: random.Random
) -> None:
    members["joiner"] = ALIVE
    adverts["joiner"] = device("laptop", rng)


def _trainer_leaves(
    a: Assignment, members: dict[str, str], _: dict[str, Capabilities], rng: random.Random
) -> None:
    plain = [peer for peer in a.trainers if len(a.roles[peer]) == 1]
    members[rng.choice(plain)] = LEFT


def _validator_leaves(
    a: Assignment, members: dict[str, str], _: dict[str, Capabilities], rng: random.Random
) -> None:
    members[rng.choice(a.committee)] = LEFT


def _aggregator_fails(
    a: Assignment, members: dict[str, str], _: dict[str, Capabilities], rng: random.Random
) -> None:
    members[rng.choice(a.aggregator_tiers[0])] = DEAD


def _load_jitter(
    _: Assignment, __: dict[str, str], adverts: dict[str, Capabilities], rng: random.Random
) -> None:
    """Every agent's load moves by up to 100 permille: below the threshold, nothing may move."""
    for peer, caps in adverts.items():
        load = min(1000, max(0, caps.cpu_load_permille + rng.randint(-100, 100)))
        adverts[peer] = dataclasses.replace(caps, cpu_load_permille=load)


def _aggregator_battery_low(
    a: Assignment, _: dict[str, str], adverts: dict[str, Capabilities], rng: random.Random
) -> None:
    peer = rng.choice(a.aggregator_tiers[0])
    adverts[peer] = dataclasses.replace(adverts[peer], battery_percent=5)


EVENTS: Mapping[str, Event] = {
    "join": _join,
    "trainer_leave": _trainer_leaves,
    "validator_leave": _validator_leaves,
    "aggregator_failure": _aggregator_fails,
    "load_jitter_all": _load_jitter,
    "aggregator_battery_low": _aggregator_battery_low,
}


def churn_figures(
    base: Assignment, view: View, seed: int, config: RolesConfig = DEFAULT_CONFIG
) -> dict[str, dict[str, int]]:
    """Role changes caused by each single event, renegotiated from `base`."""
    figures: dict[str, dict[str, int]] = {}
    for name, event in EVENTS.items():
        members, adverts = dict(view[0]), dict(view[1])
        event(base, members, adverts, random.Random(f"{seed}/{name}"))
        figures[name] = churn(base, renegotiate(base, members, adverts, config)).as_metrics()
    return figures


def all_aggregators_die(assignment: Assignment) -> dict[str, float | int]:
    """Kill every first-tier aggregator mid-round: who carries the trainers now."""
    dead = set(assignment.aggregator_tiers[0])
    result = takeover(assignment, dead)
    live = [peer for peer in assignment.trainers if peer not in dead]
    carried: dict[str, int] = {}
    for trainer in live:
        if trainer in result.trainers:
            carried[result.trainers[trainer]] = carried.get(result.trainers[trainer], 0) + 1
    figures: dict[str, float | int] = {
        "aggregators_killed": len(dead),
        "trainers_live": len(live),
        "trainers_covered": sum(carried.values()),
        "orphans": len(result.orphans),
        "standbys_used": len(carried),
    }
    figures.update({f"fan_in_{k}": v for k, v in spread(sorted(carried.values())).items()})
    return figures


def base_assignment(
    count: int, seed: int, config: RolesConfig = DEFAULT_CONFIG
) -> tuple[Assignment, View]:
    """The fleet and its epoch-0 assignment (randomness derived from the seed)."""
    view = fleet_view(count, seed)
    randomness = random.Random(seed).randbytes(32)
    return assign_roles(view[0], view[1], randomness, config), view
