"""Round entries, the PBFT wire form, roles and the arithmetic: pure functions, hostile input."""

from __future__ import annotations

import hashlib
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.messages import CommitCertificate, Request, StateReply, Vote
from agentmesh.core.consensus.testing import FakeKeyring
from agentmesh.core.rounds import (
    ComputeError,
    RuleConfig,
    aggregate_model,
    aggregator_order,
    committee_size,
    genesis_roles,
)
from agentmesh.core.rounds.entries import (
    KIND_ABORT,
    KIND_VALIDATE,
    EntryError,
    RoundStart,
    consensus_entry_validator,
    decode_entry,
    sign_offer,
    sign_result,
    sign_vote,
)
from agentmesh.core.rounds.pbft_wire import PbftWireError, from_wire, to_wire
from agentmesh.core.rounds.task import digits_split, flat_bytes, unflatten
from agentmesh.core.wire import cbor

KEYS = FakeKeyring(b"unit")
GENESIS = b"g" * 32


def test_entries_round_trip_and_signatures_bind_the_genesis() -> None:
    alice = KEYS.signer("alice")
    offer = sign_offer(alice, GENESIS, 3, b"d" * 32, 120)
    result = sign_result(KEYS.signer("agg"), GENESIS, 3, b"m" * 32, "fedavg", (offer,))
    vote = sign_vote(KEYS.signer("v"), GENESIS, KIND_VALIDATE, 3, b"m" * 32)
    abort = sign_vote(KEYS.signer("v"), GENESIS, KIND_ABORT, 3, b"")
    start = RoundStart(3, b"m" * 32, ("alice", "bob"), 3000)
    for item in (result, vote, abort, start):
        assert decode_entry(item.entry()) == item
    decoded = decode_entry(result.entry())
    assert decoded.payload(GENESIS) == result.payload(GENESIS)  # type: ignore[union-attr]
    assert offer.verify(GENESIS, KEYS.verify)
    assert not offer.verify(b"h" * 32, KEYS.verify), "another genesis must not accept it"
    assert KEYS.verify("agg", result.payload(GENESIS), result.signature)


@pytest.mark.parametrize(
    "entry",
    [
        Entry("round_start", b"\xff"),
        Entry("round_start", cbor.encode({"round": 0, "model": b"m" * 32, "cohort": [],
                                          "window_ms": 1})),
        Entry("round_validate", cbor.encode({"round": 1, "model": b"short", "validator": "v",
                                             "sig": b"s"})),
        Entry("round_result", cbor.encode({"round": 1})),
        Entry("round_abort", cbor.encode([1, 2, 3])),
    ],
)  # fmt: skip
def test_malformed_round_entries_are_typed_errors_and_invalid_for_consensus(entry: Entry) -> None:
    with pytest.raises(EntryError):
        decode_entry(entry)
    assert not consensus_entry_validator(entry)
    assert consensus_entry_validator(Entry("task", b"anything")), "other kinds are not ours"


@given(st.binary(max_size=200))
@settings(max_examples=200, deadline=None)
def test_arbitrary_bytes_never_escape_as_other_exceptions(body: bytes) -> None:
    for kind in ("round_start", "round_result", "round_validate", "round_abort"):
        try:
            decode_entry(Entry(kind, body))
        except EntryError:
            pass


def test_pbft_objects_survive_the_wire_form_exactly() -> None:
    vote = Vote(b"PR", 0, 1, 2, b"d" * 32, "r1", b"s" * 16)
    cert = CommitCertificate(0, 1, 2, b"d" * 32, (("r1", b"s"), ("r2", b"t")))
    reply = StateReply((), None, None, None)
    for message in (vote, cert, reply, Request(Entry("round_abort", b"x"))):
        assert from_wire(cbor.decode(cbor.encode(to_wire(message)))) == message


@pytest.mark.parametrize(
    "value",
    [None, [], [99], [3, b"PR"], [3, b"PR", 0, 1, 2, b"d", "r1", 5], "x", [1, "k", "not bytes"]],
)
def test_pbft_wire_rejects_malformed_values(value: object) -> None:
    with pytest.raises(PbftWireError):
        from_wire(value)


def test_committee_sizes_are_3f_plus_1_or_everyone() -> None:
    assert [committee_size(n) for n in (1, 2, 3, 4, 5, 8, 20)] == [1, 2, 3, 4, 4, 4, 4]
    assert committee_size(20, 10) == 10 and committee_size(9, 9) == 7


def test_genesis_is_a_pure_function_of_the_members() -> None:
    roles = ("trainer", "aggregator", "validator")
    members = {f"p{i}": roles for i in range(8)}
    shuffled = dict(sorted(members.items(), key=lambda _: random.random()))
    one = genesis_roles("m", members, b"i" * 32)
    two = genesis_roles("m", shuffled, b"i" * 32)
    assert one == two and one.genesis_id == two.genesis_id
    assert len(one.committee) == 4 and one.f == 1 and one.vote_quorum == 2
    assert aggregator_order(one, 1) == aggregator_order(two, 1)
    assert {aggregator_order(one, r)[0] for r in range(1, 30)} != {one.aggregators[0]}
    only_trainers = {**members, "p9": ("trainer",)}
    assert "p9" not in genesis_roles("m", only_trainers, b"i" * 32).committee
    assert genesis_roles("other", members, b"i" * 32).genesis_id != one.genesis_id


def test_aggregate_model_is_base_plus_the_rule_and_rejects_bad_inputs() -> None:
    base = np.arange(8, dtype=np.float32)
    deltas = [np.full(8, v, np.float32) for v in (1.0, 2.0, 100.0)]
    inputs = [(d.tobytes(), 1) for d in deltas]
    model = np.frombuffer(aggregate_model(base.tobytes(), inputs, RuleConfig("median"), 8), "<f4")
    assert np.array_equal(model, base + 2.0)
    fedavg = aggregate_model(base.tobytes(), [(d.tobytes(), 1) for d in deltas[:2]],
                             RuleConfig(), 8)  # fmt: skip
    assert np.array_equal(np.frombuffer(fedavg, "<f4"), base + 1.5)
    with pytest.raises(ComputeError):
        aggregate_model(base.tobytes(), [(b"\x00" * 4, 1)], RuleConfig(), 8)
    nan = np.full(8, np.nan, np.float32).tobytes()
    with pytest.raises(ComputeError):
        aggregate_model(base.tobytes(), [(nan, 1)], RuleConfig(), 8)
    with pytest.raises(ComputeError):
        aggregate_model(base.tobytes(), inputs[:2], RuleConfig("krum", f=1), 8)


def test_digits_split_matches_the_reference_and_generalizes() -> None:
    from agentmesh.tools.data import load_digits, load_digits8_split

    features, labels = load_digits()
    test, parts = digits_split(features, labels, 8, 0.5)
    reference = load_digits8_split()
    assert [len(p.labels) for p in parts] == [83, 119, 176, 97, 265, 217, 205, 275]
    assert np.array_equal(test.features, reference.test.features)
    _, four = digits_split(features, labels, 4, 1.0)
    assert len(four) == 4 and sum(len(p.labels) for p in four) == 1797 - 360
    shapes = ((2, 3), (3,))
    arrays = [np.ones((2, 3), np.float32), np.zeros(3, np.float32)]
    data = flat_bytes(arrays)
    assert (
        hashlib.sha256(data).digest()
        == hashlib.sha256(flat_bytes(unflatten(data, shapes))).digest()
    )
