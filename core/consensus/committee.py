"""The validator committee of an epoch and the pure rule that selects the next one.

Reconfiguration goes through consensus (docs/consensus.md): a decided entry of
kind `COMMITTEE_ENTRY_KIND` names the candidates and their capability scores;
after the batch holding it executes, the next epoch's committee is
`select_committee(candidates, randomness, size)` where `randomness` is derived
from the decided log itself, so every honest replica computes the same set.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass

from agentmesh.core.wire import cbor_pure

COMMITTEE_ENTRY_KIND = "committee"
CANDIDATES_MAX = 1024
SCORE_MAX = 1_000_000


class CommitteeError(ValueError):
    """A committee description that cannot be used (empty, duplicated, bad scores)."""


@dataclass(frozen=True, slots=True)
class Committee:
    """The ordered members of one epoch; order fixes the primary rotation (TOCS §4.1)."""

    epoch: int
    members: tuple[str, ...]

    def __post_init__(self) -> None:
        if not self.members or len(set(self.members)) != len(self.members):
            raise CommitteeError("a committee needs distinct members")

    @property
    def size(self) -> int:
        return len(self.members)

    @property
    def f(self) -> int:
        """Faults tolerated: the largest f with n >= 3f + 1."""
        return (len(self.members) - 1) // 3

    @property
    def quorum(self) -> int:
        """Smallest q with 2q - n >= f + 1: any two quorums share an honest replica."""
        return (len(self.members) + self.f + 2) // 2

    def primary(self, view: int) -> str:
        return self.members[view % len(self.members)]

    def __contains__(self, peer_id: object) -> bool:
        return peer_id in self.members


def _lottery_key(randomness: bytes, peer_id: str, score: int) -> float:
    """Efraimidis-Spirakis weighted sampling key u**(1/score), u uniform in (0, 1]."""
    raw = hashlib.sha256(randomness + peer_id.encode()).digest()
    uniform = (int.from_bytes(raw[:8], "big") + 1) / 2**64
    return math.log(uniform) / score  # log of u**(1/score); monotone, no underflow


def select_committee(
    candidates: Mapping[str, int], randomness: bytes, size: int
) -> tuple[str, ...]:
    """The `size` members drawn without replacement, weight = capability score.

    Pure and deterministic: same candidates and randomness, same ordered tuple.
    Ties (equal keys) break by peer id so the order is total.
    """
    if size < 1:
        raise CommitteeError("committee size must be >= 1")
    eligible = {peer: score for peer, score in candidates.items() if score > 0}
    if len(eligible) < size:
        raise CommitteeError(f"need {size} candidates with a positive score, got {len(eligible)}")
    ranked = sorted(
        eligible, key=lambda peer: (-_lottery_key(randomness, peer, eligible[peer]), peer)
    )
    return tuple(ranked[:size])


def encode_committee_entry(candidates: Mapping[str, int], size: int) -> bytes:
    """The body of a `committee` entry (deterministic CBOR)."""
    items = [[peer, score] for peer, score in sorted(candidates.items())]
    body: bytes = cbor_pure.encode({"size": size, "candidates": items})
    return body


def decode_committee_entry(body: bytes) -> tuple[dict[str, int], int] | None:
    """Candidates and size of a `committee` entry, or None if it is malformed."""
    try:
        value = cbor_pure.decode(body)
    except cbor_pure.CBORError:
        return None
    if type(value) is not dict or set(value) != {"size", "candidates"}:
        return None
    size, items = value["size"], value["candidates"]
    if type(size) is not int or type(items) is not list or not 1 <= size <= len(items):
        return None
    if len(items) > CANDIDATES_MAX:
        return None
    candidates: dict[str, int] = {}
    for item in items:
        if type(item) is not list or len(item) != 2:
            return None
        peer, score = item
        if type(peer) is not str or type(score) is not int or not 0 < score <= SCORE_MAX:
            return None
        candidates[peer] = score
    if len(candidates) != len(items) or sum(1 for s in candidates.values() if s > 0) < size:
        return None
    return candidates, size


def epoch_randomness(epoch: int, seq: int, chain_hash: bytes) -> bytes:
    """Committed randomness for the next epoch: every honest replica has the same chain."""
    return hashlib.sha256(
        b"epoch" + epoch.to_bytes(8, "big") + seq.to_bytes(8, "big") + chain_hash
    ).digest()
