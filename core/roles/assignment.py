"""The immutable result of role assignment, its digest and the coordinator rule."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from agentmesh.core.consensus.committee import Committee
from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.roles.capability import capability_score
from agentmesh.core.roles.config import COORDINATOR, RolesError


@dataclass(frozen=True, slots=True)
class Assignment:
    """Who does what in one epoch. Every honest agent derives an equal one.

    Tuples of peer ids are sorted, except `committee` (the validators in
    Efraimidis-Spirakis rank order, which is the PBFT primary rotation) and
    `standbys` (aggregator-eligible peers without an aggregator seat, in rank
    order: the takeover chain). `aggregator_tiers[0]` aggregates trainers,
    `aggregator_tiers[k]` aggregates tier k - 1 (present only above the
    configured fan-in); `aggregator_seats` holds the same peers in seat order
    (rendezvous hashing is over seats, so a replacement inherits its seat's
    children). `trainer_parent` maps each trainer to its first-tier
    aggregator, `aggregator_parent` each tier-k aggregator to its tier k + 1
    aggregator (two maps: a peer may be a trainer and an aggregator); `fan_in`
    maps each aggregator to its children (trainers or lower-tier aggregators).
    `profiles` are the settled capabilities the roles were decided on (the
    next renegotiation compares adverts to them).
    """

    epoch: int
    randomness: bytes
    members: tuple[str, ...]
    trainers: tuple[str, ...]
    validators: tuple[str, ...]
    committee: tuple[str, ...]
    aggregator_tiers: tuple[tuple[str, ...], ...]
    aggregator_seats: tuple[tuple[str, ...], ...]
    standbys: tuple[str, ...]
    trainer_parent: Mapping[str, str]
    aggregator_parent: Mapping[str, str]
    fan_in: Mapping[str, tuple[str, ...]]
    roles: Mapping[str, frozenset[str]]
    profiles: Mapping[str, Capabilities]

    @property
    def aggregators(self) -> tuple[str, ...]:
        """All aggregators of every tier, sorted."""
        return tuple(sorted(peer for tier in self.aggregator_tiers for peer in tier))

    def coordinator(self, view: int) -> str:
        """The PBFT primary of `view` in this epoch's committee (it orders, nothing more)."""
        return coordinator(self.committee, view)

    def roles_at(self, peer_id: str, view: int) -> frozenset[str]:
        """The roles of `peer_id` in `view`, coordinator included when it is the primary."""
        held = self.roles.get(peer_id, frozenset())
        if self.committee and self.coordinator(view) == peer_id:
            return held | {COORDINATOR}
        return held

    def fan_in_counts(self, tier: int = 0) -> list[int]:
        """Children per aggregator of one tier, in the tier's sorted order."""
        return [len(self.fan_in.get(peer, ())) for peer in self.aggregator_tiers[tier]]


def coordinator(committee: Committee | Sequence[str], view: int) -> str:
    """The coordinator of `view`: exactly `Committee.primary` (members[view mod n], TOCS §4.1).

    Pass the consensus `Committee` or its ordered members (`Assignment.committee`).
    """
    if view < 0:
        raise RolesError("view must be >= 0")
    if isinstance(committee, Committee):
        return committee.primary(view)
    if not committee:
        raise RolesError("an empty committee has no coordinator")
    return Committee(0, tuple(committee)).primary(view)


def committee_candidates(assignment: Assignment) -> dict[str, int]:
    """Validators and their scores, for a consensus `committee` entry.

    `select_committee(committee_candidates(a), a.randomness, len(a.committee))`
    returns exactly `a.committee` (same Efraimidis-Spirakis keys, same order).
    """
    return {peer: capability_score(assignment.profiles[peer]) for peer in assignment.committee}


def _profile_line(caps: Capabilities) -> str:
    return (
        f"{caps.device_class},{caps.cpu_cores},{caps.cpu_load_permille},{caps.ram_total_mb},"
        f"{caps.ram_free_mb},{caps.battery_percent},{'+'.join(caps.accelerators)},"
        f"{caps.trainer_runtime},{caps.link_bandwidth_kbps},{'+'.join(caps.roles_allowed)}"
    )


def assignment_digest(assignment: Assignment) -> str:
    """sha-256 (hex) over every field, in a canonical order: equal digests, equal assignments."""
    digest = hashlib.sha256(b"agentmesh-roles-v1\n")
    digest.update(f"{assignment.epoch}\n{assignment.randomness.hex()}\n".encode())
    digest.update(("c:" + ",".join(assignment.committee) + "\n").encode())
    for tier in assignment.aggregator_seats:
        digest.update(("t:" + ",".join(tier) + "\n").encode())
    digest.update(("s:" + ",".join(assignment.standbys) + "\n").encode())
    lines = []
    for peer in assignment.members:
        roles = "+".join(sorted(assignment.roles[peer]))
        profile = _profile_line(assignment.profiles[peer])
        trainer_parent = assignment.trainer_parent.get(peer, "")
        aggregator_parent = assignment.aggregator_parent.get(peer, "")
        parents = f"{trainer_parent}|{aggregator_parent}"
        lines.append(f"{peer}|{roles}|{parents}|{profile}\n")
    digest.update("".join(lines).encode())
    return digest.hexdigest()
