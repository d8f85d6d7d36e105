"""The task committee: drawn, like the rounds genesis, from the first full membership view."""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from agentmesh.core.consensus import Committee
from agentmesh.core.rounds.roles import COMMITTEE_SIZE_DEFAULT, RolesError, committee_size

_DOMAIN_GENESIS = b"agentmesh/tasks-genesis/1\x00"
_DOMAIN_RANK = b"agentmesh/tasks-rank/1\x00"


@dataclass(frozen=True, slots=True)
class TasksGenesis:
    """Who orders task entries (the PBFT committee) and who was there at the start."""

    mesh: str
    members: tuple[str, ...]  # sorted
    committee: tuple[str, ...]  # primary-rotation order

    @property
    def genesis_id(self) -> bytes:
        hasher = hashlib.sha256(_DOMAIN_GENESIS + self.mesh.encode() + b"\x00")
        for group in (self.members, self.committee):
            hasher.update(struct.pack(">I", len(group)))
            for peer in group:
                hasher.update(peer.encode() + b"\x00")
        return hasher.digest()

    def consensus_committee(self) -> Committee:
        return Committee(0, self.committee)


def tasks_genesis(
    mesh: str,
    roles_allowed: Mapping[str, tuple[str, ...]],
    committee_size_max: int = COMMITTEE_SIZE_DEFAULT,
) -> TasksGenesis:
    """The committee of validator-eligible members, ranked by a hash of the whole member list.

    Its own domain separates it from the rounds committee, so the two PBFT
    instances of one mesh spread their primaries over different agents.
    """
    ids = tuple(sorted(roles_allowed))
    salt = hashlib.sha256("\x00".join(ids).encode()).digest()
    eligible = [p for p in ids if "validator" in roles_allowed[p]]
    size = committee_size(len(eligible), committee_size_max)
    if size < 1:
        raise RolesError("no member may validate: the mesh cannot order tasks")
    ranked = sorted(
        eligible, key=lambda p: hashlib.sha256(_DOMAIN_RANK + salt + p.encode()).digest()
    )
    return TasksGenesis(mesh, ids, tuple(ranked[:size]))
