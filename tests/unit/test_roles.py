"""Role assignment: eligibility, scores, the committee rule, tiers and determinism."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.consensus.committee import Committee, select_committee
from agentmesh.core.membership.capabilities import ROLES, Capabilities
from agentmesh.core.roles import (
    AGGREGATOR,
    COORDINATOR,
    TRAINER,
    VALIDATOR,
    Assignment,
    RolesConfig,
    RolesError,
    assign_roles,
    assignment_digest,
    capability_score,
    committee_candidates,
    committee_size,
    coordinator,
    may_aggregate,
    may_train,
    may_validate,
)
from agentmesh.core.roles.capability import SCORE_MAX
from agentmesh.core.roles.fleet import device, device_mix

RANDOMNESS = bytes(range(32))
CONFIG = RolesConfig()


def caps(**changes: object) -> Capabilities:
    base = Capabilities(4, 200, 4096, 2048, None, (), "litert", 100_000, "edge", ROLES)
    return dataclasses.replace(base, **changes)


def check_consistent(assignment: Assignment) -> None:
    """The tuples, the per-peer role sets and the fan-in maps say the same thing."""
    for name, role in ((TRAINER, "trainers"), (VALIDATOR, "validators")):
        holders = tuple(peer for peer in assignment.members if name in assignment.roles[peer])
        assert holders == getattr(assignment, role)
    holders = tuple(p for p in assignment.members if AGGREGATOR in assignment.roles[p])
    assert holders == assignment.aggregators
    assert sorted(assignment.committee) == list(assignment.validators)
    assert list(assignment.validators) == sorted(set(assignment.validators))
    for tier in assignment.aggregator_tiers:
        assert list(tier) == sorted(tier)
    if assignment.aggregator_tiers:
        assert set(assignment.trainer_parent) == set(assignment.trainers)
        assert set(assignment.aggregator_parent) == {
            peer for tier in assignment.aggregator_tiers[:-1] for peer in tier
        }
    for child, chosen in assignment.trainer_parent.items():
        assert child in assignment.fan_in[chosen] and chosen in assignment.aggregator_tiers[0]
    for child, chosen in assignment.aggregator_parent.items():
        assert child in assignment.fan_in[chosen]
    links = len(assignment.trainer_parent) + len(assignment.aggregator_parent)
    assert sum(len(c) for c in assignment.fan_in.values()) == links
    seated = set(assignment.aggregators)
    assert not seated & set(assignment.standbys)


def test_committee_size_is_3f_plus_1() -> None:
    sizes = [committee_size(7, eligible) for eligible in range(0, 9)]
    assert sizes == [0, 1, 1, 1, 4, 4, 4, 7, 7]
    assert committee_size(10, 1000) == 10
    assert committee_size(9, 1000) == 7


def test_score_orders_devices_and_is_bounded() -> None:
    rng = random.Random(3)
    assert capability_score(device("mcu", rng)) == 0
    pi = caps()
    server = caps(cpu_cores=64, ram_total_mb=131072, link_bandwidth_kbps=10_000_000)
    assert 0 < capability_score(pi) < capability_score(server)
    assert capability_score(caps(cpu_load_permille=900)) < capability_score(pi)
    assert capability_score(caps(accelerators=("cuda",))) == 2 * capability_score(pi)
    assert capability_score(caps(battery_percent=90)) * 2 == capability_score(pi)
    huge = caps(cpu_cores=4096, ram_total_mb=2**32 - 1, ram_free_mb=0, cpu_load_permille=0)
    huge = dataclasses.replace(huge, link_bandwidth_kbps=2**32 - 1, accelerators=("x",))
    assert capability_score(huge) <= SCORE_MAX


def test_microcontrollers_and_low_battery_never_validate_or_aggregate() -> None:
    mcu = caps(device_class="mcu", ram_free_mb=4000)
    assert not may_validate(mcu, CONFIG) and not may_aggregate(mcu, CONFIG)
    low = caps(battery_percent=CONFIG.battery_percent_min - 1)
    assert not may_validate(low, CONFIG) and not may_aggregate(low, CONFIG)
    assert may_train(low)
    at_min = caps(battery_percent=CONFIG.battery_percent_min)
    assert may_validate(at_min, CONFIG) and may_aggregate(at_min, CONFIG)


def test_owner_roles_allowed_restrict() -> None:
    trainer_only = caps(roles_allowed=("trainer",))
    assert may_train(trainer_only)
    assert not may_validate(trainer_only, CONFIG) and not may_aggregate(trainer_only, CONFIG)
    infra = caps(roles_allowed=("aggregator", "validator"))
    assert not may_train(infra) and may_validate(infra, CONFIG)
    assert not may_train(caps(trainer_runtime="none"))
    assert not may_train(caps(roles_allowed=()))


def small_view(count: int, seed: int = 1) -> tuple[dict[str, str], dict[str, Capabilities]]:
    adverts = device_mix(count, random.Random(seed))
    return dict.fromkeys(adverts, "alive"), adverts


def test_assignment_respects_eligibility_and_is_consistent() -> None:
    members, adverts = small_view(600)
    assignment = assign_roles(members, adverts, RANDOMNESS)
    check_consistent(assignment)
    assert len(assignment.validators) == 7
    for peer in assignment.validators:
        assert may_validate(adverts[peer], CONFIG)
    for peer in assignment.aggregators:
        assert may_aggregate(adverts[peer], CONFIG)
    for peer in assignment.trainers:
        assert may_train(adverts[peer])
    expected_trainers = [peer for peer in sorted(adverts) if may_train(adverts[peer])]
    assert list(assignment.trainers) == expected_trainers
    assert len(assignment.aggregator_tiers) == 1
    assert len(assignment.aggregator_tiers[0]) == -(-len(expected_trainers) // 100)


def test_committee_is_the_consensus_rule() -> None:
    members, adverts = small_view(300)
    assignment = assign_roles(members, adverts, RANDOMNESS)
    eligible = {
        p: capability_score(c)
        for p, c in adverts.items()
        if may_validate(c, CONFIG) and capability_score(c) > 0
    }
    assert assignment.committee == select_committee(eligible, RANDOMNESS, 7)
    candidates = committee_candidates(assignment)
    assert select_committee(candidates, RANDOMNESS, 7) == assignment.committee


def test_coordinator_is_the_pbft_primary() -> None:
    members, adverts = small_view(200)
    assignment = assign_roles(members, adverts, RANDOMNESS, epoch=3)
    committee = Committee(3, assignment.committee)
    for view in range(20):
        primary = committee.primary(view)
        assert assignment.coordinator(view) == primary == coordinator(committee, view)
        assert coordinator(assignment.committee, view) == primary
        assert COORDINATOR in assignment.roles_at(primary, view)
        others = [peer for peer in assignment.committee if peer != primary]
        assert all(COORDINATOR not in assignment.roles_at(peer, view) for peer in others)
    with pytest.raises(RolesError):
        coordinator((), 0)
    with pytest.raises(RolesError):
        coordinator(assignment.committee, -1)


def test_departed_and_advertless_members_get_no_roles() -> None:
    members, adverts = small_view(150)
    peers = sorted(members)
    members[peers[0]], members[peers[1]] = "dead", "left"
    members[peers[2]] = "suspect"
    members["no-advert"] = "alive"
    assignment = assign_roles(members, adverts, RANDOMNESS)
    assert peers[0] not in assignment.roles and peers[1] not in assignment.roles
    assert "no-advert" not in assignment.roles
    assert peers[2] in assignment.members


def test_tiers_appear_above_the_fan_in() -> None:
    members, adverts = small_view(400, seed=5)
    config = RolesConfig(trainers_per_aggregator=2, children_per_aggregator_max=4)
    assignment = assign_roles(members, adverts, RANDOMNESS, config)
    check_consistent(assignment)
    sizes = [len(tier) for tier in assignment.aggregator_tiers]
    assert len(sizes) >= 3 and sizes[-1] <= 4
    for lower, upper in itertools.pairwise(sizes):
        assert upper == -(-lower // 4)
    for level, tier in enumerate(assignment.aggregator_tiers[:-1]):
        upper = set(assignment.aggregator_tiers[level + 1])
        assert all(assignment.aggregator_parent[peer] in upper for peer in tier)
    top = assignment.aggregator_tiers[-1]
    assert all(peer not in assignment.aggregator_parent for peer in top)
    flat = [peer for tier in assignment.aggregator_tiers for peer in tier]
    assert len(flat) == len(set(flat))


def test_not_enough_aggregators_caps_the_seats() -> None:
    members, adverts = small_view(120, seed=2)
    restricted = {
        peer: dataclasses.replace(c, roles_allowed=("trainer",)) for peer, c in adverts.items()
    }
    names = sorted(restricted)[:3]
    for peer in names:
        restricted[peer] = caps()
    config = RolesConfig(trainers_per_aggregator=10)
    assignment = assign_roles(members, restricted, RANDOMNESS, config)
    assert assignment.aggregator_tiers == (tuple(names),)
    assert assignment.validators == tuple(names[:1])  # 3 eligible: n = 3f + 1 = 1
    nobody = assign_roles({"a": "alive"}, {"a": caps(roles_allowed=("trainer",))}, RANDOMNESS)
    assert nobody.aggregator_tiers == () and nobody.committee == () and nobody.trainer_parent == {}


def test_bad_arguments_raise_typed_errors() -> None:
    members, adverts = small_view(10)
    for randomness in (b"", b"x" * 15, b"x" * 65, "text"):
        with pytest.raises(RolesError):
            assign_roles(members, adverts, randomness)  # type: ignore[arg-type]
    with pytest.raises(RolesError):
        assign_roles(members, adverts, RANDOMNESS, epoch=-1)
    with pytest.raises(RolesError):
        RolesConfig(validators_target=0)
    with pytest.raises(RolesError):
        RolesConfig(fan_in_low_ratio=1.5)


def test_randomness_changes_the_draw() -> None:
    members, adverts = small_view(500)
    first = assign_roles(members, adverts, RANDOMNESS)
    second = assign_roles(members, adverts, bytes(32))
    assert first.committee != second.committee
    assert assignment_digest(first) != assignment_digest(second)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), count=st.integers(1, 250), shuffle_seed=st.integers(0, 99))
def test_input_order_never_matters(seed: int, count: int, shuffle_seed: int) -> None:
    members, adverts = small_view(count, seed)
    order = list(members)
    random.Random(shuffle_seed).shuffle(order)
    shuffled_members = {peer: members[peer] for peer in order}
    random.Random(shuffle_seed + 1).shuffle(order)
    shuffled_adverts = {peer: adverts[peer] for peer in order}
    one = assign_roles(members, adverts, RANDOMNESS)
    two = assign_roles(shuffled_members, shuffled_adverts, RANDOMNESS)
    assert one == two
    assert assignment_digest(one) == assignment_digest(two)
    check_consistent(one)
