"""Membership epochs (core/rounds/epochs.py): entries, validation, roles, proposals."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import pytest

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.committee import select_committee
from agentmesh.core.roles import RolesConfig, assignment_digest
from agentmesh.core.rounds.entries import EntryError
from agentmesh.core.rounds.epochs import (
    KIND_EPOCH,
    EpochTracker,
    committee_change,
    decode_epoch_entry,
    epoch_roles,
    make_view,
)
from agentmesh.core.rounds.testing import fake_caps
from agentmesh.core.wire import cbor_pure

CONFIG = RolesConfig(validators_target=4)
PEERS = [f"peer-{i}" for i in range(5)]


def view(epoch: int = 1, peers: list[str] = PEERS):  # type: ignore[no-untyped-def]
    return make_view(epoch, {p: fake_caps() for p in peers})


def randomness(label: str = "r") -> bytes:
    return hashlib.sha256(label.encode()).digest()


def test_an_entry_round_trips_and_drops_addresses() -> None:
    adverts = {p: replace(fake_caps(), address="127.0.0.1:7447") for p in reversed(PEERS)}
    made = make_view(3, adverts)
    decoded = decode_epoch_entry(made.entry(), CONFIG)
    assert decoded == made
    assert decoded.peers == tuple(sorted(PEERS))
    assert all(caps.address is None for _, caps in decoded.members)


def test_same_inputs_same_assignment_whatever_the_order() -> None:
    forward = make_view(2, {p: fake_caps() for p in PEERS})
    backward = make_view(2, {p: fake_caps() for p in reversed(PEERS)})
    a = epoch_roles(forward, randomness(), CONFIG)
    b = epoch_roles(decode_epoch_entry(backward.entry(), CONFIG), randomness(), CONFIG)
    assert assignment_digest(a.assignment) == assignment_digest(b.assignment)
    assert a == b
    other = epoch_roles(forward, randomness("other"), CONFIG)
    assert other.cohort == a.cohort  # every member may train
    assert len(a.committee) == 4 and set(a.committee) <= set(PEERS)
    assert a.aggregators[0] in PEERS and len(set(a.aggregators)) == len(a.aggregators)


def test_the_replica_draw_equals_the_roles_committee() -> None:
    current = view()
    candidates, size = committee_change(current, CONFIG)
    for label in ("a", "b", "c", "d"):
        drawn = select_committee(candidates, randomness(label), size)
        assert drawn == epoch_roles(current, randomness(label), CONFIG).committee


def test_roles_allowed_are_honoured() -> None:
    adverts = {p: fake_caps() for p in PEERS}
    adverts["peer-0"] = fake_caps(("trainer", "aggregator"))
    adverts["peer-1"] = fake_caps(("validator",))
    roles = epoch_roles(make_view(1, adverts), randomness(), CONFIG)
    assert "peer-0" not in roles.committee and "peer-0" in roles.cohort
    assert "peer-1" not in roles.cohort and "peer-1" not in roles.aggregators
    candidates, _ = committee_change(make_view(1, adverts), CONFIG)
    assert "peer-0" not in candidates


def body_of(epoch: object, members: object) -> Entry:
    return Entry(KIND_EPOCH, cbor_pure.encode({"epoch": epoch, "members": members}))


def test_invalid_entries_are_rejected() -> None:
    good = [[p, fake_caps().to_wire()] for p in PEERS]
    cases = {
        "epoch 0": body_of(0, good),
        "unsorted": body_of(1, list(reversed(good))),
        "duplicate": body_of(1, [good[0], good[0]]),
        "bad caps": body_of(1, [[PEERS[0], {"cores": 1}]]),
        "address": body_of(1, [[PEERS[0], replace(fake_caps(), address="1.2.3.4:5").to_wire()]]),
        "nobody validates": body_of(
            1, [[p, fake_caps(("trainer", "aggregator")).to_wire()] for p in PEERS]
        ),
        "nobody trains": body_of(
            1, [[p, fake_caps(("validator", "aggregator")).to_wire()] for p in PEERS]
        ),
        "empty": body_of(1, []),
        "extra key": Entry(KIND_EPOCH, cbor_pure.encode({"epoch": 1, "members": good, "x": 1})),
        "not cbor": Entry(KIND_EPOCH, b"\xff\x00"),
        "other kind": Entry("round_start", body_of(1, good).body),
    }
    for name, entry in cases.items():
        with pytest.raises(EntryError):
            decode_epoch_entry(entry, CONFIG)
            pytest.fail(name)
    assert decode_epoch_entry(body_of(1, good), CONFIG).epoch == 1


def test_only_the_next_epoch_number_reconfigures() -> None:
    tracker = EpochTracker(view(0), CONFIG, stable_ms=100, retry_ms=1000)
    assert tracker.reconfigure(view(2).entry(), epoch=0) is None  # early
    assert tracker.reconfigure(view(1).entry(), epoch=1) is None  # stale
    assert tracker.reconfigure(Entry(KIND_EPOCH, b"junk"), epoch=0) is None
    assert tracker.rejected == 1
    change = tracker.reconfigure(view(1).entry(), epoch=0)
    assert change is not None and change[1] == 4
    assert tracker.reconfigure(Entry("round_start", b""), epoch=0) is None


def test_a_join_produces_exactly_one_epoch_proposal_after_the_stable_period() -> None:
    tracker = EpochTracker(view(0, PEERS[:4]), CONFIG, stable_ms=100, retry_ms=1000)
    same = {p: fake_caps() for p in PEERS[:4]}
    assert tracker.proposal(same, 0) is None
    joined = {**same, PEERS[4]: fake_caps()}
    assert tracker.proposal(joined, 10) is None  # not stable yet
    entry = tracker.proposal(joined, 110)
    assert entry is not None
    proposed = decode_epoch_entry(entry, CONFIG)
    assert proposed.epoch == 1 and proposed.peers == tuple(PEERS)
    assert tracker.proposal(joined, 200) is None  # once per epoch number until retry_ms
    assert tracker.proposal(joined, 1200) == entry  # not decided: the same entry again

    # Decided: the replica calls reconfigure, then the host feeds the epoch event.
    change = tracker.reconfigure(entry, epoch=0)
    assert change is not None
    tracker.on_decided(7, b"\x01" * 32)
    members = select_committee(change[0], _randomness_after(7, b"\x01" * 32), change[1])
    roles = tracker.on_epoch(1, 7, members)
    assert roles.epoch == 1 and PEERS[4] in roles.cohort
    assert tracker.committed.peers == tuple(PEERS)
    assert tracker.proposal(joined, 5000) is None  # nothing left to change


def _randomness_after(seq: int, digest: bytes) -> bytes:
    from agentmesh.core.consensus.committee import epoch_randomness
    from agentmesh.core.consensus.messages import GENESIS_CHAIN, chain_next

    return epoch_randomness(0, seq, chain_next(GENESIS_CHAIN, seq, digest))


def test_volatile_drift_never_triggers_but_policy_changes_do() -> None:
    tracker = EpochTracker(view(0), CONFIG, stable_ms=0, retry_ms=1000)
    busy = {p: replace(fake_caps(), cpu_load_permille=300, ram_free_mb=3000) for p in PEERS}
    assert tracker.proposal(busy, 0) is None
    restricted = {**busy, PEERS[0]: fake_caps(("trainer",))}
    entry = tracker.proposal(restricted, 1)
    assert entry is not None
    proposed = decode_epoch_entry(entry, CONFIG).adverts
    assert proposed[PEERS[0]].roles_allowed == ("trainer",)
    assert proposed[PEERS[1]].cpu_load_permille == 100  # drift under the thresholds: settled


def test_a_view_that_cannot_staff_rounds_is_never_proposed() -> None:
    tracker = EpochTracker(view(0), CONFIG, stable_ms=0, retry_ms=1000)
    only_trainers = {p: fake_caps(("trainer",)) for p in PEERS}
    assert tracker.proposal(only_trainers, 0) is None
    assert tracker.proposal({}, 1) is None
