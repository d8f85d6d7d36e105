"""One replica against hostile input: malformed, badly signed, conflicting, replayed, far-future."""

from __future__ import annotations

import dataclasses
import random

from agentmesh.core.consensus import ConsensusConfig, Entry
from agentmesh.core.consensus.committee import COMMITTEE_ENTRY_KIND, encode_committee_entry
from agentmesh.core.consensus.messages import (
    KIND_COMMIT,
    KIND_PREPARE,
    Checkpoint,
    CheckpointProof,
    FetchState,
    NewView,
    PrePrepare,
    Request,
    StateReply,
    ViewChange,
    Vote,
    batch_digest,
    signed_payload,
)
from agentmesh.core.consensus.testing import LocalNet
from agentmesh.core.identity import Identity, verify_from_peer_id
from agentmesh.core.node import Event

CONFIG = ConsensusConfig(
    checkpoint_interval=4,
    window=8,
    batch_entries_max=2,
    inflight_batches_max=2,
    retained_batches_max=8,
    pending_entries_max=16,
    future_views_max=4,
    view_change_timeout_ms=200,
)


def _vote(net: LocalNet, kind: bytes, sender: str, seq: int, digest: bytes, view: int = 0) -> Vote:
    sig = net.keyring.signer(sender).sign(signed_payload(kind, 0, view, seq, digest))
    return Vote(kind, 0, view, seq, digest, sender, sig)


def _pp(net: LocalNet, seq: int, body: bytes, view: int = 0) -> PrePrepare:
    batch = (Entry("task", body),)
    digest = batch_digest(batch)
    sender = net.committee.primary(view)
    unsigned = PrePrepare(0, view, seq, digest, batch, sender, b"")
    return PrePrepare(
        0, view, seq, digest, batch, sender, net.keyring.signer(sender).sign(unsigned.payload())
    )


def _evidence(outbox: list[object]) -> list[str]:
    return [o.data["reason"] for o in outbox if isinstance(o, Event) and o.kind == "evidence"]


def test_malformed_messages_are_counted_and_dropped_never_raised() -> None:
    net = LocalNet(4, CONFIG)
    replica = net.replicas["r1"]
    rng = random.Random(3)
    junk: list[object] = [
        None,
        7,
        b"bytes",
        "text",
        {"a": 1},
        Request("not an entry"),  # type: ignore[arg-type]
        Request(Entry("t" * 200, b"")),
        Request(Entry("task", b"x" * (CONFIG.entry_body_bytes_max + 1))),
        PrePrepare(0, -1, 1, b"d" * 32, (), "r0", b"s"),
        PrePrepare(0, 0, 1, b"short", (), "r0", b"s"),
        PrePrepare(0, 0, 1, b"d" * 32, tuple(Entry("t", b"") for _ in range(99)), "r0", b"s"),
        Vote(b"XX", 0, 0, 1, b"d" * 32, "r2", b"s"),
        Vote(KIND_PREPARE, 0, 0, 2**70, b"d" * 32, "r2", b"s"),
        Vote(KIND_PREPARE, 0, 0, 1, b"d" * 32, "", b""),
        Checkpoint(0, 1, b"x", "r2", b"s"),
        ViewChange(0, 1, "no proof", (), "r2", b"s"),  # type: ignore[arg-type]
        NewView(0, 1, ("x",), (), "r1", b"s"),  # type: ignore[arg-type]
        FetchState(-1, 0),
        StateReply(("x",), None, None, None),  # type: ignore[arg-type]
        StateReply((), CheckpointProof(0, 99, b"x", ()), "snap", None),  # type: ignore[arg-type]
    ]
    for _ in range(200):
        junk.append(
            Vote(
                rng.choice([KIND_PREPARE, KIND_COMMIT]),
                rng.randint(0, 2),
                rng.randint(0, 3),
                rng.randint(0, 40),
                rng.randbytes(rng.choice([31, 32])),
                rng.choice(["r0", "r2", "zz"]),
                rng.randbytes(16),
            )
        )
    for message in junk:
        replica.receive(message, "r2", 0)
        replica.check_invariants()
    replica.take_outbox()
    dropped = sum(
        v
        for k, v in replica.counters.items()
        if k.startswith(
            (
                "malformed",
                "dropped",
                "evidence",
                "not_from",
                "vote_outside",
                "other_epoch",
                "wrong_view",
                "prepare_from",
            )
        )
    )
    assert dropped >= len(junk) - 5
    assert not replica.last_executed


def test_bad_signatures_conflicting_votes_and_equivocation_become_evidence() -> None:
    net = LocalNet(4, CONFIG)
    replica = net.replicas["r1"]
    good = _vote(net, KIND_PREPARE, "r2", 1, b"a" * 32)
    replica.receive(dataclasses.replace(good, signature=b"\x00" * 16), "r2", 0)
    replica.receive(good, "r2", 0)
    replica.receive(_vote(net, KIND_PREPARE, "r2", 1, b"b" * 32), "r2", 0)
    replica.receive(_pp(net, 1, b"one"), "r0", 0)
    replica.receive(_pp(net, 1, b"two"), "r0", 0)
    reasons = _evidence(replica.take_outbox())
    assert reasons == ["bad_signature", "conflicting_vote", "equivocation"]


def test_pending_requests_are_bounded() -> None:
    net = LocalNet(4, CONFIG)
    replica = net.replicas["r2"]
    for i in range(CONFIG.pending_entries_max + 10):
        replica.receive(Request(Entry("task", b"%d" % i)), "r3", 0)
    assert len(replica.pending) == CONFIG.pending_entries_max
    assert replica.counters["dropped_request_queue_full"] == 10


def test_far_future_views_and_replays_after_garbage_collection_are_dropped() -> None:
    net = LocalNet(4, CONFIG)
    replica = net.replicas["r1"]
    start = CheckpointProof(0, 0, b"\x00" * 32, ())
    for view in (CONFIG.future_views_max + 1, 2**40):
        unsigned = ViewChange(0, view, start, (), "r2", b"")
        vc = dataclasses.replace(
            unsigned, signature=net.keyring.signer("r2").sign(unsigned.payload())
        )
        replica.receive(vc, "r2", 0)
    assert replica.counters["view_change_too_far_ahead"] == 2 and not replica.view_changes
    recorded: list[tuple[str, str, object]] = []
    for i in range(12):
        net.propose("r1", Entry("task", b"%d" % i))
        recorded.extend(net.queue)
        net.run(40)
    assert replica.stable.seq >= 4
    before = replica.last_executed
    for sender, target, message in recorded:
        if target == "r1":
            replica.receive(message, sender, net.now_ms)
    assert replica.last_executed == before
    assert all(replica.in_window(seq) for seq in replica.slots)


def test_real_ed25519_identities_reach_decisions() -> None:
    identities = [Identity.from_seed(bytes([i + 1]) * 32) for i in range(4)]
    net = LocalNet(4, CONFIG, signers=identities, verify=verify_from_peer_id)  # type: ignore[arg-type]
    for i in range(3):
        net.propose(net.ids[1], Entry("task", b"%d" % i))
    net.run(100)
    logs = [net.decided(peer) for peer in net.ids]
    assert logs[0] and all(log == logs[0] for log in logs)


def test_reconfiguration_through_consensus_moves_to_the_next_epoch() -> None:
    net = LocalNet(5, CONFIG, committee_size=4)  # r4 starts as an observer
    scores = {peer: 10 for peer in net.ids}
    scores["r0"] = 1  # weak: most likely dropped from the next committee
    net.propose("r1", Entry(COMMITTEE_ENTRY_KIND, encode_committee_entry(scores, 4)))
    net.run(200)
    epochs = {peer: [e.data for e in net.events[peer] if e.kind == "epoch"] for peer in net.ids[:4]}
    members = {tuple(e[0]["members"]) for e in epochs.values()}
    assert len(members) == 1  # every replica derived the same committee
    new_members = members.pop()
    for i in range(4):
        net.propose(new_members[0], Entry("task", b"after-%d" % i))
        net.run(100)
    for peer in new_members:
        decided = [e.data for e in net.events[peer] if e.kind == "decided"]
        assert any(d["epoch"] == 1 for d in decided), peer
    assert net.replicas[new_members[0]].epoch == 1


def test_not_yet_valid_entries_hold_the_pre_prepare_until_a_recheck() -> None:
    ready = {"flag": False}

    def validator(entry: Entry) -> bool | None:
        if entry.body == b"bad":
            return False
        return True if ready["flag"] or entry.body != b"later" else None

    net = LocalNet(4, CONFIG)
    for peer in net.ids:
        net.replicas[peer].validate_entry = validator
    net.propose("r0", Entry("task", b"later"))
    net.deliver_all()
    assert not net.decided("r1")
    assert all(net.replicas[p].held for p in ("r1", "r2", "r3"))
    ready["flag"] = True
    for peer in ("r1", "r2", "r3"):
        net.replicas[peer].recheck(net.now_ms)
        net._drain(peer)
    net.deliver_all()
    assert len(net.decided("r1")) == 1 and not net.replicas["r1"].held
    net.propose("r0", Entry("task", b"bad"))  # the primary itself refuses an invalid entry
    assert not net.replicas["r0"].pending


def test_votes_that_can_change_nothing_are_not_verified() -> None:
    """A PREPARE after the slot committed, a COMMIT after it was certified: no verify call."""
    net = LocalNet(4, CONFIG)
    replica = net.replicas["r1"]
    calls: list[str] = []
    verify = replica.verify

    def counting(peer_id: str, data: bytes, signature: bytes) -> bool:
        calls.append(peer_id)
        return bool(verify(peer_id, data, signature))

    replica.verify = counting
    pp = _pp(net, 1, b"one")
    replica.receive(pp, "r0", 0)
    replica.receive(_vote(net, KIND_PREPARE, "r2", 1, pp.digest), "r2", 0)  # prepared: commits
    replica.receive(_vote(net, KIND_COMMIT, "r2", 1, pp.digest), "r2", 0)
    replica.receive(_vote(net, KIND_COMMIT, "r3", 1, pp.digest), "r3", 0)  # certified: executes
    assert replica.last_executed == 1
    verified = len(calls)
    late_prepare = _vote(net, KIND_PREPARE, "r3", 1, pp.digest)
    late_commit = _vote(net, KIND_COMMIT, "r0", 1, pp.digest)
    replica.receive(dataclasses.replace(late_prepare, signature=b"\x00" * 16), "r3", 0)
    replica.receive(late_commit, "r0", 0)
    assert len(calls) == verified
    assert replica.counters["late_vote_ignored"] == 2
    assert "bad_signature" not in _evidence(replica.take_outbox())
