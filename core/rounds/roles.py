"""Who does what: the genesis committee, the cohort and each round's aggregators.

All pure functions of the member ids and their allowed roles, so every agent
that sees the same membership computes the same answer with no messages
(DESIGN.md: roles are derived deterministically from the membership view).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from agentmesh.core.consensus import Committee

COMMITTEE_SIZE_DEFAULT = 4  # n = 3f + 1 with f = 1: enough for a LAN mesh of tens
_DOMAIN_GENESIS = b"agentmesh/rounds-genesis/1\x00"
_DOMAIN_RANK = b"agentmesh/rounds-rank/1\x00"


class RolesError(ValueError):
    """The membership cannot staff a round (no trainer, no validator, ...)."""


@dataclass(frozen=True, slots=True)
class Genesis:
    """What every agent agrees on before round 1: who validates, trains and aggregates."""

    mesh: str
    committee: tuple[str, ...]  # PBFT members, in primary-rotation order
    cohort: tuple[str, ...]  # trainers, sorted
    aggregators: tuple[str, ...]  # may aggregate, sorted
    initial_model: bytes  # sha-256 of the initial global model's bytes

    @property
    def genesis_id(self) -> bytes:
        hasher = hashlib.sha256(_DOMAIN_GENESIS + self.mesh.encode() + b"\x00")
        for group in (self.committee, self.cohort, self.aggregators):
            hasher.update(struct.pack(">I", len(group)))
            for peer in group:
                hasher.update(peer.encode() + b"\x00")
        hasher.update(self.initial_model)
        return hasher.digest()

    def consensus_committee(self) -> Committee:
        return Committee(0, self.committee)

    @property
    def f(self) -> int:
        return (len(self.committee) - 1) // 3

    @property
    def vote_quorum(self) -> int:
        """f + 1 matching validator votes: at least one honest validator recomputed it."""
        return self.f + 1


def committee_size(eligible: int, size_max: int = COMMITTEE_SIZE_DEFAULT) -> int:
    """The largest 3f + 1 <= min(eligible, size_max), or everyone when fewer than 4."""
    n = min(eligible, size_max)
    return n if n < 4 else 3 * ((n - 1) // 3) + 1


def _rank_key(salt: bytes, peer: str) -> bytes:
    return hashlib.sha256(_DOMAIN_RANK + salt + peer.encode()).digest()


def genesis_roles(
    mesh: str,
    roles_allowed: Mapping[str, tuple[str, ...]],
    initial_model: bytes,
    committee_size_max: int = COMMITTEE_SIZE_DEFAULT,
) -> Genesis:
    """The genesis of a mesh whose members (peer id -> allowed roles) are all alive.

    The committee is drawn by a hash of the whole sorted member list, so no id
    can place itself in it by choosing a name; ties are impossible (sha-256).
    """
    ids = sorted(roles_allowed)
    salt = hashlib.sha256("\x00".join(ids).encode()).digest()
    eligible = [p for p in ids if "validator" in roles_allowed[p]]
    size = committee_size(len(eligible), committee_size_max)
    if size < 1:
        raise RolesError("no member may validate: the mesh cannot finalize rounds")
    committee = tuple(sorted(eligible, key=lambda p: _rank_key(salt, p))[:size])
    cohort = tuple(p for p in ids if "trainer" in roles_allowed[p])
    aggregators = tuple(p for p in ids if "aggregator" in roles_allowed[p])
    if not cohort or not aggregators:
        raise RolesError("a round needs at least one trainer and one aggregator")
    return Genesis(mesh, committee, cohort, aggregators, initial_model)


def aggregator_order(genesis: Genesis, round_number: int) -> tuple[str, ...]:
    """Every eligible aggregator, in this round's order; position k takes over k-th."""
    salt = genesis.genesis_id + struct.pack(">Q", round_number)
    return tuple(sorted(genesis.aggregators, key=lambda p: _rank_key(salt, p)))
