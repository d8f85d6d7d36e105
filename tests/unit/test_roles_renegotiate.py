"""Renegotiation (hysteresis, stickiness), rendezvous hashing and in-round takeover."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest

from agentmesh.core.membership.capabilities import ROLES, Capabilities
from agentmesh.core.roles import (
    RolesConfig,
    assign_roles,
    assignment_digest,
    change_reason,
    churn,
    rendezvous,
    renegotiate,
    settle,
    takeover,
    trainer_aggregator,
)
from agentmesh.core.roles.assign import FAN_IN_DOMAIN
from agentmesh.core.roles.fleet import device_mix

RANDOMNESS = bytes(range(32))
CONFIG = RolesConfig()


def caps(**changes: object) -> Capabilities:
    base = Capabilities(4, 200, 4096, 2048, None, (), "litert", 100_000, "edge", ROLES)
    return dataclasses.replace(base, **changes)


def view(count: int, seed: int = 1) -> tuple[dict[str, str], dict[str, Capabilities]]:
    adverts = device_mix(count, random.Random(seed))
    return dict.fromkeys(adverts, "alive"), adverts


# -- capability thresholds -------------------------------------------------------------


def test_small_changes_are_ignored_and_drift_adds_up() -> None:
    old = caps()
    assert change_reason(old, caps(cpu_load_permille=400), CONFIG) is None
    assert change_reason(old, caps(cpu_load_permille=450), CONFIG) == "cpu load"
    assert change_reason(old, caps(ram_free_mb=1100), CONFIG) is None
    assert change_reason(old, caps(ram_free_mb=1024), CONFIG) == "free ram"
    assert change_reason(old, caps(link_bandwidth_kbps=50_000), CONFIG) == "bandwidth"
    assert change_reason(old, caps(roles_allowed=("trainer",)), CONFIG) == "hardware or policy"
    assert change_reason(old, caps(address="10.0.0.1:4433"), CONFIG) is None
    settled = old
    for load in range(200, 460, 10):  # creeping load: acted upon once it is 250 away
        settled = settle(settled, caps(cpu_load_permille=load), CONFIG)
    assert settled.cpu_load_permille == 450


def test_battery_has_a_schmitt_trigger() -> None:
    low, band = CONFIG.battery_percent_min, CONFIG.battery_hysteresis_percent
    assert change_reason(caps(battery_percent=low + 1), caps(battery_percent=low - 1), CONFIG)
    assert change_reason(caps(battery_percent=90), caps(battery_percent=low + 1), CONFIG) is None
    below = caps(battery_percent=low - 1)
    assert change_reason(below, caps(battery_percent=low + band - 1), CONFIG) is None
    assert change_reason(below, caps(battery_percent=low + band), CONFIG) == "battery"
    assert change_reason(caps(), caps(battery_percent=100), CONFIG) == "battery"


# -- rendezvous hashing ----------------------------------------------------------------


def test_mix64_is_splitmix64() -> None:
    # splitmix64 seeded with 0: the first output (reference C code by Vigna).
    assert rendezvous.mix64(0) == 0xE220A8397B1DCDAF


def test_numpy_rendezvous_matches_the_pure_reference() -> None:
    rng = random.Random(7)
    for parents_count in (1, 2, 3, 17, 300):
        children = [rng.getrandbits(64) for _ in range(500)]
        parents = [rng.getrandbits(64) for _ in range(parents_count)]
        fast = rendezvous.best_parent(
            np.array(children, dtype=np.uint64), np.array(parents, dtype=np.uint64)
        )
        assert fast.tolist() == [rendezvous.best_parent_pure(c, parents) for c in children]
    with pytest.raises(ValueError):
        rendezvous.best_parent(np.zeros(3, dtype=np.uint64), np.zeros(0, dtype=np.uint64))


# -- renegotiation ---------------------------------------------------------------------


def test_nothing_changed_means_nothing_moves() -> None:
    members, adverts = view(800)
    first = assign_roles(members, adverts, RANDOMNESS)
    second = renegotiate(first, members, adverts)
    assert second.epoch == first.epoch + 1
    assert dataclasses.replace(second, epoch=first.epoch) == first
    jittered = {
        peer: dataclasses.replace(c, cpu_load_permille=max(0, c.cpu_load_permille - 40))
        for peer, c in adverts.items()
    }
    third = renegotiate(second, members, jittered)
    assert churn(second, third).as_metrics() == dict.fromkeys(churn(first, first).as_metrics(), 0)
    assert third.profiles == second.profiles


def test_join_displaces_no_validator_and_no_aggregator() -> None:
    members, adverts = view(800)
    first = assign_roles(members, adverts, RANDOMNESS)
    # a join that would outrank everyone in a fresh draw still waits for a vacancy
    joiner = caps(cpu_cores=128, ram_total_mb=524288, ram_free_mb=400000, accelerators=("x",))
    for index in range(300):
        members[f"joiner-{index}"] = "alive"
        adverts[f"joiner-{index}"] = joiner
    second = renegotiate(first, members, adverts)
    moved = churn(first, second)
    assert moved.validators_added == moved.validators_removed == 0
    assert moved.aggregators_removed == 0
    assert moved.trainers_added == 300
    fresh = churn(first, assign_roles(members, adverts, RANDOMNESS))
    assert fresh.validators_removed > 0 and fresh.aggregators_removed > 0


def test_validator_leave_replaces_exactly_one() -> None:
    members, adverts = view(800)
    first = assign_roles(members, adverts, RANDOMNESS)
    gone = first.committee[2]
    members[gone] = "left"
    second = renegotiate(first, members, adverts)
    moved = churn(first, second)
    assert (moved.validators_added, moved.validators_removed) == (1, 1)
    assert gone not in second.validators
    assert set(first.validators) - {gone} < set(second.validators)


def test_aggregator_failure_moves_its_trainers_and_a_standby_steps_up() -> None:
    members, adverts = view(2000)
    first = assign_roles(members, adverts, RANDOMNESS)
    victim = first.aggregator_tiers[0][0]
    members[victim] = "dead"
    second = renegotiate(first, members, adverts)
    assert len(second.aggregator_tiers[0]) == len(first.aggregator_tiers[0])
    assert second.aggregator_tiers[0] != first.aggregator_tiers[0]
    seat = first.aggregator_seats[0].index(victim)
    assert second.aggregator_seats[0][seat] == first.standbys[0]
    moved = churn(first, second)
    assert moved.aggregators_added == moved.aggregators_removed == 1
    # the replacement inherits the seat, hence exactly the victim's trainers
    inherited = [t for t in first.fan_in[victim] if t != victim]
    assert moved.trainers_moved == len(inherited)
    assert set(second.fan_in[first.standbys[0]]) == set(inherited)


def test_aggregator_count_has_hysteresis() -> None:
    members, adverts = view(1500)
    first = assign_roles(members, adverts, RANDOMNESS)
    seats = len(first.aggregator_tiers[0])
    trainers = sorted(first.trainers)
    # drop 15% of the trainers: mean fan-in stays above 80, the seat count holds
    for peer in trainers[: len(trainers) * 15 // 100]:
        members[peer] = "left"
    second = renegotiate(first, members, adverts)
    assert len(second.aggregator_tiers[0]) == seats
    fresh = assign_roles(members, adverts, RANDOMNESS)
    assert len(fresh.aggregator_tiers[0]) < seats
    for peer in trainers[: len(trainers) // 2]:
        members[peer] = "left"
    third = renegotiate(second, members, adverts)
    assert len(third.aggregator_tiers[0]) == -(-len(third.trainers) // 100)


def test_new_randomness_rotates_the_seats() -> None:
    members, adverts = view(800)
    first = assign_roles(members, adverts, RANDOMNESS)
    rotated = renegotiate(first, members, adverts, randomness=bytes(32))
    assert rotated.randomness == bytes(32)
    fresh = assign_roles(members, adverts, bytes(32), epoch=1)
    assert assignment_digest(rotated) == assignment_digest(fresh)


def test_low_battery_validator_steps_down_at_the_next_epoch() -> None:
    members, adverts = view(800)
    first = assign_roles(members, adverts, RANDOMNESS)
    target = first.committee[0]
    adverts[target] = dataclasses.replace(adverts[target], battery_percent=5)
    second = renegotiate(first, members, adverts)
    assert target not in second.validators and len(second.validators) == len(first.validators)


# -- takeover --------------------------------------------------------------------------


def test_takeover_is_the_next_aggregator_in_rendezvous_order() -> None:
    members, adverts = view(3000)
    assignment = assign_roles(members, adverts, RANDOMNESS)
    tier = assignment.aggregator_seats[0]
    failed = tier[3]
    result = takeover(assignment, failed)
    orphans = [t for t in assignment.fan_in[failed] if t != failed]
    assert sorted(result.trainers) == sorted(orphans) and result.orphans == ()
    key = rendezvous.salt(FAN_IN_DOMAIN, assignment.randomness)
    tier_hashes = [rendezvous.hash64(key, f"seat/0/{index}") for index in range(len(tier))]
    for trainer in orphans:
        child = rendezvous.hash64(key, trainer)
        order = sorted(range(len(tier)), key=lambda i: -rendezvous.weight(child, tier_hashes[i]))
        assert tier[order[0]] == failed
        assert result.trainers[trainer] == tier[order[1]]
    for trainer in assignment.trainers:
        if trainer not in result.trainers and trainer != failed:
            assert (
                trainer_aggregator(assignment, result, trainer)
                == assignment.trainer_parent[trainer]
            )


def test_takeover_ignores_failure_order() -> None:
    members, adverts = view(3000)
    assignment = assign_roles(members, adverts, RANDOMNESS)
    failed = list(assignment.aggregator_tiers[0][::3])
    one = takeover(assignment, failed)
    two = takeover(assignment, reversed(failed))
    assert one == two
    assert set(one.trainers.values()).isdisjoint(failed)


def test_all_aggregators_dead_then_standbys_then_nobody() -> None:
    members, adverts = view(2000)
    assignment = assign_roles(members, adverts, RANDOMNESS)
    tier = assignment.aggregator_tiers[0]
    first_block = set(assignment.standbys[: len(tier)])
    result = takeover(assignment, tier)
    live_trainers = [t for t in assignment.trainers if t not in tier]
    assert sorted(result.trainers) == live_trainers and result.orphans == ()
    assert set(result.trainers.values()) <= first_block
    deeper = takeover(assignment, set(tier) | first_block)
    assert deeper.orphans == ()
    assert set(deeper.trainers.values()).isdisjoint(first_block | set(tier))
    everyone = takeover(assignment, set(tier) | set(assignment.standbys))
    assert everyone.trainers == {} and len(everyone.orphans) > 0


def test_second_tier_failure_and_stepped_in_standbys() -> None:
    members, adverts = view(600, seed=4)
    config = RolesConfig(trainers_per_aggregator=5, children_per_aggregator_max=10)
    assignment = assign_roles(members, adverts, RANDOMNESS, config)
    assert len(assignment.aggregator_tiers) == 2
    lower, upper = assignment.aggregator_tiers
    result = takeover(assignment, upper[0])
    assert set(result.aggregators) == set(assignment.fan_in[upper[0]])
    assert all(parent in upper[1:] for parent in result.aggregators.values())
    all_upper = takeover(assignment, upper)
    assert set(all_upper.aggregators) == set(lower) - set(upper)
    assert all(parent is None for parent in all_upper.aggregators.values())
    all_lower = takeover(assignment, lower)
    stepped_in = set(all_lower.trainers.values())
    assert stepped_in and stepped_in <= set(all_lower.aggregators)
    assert all(all_lower.aggregators[peer] in upper for peer in stepped_in)
