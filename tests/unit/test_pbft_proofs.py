"""Pure parts of consensus: certificates, committee selection, the new-view plan, durability."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from agentmesh.core.consensus.committee import (
    Committee,
    CommitteeError,
    decode_committee_entry,
    encode_committee_entry,
    select_committee,
)
from agentmesh.core.consensus.durable import (
    DurableState,
    PersistNewView,
    PersistPrepared,
    PersistStable,
    PersistVote,
)
from agentmesh.core.consensus.messages import (
    KIND_COMMIT,
    KIND_PREPARE,
    NULL_DIGEST,
    CheckpointProof,
    CommitCertificate,
    Entry,
    NewView,
    PreparedProof,
    PrePrepare,
    Snapshot,
    ViewChange,
    Vote,
    batch_digest,
    signed_payload,
)
from agentmesh.core.consensus.proofs import (
    new_view_plan,
    verify_certificate,
    verify_prepared_proof,
    verify_view_change,
)
from agentmesh.core.consensus.testing import FakeKeyring
from agentmesh.core.identity import Identity, verify_from_peer_id

KEYS = FakeKeyring(b"unit")
COMMITTEE = Committee(0, ("a", "b", "c", "d"))
DIGEST = batch_digest((Entry("task", b"x"),))


def certificate(signers: list[str], digest: bytes = DIGEST, seq: int = 5) -> CommitCertificate:
    payload = signed_payload(KIND_COMMIT, 0, 1, seq, digest)
    return CommitCertificate(
        0, 1, seq, digest, tuple((s, KEYS.signer(s).sign(payload)) for s in signers)
    )


def test_quorum_and_f_follow_n_3f_plus_1() -> None:
    sizes = {4: (1, 3), 7: (2, 5), 10: (3, 7), 100: (33, 67), 5: (1, 4)}
    for n, (f, quorum) in sizes.items():
        committee = Committee(0, tuple(f"p{i}" for i in range(n)))
        assert (committee.f, committee.quorum) == (f, quorum)
        assert 2 * committee.quorum - n >= committee.f + 1  # two quorums share an honest member


def test_certificate_accepts_a_quorum_and_rejects_the_rest() -> None:
    assert verify_certificate(certificate(["a", "b", "c"]), COMMITTEE, KEYS.verify)
    assert not verify_certificate(certificate(["a", "b"]), COMMITTEE, KEYS.verify)
    assert not verify_certificate(certificate(["a", "b", "b"]), COMMITTEE, KEYS.verify)
    assert not verify_certificate(certificate(["a", "b", "x"]), COMMITTEE, KEYS.verify)
    forged = certificate(["a", "b", "c"])
    bad = CommitCertificate(0, 1, 5, DIGEST, (*forged.signatures[:2], ("c", b"\x00" * 16)))
    assert not verify_certificate(bad, COMMITTEE, KEYS.verify)
    moved = CommitCertificate(0, 1, 6, DIGEST, forged.signatures)  # signatures for seq 5
    assert not verify_certificate(moved, COMMITTEE, KEYS.verify)
    assert not verify_certificate(forged, Committee(1, COMMITTEE.members), KEYS.verify)
    assert not verify_certificate("not a certificate", COMMITTEE, KEYS.verify)


def test_certificate_with_real_ed25519_identities() -> None:
    identities = [Identity.from_seed(bytes([i]) * 32) for i in range(4)]
    committee = Committee(0, tuple(i.peer_id for i in identities))
    payload = signed_payload(KIND_COMMIT, 0, 0, 1, DIGEST)
    cert = CommitCertificate(
        0, 0, 1, DIGEST, tuple((i.peer_id, i.sign(payload)) for i in identities[:3])
    )
    assert verify_certificate(cert, committee, verify_from_peer_id)
    tampered = CommitCertificate(0, 0, 1, NULL_DIGEST, cert.signatures)
    assert not verify_certificate(tampered, committee, verify_from_peer_id)


def test_select_committee_is_pure_deterministic_and_score_weighted() -> None:
    candidates = {f"p{i}": (100 if i < 5 else 1) for i in range(20)}
    first = select_committee(candidates, b"r1", 4)
    assert first == select_committee(dict(reversed(list(candidates.items()))), b"r1", 4)
    assert len(set(first)) == 4
    picks: Counter[str] = Counter()
    for k in range(300):
        picks.update(select_committee(candidates, k.to_bytes(4, "big"), 4))
    strong = sum(picks[f"p{i}"] for i in range(5))
    assert strong > 0.8 * sum(picks.values())  # 5 of 20 hold ~96% of the weight
    assert len({select_committee(candidates, bytes([k]), 4) for k in range(20)}) > 1
    with pytest.raises(CommitteeError):
        select_committee({"a": 1}, b"r", 2)


def test_committee_entry_round_trips_and_rejects_garbage() -> None:
    body = encode_committee_entry({"a": 3, "b": 5, "c": 1, "d": 9}, 4)
    assert decode_committee_entry(body) == ({"a": 3, "b": 5, "c": 1, "d": 9}, 4)
    for bad in (b"", b"\xff", encode_committee_entry({"a": 1}, 1)[:-1]):
        assert decode_committee_entry(bad) is None
    assert (
        decode_committee_entry(encode_committee_entry({"a": 1}, 1).replace(b"\x01", b"\x00"))
        is None
    )


def _pp(
    view: int, seq: int, batch: tuple[Entry, ...], committee: Committee = COMMITTEE
) -> PrePrepare:
    sender = committee.primary(view)
    digest = batch_digest(batch)
    unsigned = PrePrepare(0, view, seq, digest, batch, sender, b"")
    return PrePrepare(
        0, view, seq, digest, batch, sender, KEYS.signer(sender).sign(unsigned.payload())
    )


def _prepared(view: int, seq: int, batch: tuple[Entry, ...]) -> PreparedProof:
    pp = _pp(view, seq, batch)
    backups = [m for m in COMMITTEE.members if m != pp.sender][:2]
    prepares = tuple(
        Vote(
            KIND_PREPARE,
            0,
            view,
            seq,
            pp.digest,
            b,
            KEYS.signer(b).sign(signed_payload(KIND_PREPARE, 0, view, seq, pp.digest)),
        )
        for b in backups
    )
    return PreparedProof(pp, prepares)


def _vc(sender: str, new_view: int, prepared: tuple[PreparedProof, ...]) -> ViewChange:
    start = CheckpointProof(0, 0, b"\x00" * 32, ())
    unsigned = ViewChange(0, new_view, start, prepared, sender, b"")
    return ViewChange(
        0, new_view, start, prepared, sender, KEYS.signer(sender).sign(unsigned.payload())
    )


def test_prepared_proof_needs_quorum_minus_one_backup_prepares() -> None:
    proof = _prepared(0, 1, (Entry("t", b"1"),))
    assert verify_prepared_proof(proof, COMMITTEE, KEYS.verify)
    short = PreparedProof(proof.pre_prepare, proof.prepares[:1])
    assert not verify_prepared_proof(short, COMMITTEE, KEYS.verify)
    primary_vote = Vote(KIND_PREPARE, 0, 0, 1, proof.pre_prepare.digest, "a", b"x")
    assert not verify_prepared_proof(
        PreparedProof(proof.pre_prepare, (primary_vote, proof.prepares[0])), COMMITTEE, KEYS.verify
    )


def test_new_view_plan_keeps_the_highest_view_and_fills_gaps_with_null() -> None:
    old = _prepared(0, 1, (Entry("t", b"old"),))
    newer = _prepared(1, 1, (Entry("t", b"new"),))
    third = _prepared(1, 3, (Entry("t", b"three"),))
    vcs = (_vc("b", 2, (old,)), _vc("c", 2, (newer, third)), _vc("d", 2, ()))
    for vc in vcs:
        assert verify_view_change(vc, COMMITTEE, 0, 64, KEYS.verify)
    checkpoint, plan = new_view_plan(vcs)
    assert checkpoint.seq == 0
    assert list(plan) == [1, 2, 3]
    assert plan[1] is not None and plan[1].batch == (Entry("t", b"new"),)
    assert plan[2] is None  # nobody prepared seq 2: the null request
    assert plan[3] is not None and plan[3].digest == third.pre_prepare.digest
    # a prepared certificate from a view not below the new view is refused
    assert not verify_view_change(_vc("b", 1, (newer,)), COMMITTEE, 0, 64, KEYS.verify)


def test_durable_state_reduces_records_and_prunes_at_checkpoints() -> None:
    state = DurableState(0, COMMITTEE.members)
    state.apply(PersistVote(KIND_PREPARE, 0, 3, DIGEST))
    state.apply(PersistVote(KIND_PREPARE, 0, 9, DIGEST))
    state.apply(PersistPrepared(_prepared(0, 3, (Entry("t", b"1"),))))
    copy = state.copy()
    snap = Snapshot(0, 8, b"\x01" * 32, COMMITTEE.members, 0)
    state.apply(PersistStable(CheckpointProof(0, 8, b"\x02" * 32, ()), snap, 0))
    assert list(state.votes) == [(KIND_PREPARE, 0, 9)] and not state.prepared
    assert len(copy.votes) == 2 and 3 in copy.prepared  # the copy is independent
    nv = NewView(0, 2, (), (), "c", b"")
    state.apply(PersistNewView(nv))
    assert state.view == 2 and not state.votes  # votes of older views are never needed again


def test_random_committees_and_random_signers_never_break_certificates() -> None:
    rng = random.Random(7)
    for _ in range(50):
        n = rng.choice((4, 7, 10))
        committee = Committee(0, tuple(f"m{i}" for i in range(n)))
        signers = rng.sample(committee.members, rng.randint(0, n))
        payload = signed_payload(KIND_COMMIT, 0, 0, 1, DIGEST)
        cert = CommitCertificate(
            0, 0, 1, DIGEST, tuple((s, KEYS.signer(s).sign(payload)) for s in signers)
        )
        assert verify_certificate(cert, committee, KEYS.verify) == (
            len(signers) >= committee.quorum
        )
