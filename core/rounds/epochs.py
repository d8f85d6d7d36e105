"""Membership epochs: the committed view, the roles it implies and when to propose a new one.

After the genesis, the committee decides `rounds_epoch` entries: the next epoch
number and every serving member's capabilities (its settled advert, without the
address). The first decided entry numbered `epoch + 1` is the committed view of
that epoch; it also reconfigures the PBFT committee at the end of its batch
(`Replica(reconfigure=...)`). Every agent then derives the epoch's roles with
`core.roles.assign_roles` over that view, with the same committed randomness the
replica used to draw its committee (`epoch_randomness` of the decided hash
chain), so the rounds' validators are exactly the new PBFT committee. The round
machine switches to them at the next round start. See docs/roles.md.

    rounds_epoch {epoch, members: [[peer id, capabilities wire map], ...] sorted}

Validators propose an entry when their own membership view (alive or suspect
members with adverts) has differed from the committed one for `stable_ms`: a
member joined or went (left, confirmed dead), or a discrete capability changed
(hardware, allowed roles, battery across its Schmitt trigger). Volatile drift
(load, free RAM, bandwidth) rides along with the next entry but never triggers
one, so a busy mesh does not reconfigure on every training step.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.committee import epoch_randomness
from agentmesh.core.consensus.messages import GENESIS_CHAIN, chain_next
from agentmesh.core.entry_fields import EntryError
from agentmesh.core.entry_fields import items as _items
from agentmesh.core.entry_fields import peer as _peer
from agentmesh.core.entry_fields import uint as _uint
from agentmesh.core.membership.capabilities import AdvertError, Capabilities
from agentmesh.core.roles import (
    Assignment,
    RolesConfig,
    RolesError,
    assign_roles,
    capability_score,
    change_reason,
    committee_size,
    may_aggregate,
    may_train,
    may_validate,
    settle,
)
from agentmesh.core.wire import cbor_pure

from .entries import COHORT_MAX

KIND_EPOCH = "rounds_epoch"
EPOCH_MAX = 2**32 - 1
# change_reason answers that start a new epoch on their own (volatile ones do not).
_TRIGGERING_REASONS = frozenset({"hardware or policy", "battery"})

Change = tuple[dict[str, int], int]
_DECIDED_VIEWS_MAX = 16  # decided views whose epoch event the host has not handled yet


@dataclass(frozen=True, slots=True)
class EpochView:
    """A membership view: epoch number and each member's capabilities, sorted by peer id."""

    epoch: int
    members: tuple[tuple[str, Capabilities], ...]

    @property
    def adverts(self) -> dict[str, Capabilities]:
        return dict(self.members)

    @property
    def peers(self) -> tuple[str, ...]:
        return tuple(peer for peer, _ in self.members)

    def entry(self) -> Entry:
        body = {"epoch": self.epoch,
                "members": [[peer, caps.to_wire()] for peer, caps in self.members]}  # fmt: skip
        return Entry(KIND_EPOCH, cbor_pure.encode(body))


@dataclass(frozen=True, slots=True)
class EpochRoles:
    """What the round machine needs from an epoch's assignment."""

    epoch: int
    committee: tuple[str, ...]  # PBFT members in primary-rotation order
    cohort: tuple[str, ...]  # trainers, sorted
    aggregators: tuple[str, ...]  # first-tier seats, then standbys: the takeover chain
    assignment: Assignment


def make_view(epoch: int, adverts: Mapping[str, Capabilities]) -> EpochView:
    """The view of `adverts` (addresses dropped: they never affect roles)."""
    members = tuple((peer, replace(adverts[peer], address=None)) for peer in sorted(adverts))
    return EpochView(epoch, members)


def decode_epoch_entry(entry: Entry, config: RolesConfig) -> EpochView:
    """The view in a `rounds_epoch` entry; EntryError if malformed or it cannot staff rounds."""
    if entry.kind != KIND_EPOCH:
        raise EntryError(f"not an epoch entry: {entry.kind!r:.40}")
    try:
        body = cbor_pure.decode(entry.body)
    except cbor_pure.CBORError as error:
        raise EntryError(f"epoch body is not deterministic CBOR: {error}") from error
    if type(body) is not dict or set(body) != {"epoch", "members"}:
        raise EntryError("an epoch entry is {epoch, members}")
    epoch = _uint(body["epoch"], EPOCH_MAX)
    if epoch < 1:
        raise EntryError("epoch entries count from 1 (0 is the genesis)")
    members: list[tuple[str, Capabilities]] = []
    for item in _items(body["members"], COHORT_MAX):
        pair = _items(item, 2)
        if len(pair) != 2:
            raise EntryError("a member is [peer id, capabilities]")
        try:
            caps = Capabilities.from_wire(pair[1])
        except AdvertError as error:
            raise EntryError(f"bad capabilities: {error}") from error
        if caps.address is not None:
            raise EntryError("capabilities in an epoch entry carry no address")
        members.append((_peer(pair[0]), caps))
    peers = [peer for peer, _ in members]
    if peers != sorted(set(peers)):
        raise EntryError("members must be sorted and distinct")
    view = EpochView(epoch, tuple(members))
    staffing_problem(view, config)
    return view


def staffing_problem(view: EpochView, config: RolesConfig) -> None:
    """EntryError unless the view has a trainer, an aggregator and a validator."""
    caps = [c for _, c in view.members]
    if not any(may_train(c) for c in caps):
        raise EntryError("no member may train")
    if not any(may_aggregate(c, config) for c in caps):
        raise EntryError("no member may aggregate")
    if not any(may_validate(c, config) and capability_score(c) > 0 for c in caps):
        raise EntryError("no member may validate")


def committee_change(view: EpochView, config: RolesConfig) -> Change:
    """Candidates (every eligible validator with its score) and size for the replica.

    `select_committee(candidates, r, size)` is the draw `assign_roles` makes with
    randomness r (docs/roles.md), so the PBFT committee equals the roles' committee.
    """
    candidates = {
        peer: capability_score(caps)
        for peer, caps in view.members
        if may_validate(caps, config) and capability_score(caps) > 0
    }
    return candidates, committee_size(config.validators_target, len(candidates))


def epoch_roles(view: EpochView, randomness: bytes, config: RolesConfig) -> EpochRoles:
    """The roles of `view`'s epoch: a pure function of the view and committed randomness."""
    members = {peer: "alive" for peer in view.peers}
    assignment = assign_roles(members, view.adverts, randomness, config, epoch=view.epoch)
    first_tier = assignment.aggregator_seats[0] if assignment.aggregator_seats else ()
    return EpochRoles(
        epoch=view.epoch,
        committee=assignment.committee,
        cohort=assignment.trainers,
        aggregators=(*first_tier, *assignment.standbys),
        assignment=assignment,
    )


def differs(committed: EpochView, local: Mapping[str, Capabilities], config: RolesConfig) -> bool:
    """Does the local view call for a new epoch? Joins, leaves or discrete capability changes."""
    old = committed.adverts
    if set(old) != set(local):
        return True
    return any(change_reason(old[p], local[p], config) in _TRIGGERING_REASONS for p in old)


class EpochTracker:
    """One agent's committed view, the decided hash chain and its epoch proposals (pure).

    The host feeds it, in log order, the replica's reconfigure calls
    (`reconfigure`), every decided batch (`on_decided`) and every epoch event
    (`on_epoch`); `proposal` says what this validator should propose, if anything.
    """

    def __init__(
        self, genesis_view: EpochView, config: RolesConfig, stable_ms: int, retry_ms: int
    ) -> None:
        self.config = config
        self.committed = genesis_view
        self.stable_ms = stable_ms
        self.retry_ms = retry_ms
        self.chain = GENESIS_CHAIN
        self.roles: EpochRoles | None = None
        self.rejected = 0
        self._decided_views: dict[int, EpochView] = {}
        self._differs_since: int | None = None
        self._proposed: tuple[int, int] | None = None  # (target epoch, at ms)

    def reconfigure(self, entry: Entry, epoch: int) -> Change | None:
        """`Replica(reconfigure=...)`: the first well-formed entry numbered epoch + 1 wins."""
        if entry.kind != KIND_EPOCH:
            return None
        try:
            view = decode_epoch_entry(entry, self.config)
        except EntryError:
            self.rejected += 1
            return None
        if view.epoch != epoch + 1:
            return None  # stale or early: only the next epoch number counts
        # Several epochs may execute in one replica step before the host sees their events.
        self._decided_views[view.epoch] = view
        while len(self._decided_views) > _DECIDED_VIEWS_MAX:
            del self._decided_views[min(self._decided_views)]
        return committee_change(view, self.config)

    def on_decided(self, seq: int, digest: bytes) -> None:
        self.chain = chain_next(self.chain, seq, digest)

    def on_epoch(self, epoch: int, start_seq: int, members: tuple[str, ...]) -> EpochRoles:
        """The replica changed epoch after `start_seq`: derive the roles (same randomness)."""
        view = self._decided_views.pop(epoch)
        randomness = epoch_randomness(epoch - 1, start_seq, self.chain)
        roles = epoch_roles(view, randomness, self.config)
        if roles.committee != tuple(members):
            raise RolesError("the roles' committee differs from the replica's")
        self.committed, self.roles = view, roles
        self._differs_since, self._proposed = None, None
        return roles

    def proposal(self, local: Mapping[str, Capabilities], now_ms: int) -> Entry | None:
        """The entry to propose now, if the local view has differed for `stable_ms`."""
        if not local or not differs(self.committed, local, self.config):
            self._differs_since = None
            return None
        if self._differs_since is None:
            self._differs_since = now_ms
        if now_ms - self._differs_since < self.stable_ms:
            return None
        target = self.committed.epoch + 1
        if self._proposed is not None and self._proposed[0] == target:
            if now_ms - self._proposed[1] < self.retry_ms:
                return None
        old = self.committed.adverts
        settled = {p: settle(old.get(p), caps, self.config) for p, caps in local.items()}
        view = make_view(target, settled)
        try:
            staffing_problem(view, self.config)
        except EntryError:
            return None  # nobody could run rounds in it: wait for the mesh to recover
        self._proposed = (target, now_ms)
        return view.entry()

    def status(self) -> dict[str, Any]:
        return {
            "epoch": self.committed.epoch,
            "members": list(self.committed.peers),
            "view_digest": hashlib.sha256(self.committed.entry().body).hexdigest()[:16],
            "rejected_entries": self.rejected,
        }
