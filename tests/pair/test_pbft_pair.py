"""PBFT replicas wired in memory (LocalNet): normal case, view change, checkpoints, restart."""

from __future__ import annotations

from agentmesh.core.consensus import ConsensusConfig, Entry, verify_certificate
from agentmesh.core.consensus.messages import PrePrepare, Vote
from agentmesh.core.consensus.testing import LocalNet

SMALL = ConsensusConfig(
    checkpoint_interval=4,
    window=8,
    batch_entries_max=2,
    inflight_batches_max=2,
    retained_batches_max=8,
    view_change_timeout_ms=200,
)


def entry(i: int) -> Entry:
    return Entry("task", b"entry-%d" % i)


def agreed(net: LocalNet, peers: list[str] | None = None) -> list[tuple[int, bytes]]:
    """The common decided log; asserts every listed replica holds the same one."""
    peers = peers or [p for p in net.ids if p not in net.down]
    logs = {peer: net.decided(peer) for peer in peers}
    first = logs[peers[0]]
    for peer, log in logs.items():
        assert log == first, f"{peer} decided {log} but {peers[0]} decided {first}"
    return first


def test_normal_case_decides_in_order_with_valid_certificates() -> None:
    net = LocalNet(4)
    for i in range(5):
        assert net.propose("r2", entry(i))
    net.run(50)
    log = agreed(net)
    assert [seq for seq, _ in log] == list(range(1, len(log) + 1))
    decided_entries = [
        e for ev in net.events["r3"] if ev.kind == "decided" for e in ev.data["entries"]
    ]
    assert sorted(decided_entries, key=lambda e: e.body) == [entry(i) for i in range(5)]
    for event in net.events["r1"]:
        if event.kind == "decided":
            assert verify_certificate(event.data["certificate"], net.committee, net.keyring.verify)


def test_persist_precedes_the_signed_messages_that_depend_on_it() -> None:
    net = LocalNet(4)
    replica = net.replicas["r1"]
    net.propose("r1", entry(1))
    net.deliver_all()
    # A fresh pre-prepare to r1 must yield persist(vote) before the prepare is sent.
    replica.receive(entry_pp(net, 2), "r0", net.now_ms)
    outbox = replica.take_outbox()
    kinds = [
        "persist" if getattr(o, "kind", None) == "persist" else type(o).__name__ for o in outbox
    ]
    assert kinds[0] == "persist" and "Send" in kinds
    assert kinds.index("persist") < kinds.index("Send")


def entry_pp(net: LocalNet, seq: int) -> PrePrepare:
    from agentmesh.core.consensus.messages import batch_digest

    batch = (entry(100 + seq),)
    digest = batch_digest(batch)
    unsigned = PrePrepare(0, 0, seq, digest, batch, "r0", b"")
    return PrePrepare(
        0, 0, seq, digest, batch, "r0", net.keyring.signer("r0").sign(unsigned.payload())
    )


def test_crashed_primary_is_replaced_by_a_view_change() -> None:
    net = LocalNet(4, SMALL)
    net.crash("r0")
    net.propose("r1", entry(1))
    net.run(1000)
    log = agreed(net)
    assert len(log) == 1
    assert all(net.replicas[p].view == 1 for p in ("r1", "r2", "r3"))
    assert any(e.kind == "new_view" for e in net.events["r2"])


def test_prepared_batch_survives_the_view_change() -> None:
    """Commits to r0..r2 are lost after r1..r3 prepared: the new view must keep the batch."""
    net = LocalNet(4, SMALL)
    net.filter = lambda sender, target, m: not (isinstance(m, Vote) and m.kind == b"CM")
    net.propose("r0", entry(7))
    net.deliver_all()
    assert all(net.replicas[p].durable.prepared for p in ("r1", "r2", "r3"))
    assert not any(net.decided(p) for p in net.ids)
    net.filter = None
    net.crash("r0")
    net.run(1500)
    log = agreed(net)
    decided = [e for ev in net.events["r1"] if ev.kind == "decided" for e in ev.data["entries"]]
    assert decided == [entry(7)] and len(log) == 1


def test_checkpoints_become_stable_and_collect_garbage() -> None:
    net = LocalNet(4, SMALL)
    for i in range(20):
        net.propose("r1", entry(i))
        net.run(20)
    log = agreed(net)
    assert sum(len(e.data["entries"]) for e in net.events["r0"] if e.kind == "decided") == 20
    for peer in net.ids:
        replica = net.replicas[peer]
        assert replica.stable.seq >= len(log) - SMALL.checkpoint_interval
        assert all(seq > replica.stable.seq for seq in replica.slots)
        assert all(key[2] > replica.stable.seq for key in replica.durable.votes)


def test_lagging_replica_catches_up_by_state_transfer() -> None:
    net = LocalNet(4, SMALL)
    net.crash("r3")
    for i in range(30):
        net.propose("r1", entry(i))
        net.run(20)
    assert len(net.decided("r0")) > SMALL.window
    net.restart("r3")
    net.run(500)
    for i in range(30, 34):
        net.propose("r1", entry(i))
    net.run(500)
    # r3 skipped part of the log through a checkpoint snapshot, then follows again.
    gap = [e for e in net.events["r3"] if e.kind == "state_gap"]
    tail0 = net.decided("r0")
    tail3 = net.decided("r3")
    assert gap or tail3 == tail0
    assert tail3[-1] == tail0[-1]
    assert dict(tail3).items() <= dict(tail0).items()


def test_restarted_replica_never_contradicts_what_it_signed() -> None:
    net = LocalNet(4, SMALL)
    net.propose("r0", entry(1))
    net.deliver_all()
    signed_before = dict(net.replicas["r2"].durable.votes)
    net.crash("r2")
    net.restart("r2")
    restarted = net.replicas["r2"]
    assert restarted.durable.votes == signed_before
    # A conflicting pre-prepare for a position r2 already prepared is refused.
    conflicting = entry_pp(net, 1)
    restarted.receive(conflicting, "r0", net.now_ms)
    outbox = restarted.take_outbox()
    assert not any(getattr(o, "message", None).__class__ is Vote for o in outbox)


def test_restarted_replica_catches_up_after_its_fetch_and_the_next_decisions_were_lost() -> None:
    """The QUIC restart race: peers keep sending on their connection to the dead process
    for a while, so the restarted replica's state reply and the next round are lost, and
    then nothing more is proposed. It must still learn what it missed."""
    net = LocalNet(4, SMALL)
    for i in range(3):
        net.propose("r1", entry(i))
        net.run(20)
    net.crash("r3")
    for i in range(3, 6):
        net.propose("r1", entry(i))
        net.run(20)
    net.filter = lambda sender, target, message: target != "r3"
    net.restart("r3")
    for i in range(6, 9):
        net.propose("r2", entry(i))
        net.run(20)
    net.run(200)
    net.filter = None
    assert net.decided("r3") != net.decided("r0")
    net.run(20_000)
    assert net.decided("r3")[-1] == net.decided("r0")[-1]
    assert dict(net.decided("r3")).items() <= dict(net.decided("r0")).items()
    idle = sum(net.replicas[p].counters.get("fetches_sent", 0) for p in net.ids)
    net.run(60_000)  # quiet: the polls back off
    idle = sum(net.replicas[p].counters.get("fetches_sent", 0) for p in net.ids) - idle
    assert idle <= 4 * 8
