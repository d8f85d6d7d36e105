"""Inside a round: who takes over a failed aggregator's children, and churn figures.

The takeover is deterministic and needs no messages: each orphaned child goes
to its next aggregator in rendezvous order among the live seats of the same
tier (so a failed aggregator's load spreads evenly, Thaler & Ravishankar
1998). If the whole tier is gone, the chain continues through the standbys in
blocks the size of the tier (rank order), HRW inside each block, so a round
survives the death of all its aggregators. A higher-tier failure re-parents
its lower-tier aggregators among the live higher tier; if that tier is gone
they deliver straight to the committee (no parent).
"""

from __future__ import annotations

import itertools
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import dataclass

from agentmesh.core.roles import rendezvous
from agentmesh.core.roles.assign import FAN_IN_DOMAIN, seat_hashes
from agentmesh.core.roles.assignment import Assignment


@dataclass(frozen=True, slots=True)
class Takeover:
    """New parents for the children of failed aggregators.

    `trainers`: trainer -> its first-tier aggregator for the rest of the round.
    `aggregators`: aggregator (or stepped-in standby) -> its new upper-tier
    aggregator, None when that whole tier is gone (it delivers straight to the
    committee). `orphans`: trainers with no live aggregator or standby left at
    all (their updates miss this round).
    """

    trainers: dict[str, str]
    aggregators: dict[str, str | None]
    orphans: tuple[str, ...]


Candidates = tuple[list[str], rendezvous.HashArray]


def _seats_alive(
    assignment: Assignment, level: int, dead: Collection[str], key: bytes
) -> Candidates:
    """The live aggregators of one tier with their seat hashes."""
    tier = assignment.aggregator_seats[level]
    hashes = seat_hashes(key, level, len(tier))
    keep = [index for index, peer in enumerate(tier) if peer not in dead]
    return [tier[index] for index in keep], hashes[keep]


def _standby_blocks(
    assignment: Assignment, dead: Collection[str], key: bytes
) -> Iterator[Candidates]:
    """Standbys in rank order, in blocks the size of the first tier (live ones only)."""
    size = max(len(assignment.aggregator_seats[0]), 1)
    standbys = assignment.standbys
    for start in range(0, len(standbys), size):
        live = [peer for peer in standbys[start : start + size] if peer not in dead]
        yield live, rendezvous.hashes(key, live)


def _rehome(
    children: Sequence[str], child_hashes: rendezvous.HashArray, blocks: Iterable[Candidates]
) -> tuple[dict[str, str], list[str]]:
    """Rendezvous hashing inside the first block that still has a live member."""
    if not children:
        return {}, []
    for live, hashes in blocks:
        if live:
            chosen = rendezvous.best_parent(child_hashes, hashes)
            return dict(zip(children, (live[i] for i in chosen.tolist()), strict=True)), []
    return {}, list(children)


def _orphans_of(assignment: Assignment, level: int, dead: Collection[str]) -> list[str]:
    """Live children of the failed aggregators of one tier, sorted."""
    return sorted(
        child
        for peer in assignment.aggregator_seats[level]
        if peer in dead
        for child in assignment.fan_in.get(peer, ())
        if child not in dead
    )


def takeover(assignment: Assignment, failed: str | Iterable[str]) -> Takeover:
    """Who takes the children of the failed aggregator(s) for the rest of this round.

    Depends only on the assignment and the set of failed peers (not on the order
    in which they failed). Children that are themselves failed are skipped.
    A standby that steps into the first tier gets a live second-tier parent.
    """
    dead = {failed} if isinstance(failed, str) else set(failed)
    key = rendezvous.salt(FAN_IN_DOMAIN, assignment.randomness)
    seats = assignment.aggregator_seats
    if not seats:
        return Takeover({}, {}, ())
    orphaned = _orphans_of(assignment, 0, dead)
    first_tier = itertools.chain(
        [_seats_alive(assignment, 0, dead, key)], _standby_blocks(assignment, dead, key)
    )
    trainers, orphans = _rehome(orphaned, rendezvous.hashes(key, orphaned), first_tier)
    aggregators: dict[str, str | None] = {}
    for level in range(1, len(seats)):
        orphaned = _orphans_of(assignment, level, dead)
        index = {peer: i for i, peer in enumerate(seats[level - 1])}
        lower = seat_hashes(key, level - 1, len(seats[level - 1]))
        child_hashes = lower[[index[peer] for peer in orphaned]]
        upper = [_seats_alive(assignment, level, dead, key)]
        rehomed, lost = _rehome(orphaned, child_hashes, upper)
        aggregators.update(rehomed)
        aggregators.update(dict.fromkeys(lost))
    if len(seats) > 1:
        stepped_in = sorted(set(trainers.values()) - set(seats[0]))
        upper = [_seats_alive(assignment, 1, dead, key)]
        rehomed, lost = _rehome(stepped_in, rendezvous.hashes(key, stepped_in), upper)
        aggregators.update(rehomed)
        aggregators.update(dict.fromkeys(lost))
    return Takeover(trainers, aggregators, tuple(orphans))


def trainer_aggregator(assignment: Assignment, result: Takeover, trainer: str) -> str | None:
    """The first-tier aggregator `trainer` reports to this round after `result`."""
    if trainer in result.trainers:
        return result.trainers[trainer]
    if trainer in result.orphans:
        return None
    return assignment.trainer_parent.get(trainer)


@dataclass(frozen=True, slots=True)
class Churn:
    """What changed between two assignments (peer counts)."""

    trainers_moved: int  # trainers in both whose first-tier aggregator changed
    trainers_added: int
    trainers_removed: int
    aggregators_added: int
    aggregators_removed: int
    validators_added: int
    validators_removed: int

    def as_metrics(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


def churn(old: Assignment, new: Assignment) -> Churn:
    """Count the role changes a renegotiation caused."""
    old_trainers, new_trainers = set(old.trainers), set(new.trainers)
    both = old_trainers & new_trainers
    moved = sum(1 for peer in both if old.trainer_parent.get(peer) != new.trainer_parent.get(peer))
    old_aggregators, new_aggregators = set(old.aggregators), set(new.aggregators)
    old_validators, new_validators = set(old.validators), set(new.validators)
    return Churn(
        trainers_moved=moved,
        trainers_added=len(new_trainers - old_trainers),
        trainers_removed=len(old_trainers - new_trainers),
        aggregators_added=len(new_aggregators - old_aggregators),
        aggregators_removed=len(old_aggregators - new_aggregators),
        validators_added=len(new_validators - old_validators),
        validators_removed=len(old_validators - new_validators),
    )
