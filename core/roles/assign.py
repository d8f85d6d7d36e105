"""`assign_roles` and `renegotiate`: pure functions of the committed view.

Inputs are the committed membership view (peer id -> state), the capability
adverts and committed randomness (e.g. the hash of the last commit
certificate). No clock, no I/O, no iteration-order dependence: every input is
sorted or keyed before use, so every agent computes the same `Assignment`.

- Validators: n = 3f + 1 (config target, fewer if few are eligible) drawn by
  weighted sampling without replacement, weight = capability score, with the
  Efraimidis-Spirakis keys of core/consensus/committee.py (`select_committee`:
  key u^(1/w), u from sha-256(randomness || peer id); Efraimidis & Spirakis,
  "Weighted random sampling with a reservoir", IPL 97(5), 2006).
- Aggregators: ceil(trainers / 100) first-tier seats, a further tier whenever a
  tier has more than 100 aggregators; seats go by the same weighted draw under
  domain-separated randomness; trainers (and lower-tier aggregators) are mapped
  to them by rendezvous hashing (rendezvous.py).
- Renegotiation is sticky: incumbents keep their seats while they serve and
  stay eligible, vacancies go to the best-ranked newcomers, the aggregator count
  moves only when the mean fan-in leaves [0.8, 1.25] x 100, and capabilities
  count only after a significant change (capability.py). New randomness
  (a committed rotation) redraws every seat.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from agentmesh.core.consensus.committee import select_committee
from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.roles import rendezvous
from agentmesh.core.roles.assignment import Assignment
from agentmesh.core.roles.capability import (
    capability_score,
    may_aggregate,
    may_train,
    may_validate,
    settle,
)
from agentmesh.core.roles.config import (
    AGGREGATOR,
    RANDOMNESS_BYTES_MAX,
    RANDOMNESS_BYTES_MIN,
    TRAINER,
    VALIDATOR,
    RolesConfig,
    RolesError,
    committee_size,
)

DEFAULT_CONFIG = RolesConfig()
AGGREGATOR_DOMAIN = b"aggregator"
FAN_IN_DOMAIN = b"fan-in"


def assign_roles(
    members: Mapping[str, str],
    adverts: Mapping[str, Capabilities],
    randomness: bytes,
    config: RolesConfig = DEFAULT_CONFIG,
    *,
    epoch: int = 0,
) -> Assignment:
    """A fresh assignment: members (peer id -> membership state) with adverts take roles."""
    return _derive(members, adverts, randomness, config, epoch, None, sticky=False)


def renegotiate(
    previous: Assignment,
    members: Mapping[str, str],
    adverts: Mapping[str, Capabilities],
    config: RolesConfig = DEFAULT_CONFIG,
    *,
    randomness: bytes | None = None,
) -> Assignment:
    """The assignment for the next epoch after joins, leaves, failures or capability changes.

    Keeps `previous.randomness` (and therefore seats) unless new committed
    randomness is given, which redraws every seat (periodic rotation).
    """
    fresh = randomness if randomness is not None else previous.randomness
    sticky = fresh == previous.randomness
    return _derive(members, adverts, fresh, config, previous.epoch + 1, previous, sticky)


def _check_inputs(members: object, adverts: object, randomness: object, epoch: object) -> None:
    if not isinstance(randomness, bytes) or not (
        RANDOMNESS_BYTES_MIN <= len(randomness) <= RANDOMNESS_BYTES_MAX
    ):
        raise RolesError(f"randomness must be {RANDOMNESS_BYTES_MIN}..{RANDOMNESS_BYTES_MAX} bytes")
    if not isinstance(members, Mapping) or not isinstance(adverts, Mapping):
        raise RolesError("members and adverts must be mappings keyed by peer id")
    if not isinstance(epoch, int) or epoch < 0:
        raise RolesError("epoch must be an integer >= 0")


def _derive(
    members: Mapping[str, str],
    adverts: Mapping[str, Capabilities],
    randomness: bytes,
    config: RolesConfig,
    epoch: int,
    previous: Assignment | None,
    sticky: bool,
) -> Assignment:
    _check_inputs(members, adverts, randomness, epoch)
    serving = sorted(
        peer
        for peer, state in members.items()
        if state in config.states_serving and peer in adverts
    )
    old_profiles = previous.profiles if previous is not None else {}
    profiles = {peer: settle(old_profiles.get(peer), adverts[peer], config) for peer in serving}
    scores = {peer: capability_score(caps) for peer, caps in profiles.items()}
    trainers = [peer for peer in serving if may_train(profiles[peer])]
    committee = _draw_committee(profiles, scores, randomness, config, previous if sticky else None)
    seats, standbys = _draw_aggregators(
        profiles, scores, len(trainers), randomness, config, previous, sticky
    )
    maps = _map_fan_in(trainers, seats, randomness)
    fan_in: dict[str, list[str]] = {peer: [] for tier in seats for peer in tier}
    for parent in maps:
        for child, chosen in parent.items():
            fan_in[chosen].append(child)
    trainer_parent = maps[0] if maps else {}
    aggregator_parent = {child: chosen for parent in maps[1:] for child, chosen in parent.items()}
    roles = _roles_by_peer(serving, trainers, committee, seats)
    return Assignment(
        epoch=epoch,
        randomness=randomness,
        members=tuple(serving),
        trainers=tuple(trainers),
        validators=tuple(sorted(committee)),
        committee=committee,
        aggregator_tiers=tuple(tuple(sorted(tier)) for tier in seats),
        aggregator_seats=seats,
        standbys=standbys,
        trainer_parent=MappingProxyType(trainer_parent),
        aggregator_parent=MappingProxyType(aggregator_parent),
        fan_in=MappingProxyType(
            {peer: tuple(sorted(children)) for peer, children in fan_in.items()}
        ),
        roles=MappingProxyType(roles),
        profiles=MappingProxyType(profiles),
    )


def _ranking(eligible: Mapping[str, int], randomness: bytes) -> tuple[str, ...]:
    """Every eligible peer in weighted-draw order (the committee rule, all the way down)."""
    if not eligible:
        return ()
    return select_committee(eligible, randomness, len(eligible))


def _draw_committee(
    profiles: Mapping[str, Capabilities],
    scores: Mapping[str, int],
    randomness: bytes,
    config: RolesConfig,
    previous: Assignment | None,
) -> tuple[str, ...]:
    """n = 3f + 1 validators in rank order: incumbents stay, vacancies go down the ranking."""
    eligible = {
        peer: score
        for peer, score in scores.items()
        if score > 0 and may_validate(profiles[peer], config)
    }
    size = committee_size(config.validators_target, len(eligible))
    ranking = _ranking(eligible, randomness)
    incumbents = () if previous is None else previous.committee
    rank = {peer: index for index, peer in enumerate(ranking)}
    chosen = _fill(ranking, _keep(rank, incumbents, size, set()), size, set())
    return tuple(peer for peer in ranking if peer in chosen)


def _keep(
    rank: Mapping[str, int], incumbents: Sequence[str], size: int, taken: set[str]
) -> set[str]:
    """Incumbents that are still eligible (in `rank`), the best-ranked `size` of them."""
    kept = sorted(
        (peer for peer in incumbents if peer in rank and peer not in taken), key=rank.__getitem__
    )
    return set(kept[:size])


def _fill(ranking: Sequence[str], seats: set[str], size: int, taken: set[str]) -> set[str]:
    """Vacant seats go down the ranking, skipping peers already seated elsewhere."""
    seats = set(seats)
    for peer in ranking:
        if len(seats) >= size:
            break
        if peer not in taken:
            seats.add(peer)
    return seats


def _tier_sizes(
    trainers: int, eligible: int, previous_first: int, config: RolesConfig
) -> list[int]:
    """Seats per tier: ~1 per 100 trainers (with count hysteresis), a tier per 100 below."""
    if trainers == 0 or eligible == 0:
        return []
    per = config.trainers_per_aggregator
    first = math.ceil(trainers / per)
    low, high = config.fan_in_low_ratio * per, config.fan_in_high_ratio * per
    if previous_first and low * previous_first <= trainers <= high * previous_first:
        first = previous_first
    sizes = [min(first, eligible)]
    remaining = eligible - sizes[0]
    while sizes[-1] > config.children_per_aggregator_max and remaining > 0:
        size = min(math.ceil(sizes[-1] / config.children_per_aggregator_max), remaining)
        sizes.append(size)
        remaining -= size
    return sizes


def _draw_aggregators(
    profiles: Mapping[str, Capabilities],
    scores: Mapping[str, int],
    trainer_count: int,
    randomness: bytes,
    config: RolesConfig,
    previous: Assignment | None,
    sticky: bool,
) -> tuple[tuple[tuple[str, ...], ...], tuple[str, ...]]:
    """Seats per tier in seat order (top tier takes the best ranks) and the standby order.

    Renegotiation keeps each incumbent in its seat; a vacated seat goes to the
    best-ranked free peer, who inherits the seat's children (rendezvous hashing
    is over seats, not peers).
    """
    eligible = {
        peer: score
        for peer, score in scores.items()
        if score > 0 and may_aggregate(profiles[peer], config)
    }
    ranking = _ranking(eligible, rendezvous.salt(AGGREGATOR_DOMAIN, randomness))
    old_seats = previous.aggregator_seats if previous is not None else ()
    previous_first = len(old_seats[0]) if old_seats else 0
    sizes = _tier_sizes(trainer_count, len(eligible), previous_first, config)
    seats: list[list[str | None]] = [[None] * size for size in sizes]
    taken: set[str] = set()
    if sticky:
        for level in reversed(range(len(sizes))):
            old = old_seats[level] if level < len(old_seats) else ()
            for index, peer in enumerate(old[: sizes[level]]):
                if peer in eligible and peer not in taken:
                    seats[level][index] = peer
                    taken.add(peer)
    free = (peer for peer in ranking if peer not in taken)
    for level in reversed(range(len(sizes))):
        seats[level] = [peer if peer is not None else next(free) for peer in seats[level]]
    filled = tuple(tuple(peer for peer in tier if peer is not None) for tier in seats)
    seated = {peer for tier in filled for peer in tier}
    standbys = tuple(peer for peer in ranking if peer not in seated)
    return filled, standbys


def seat_hashes(key: bytes, level: int, size: int) -> rendezvous.HashArray:
    """Rendezvous identities of the seats of one tier (stable across occupants)."""
    return rendezvous.hashes(key, [f"seat/{level}/{index}" for index in range(size)])


def _map_fan_in(
    trainers: Sequence[str], seats: Sequence[Sequence[str]], randomness: bytes
) -> list[dict[str, str]]:
    """Rendezvous hashing over seats: trainers to tier 0, tier k's seats to tier k + 1's."""
    maps: list[dict[str, str]] = []
    key = rendezvous.salt(FAN_IN_DOMAIN, randomness)
    children: Sequence[str] = trainers
    child_hashes = rendezvous.hashes(key, trainers)
    for level, tier in enumerate(seats):
        tier_hashes = seat_hashes(key, level, len(tier))
        chosen = rendezvous.best_parent(child_hashes, tier_hashes)
        maps.append(dict(zip(children, (tier[i] for i in chosen.tolist()), strict=True)))
        children, child_hashes = tier, tier_hashes
    return maps


def _roles_by_peer(
    serving: Sequence[str],
    trainers: Sequence[str],
    committee: Sequence[str],
    tiers: Sequence[Sequence[str]],
) -> dict[str, frozenset[str]]:
    held: dict[str, list[str]] = {peer: [] for peer in serving}
    for peer in trainers:
        held[peer].append(TRAINER)
    for tier in tiers:
        for peer in tier:
            held[peer].append(AGGREGATOR)
    for peer in committee:
        held[peer].append(VALIDATOR)
    interned: dict[tuple[str, ...], frozenset[str]] = {}
    return {
        peer: interned.setdefault(tuple(names), frozenset(names)) for peer, names in held.items()
    }
