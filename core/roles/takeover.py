"""Inside a round: who takes over a failed aggregator's children, and churn figures.

The takeover is deterministic and needs no messages: each orphaned child goes
to its next aggregator in rendezvous order among the live aggregators of the
same tier (so a failed aggregator's load spreads evenly, Thaler & Ravishankar
1998). If the whole tier is gone, the chain continues through the standbys in
blocks the size of the tier (rank order), HRW inside each block, so a round
survives the death of all its aggregators. A higher-tier failure re-parents
its lower-tier aggregators among the live higher tier; if that tier is gone
they deliver straight to the committee (no parent).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from agentmesh.core.roles import rendezvous
from agentmesh.core.roles.assign import FAN_IN_DOMAIN
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


def _candidate_blocks(assignment: Assignment, level: int) -> list[tuple[str, ...]]:
    """The takeover chain of one tier: the tier itself, then standby blocks (tier 0 only)."""
    tier = assignment.aggregator_tiers[level]
    blocks = [tier]
    if level == 0:
        size = max(len(tier), 1)
        standbys = assignment.standbys
        blocks += [standbys[start : start + size] for start in range(0, len(standbys), size)]
    return blocks


def _rehome(
    children: Sequence[str], blocks: Sequence[Sequence[str]], dead: Collection[str], key: bytes
) -> tuple[dict[str, str], list[str]]:
    """HRW inside the first block that still has a live member."""
    if not children:
        return {}, []
    for block in blocks:
        live = [peer for peer in block if peer not in dead]
        if live:
            chosen = rendezvous.best_parent(
                rendezvous.hashes(key, children), rendezvous.hashes(key, live)
            )
            return dict(zip(children, (live[i] for i in chosen.tolist()), strict=True)), []
    return {}, list(children)


def _orphans_of(assignment: Assignment, level: int, dead: Collection[str]) -> list[str]:
    """Live children of the failed aggregators of one tier, sorted."""
    return sorted(
        child
        for peer in assignment.aggregator_tiers[level]
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
    tiers = assignment.aggregator_tiers
    if not tiers:
        return Takeover({}, {}, ())
    trainers, orphans = _rehome(
        _orphans_of(assignment, 0, dead), _candidate_blocks(assignment, 0), dead, key
    )
    aggregators: dict[str, str | None] = {}
    for level in range(1, len(tiers)):
        rehomed, lost = _rehome(_orphans_of(assignment, level, dead), [tiers[level]], dead, key)
        aggregators.update(rehomed)
        aggregators.update(dict.fromkeys(lost))
    if len(tiers) > 1:
        stepped_in = sorted(set(trainers.values()) - set(tiers[0]))
        rehomed, lost = _rehome(stepped_in, [tiers[1]], dead, key)
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
