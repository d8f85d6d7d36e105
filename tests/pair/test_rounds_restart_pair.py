"""A restart in memory (RoundsNet with epochs): an agent crashes, keeps only what its host
persisted, rebuilds its replica and rounds state from it (core/rounds/replay.py) and goes
on with the others: the same log, the same models, its updates counted again."""

from __future__ import annotations

import random

import pytest

from agentmesh.core.consensus import ConsensusConfig, Replica
from agentmesh.core.consensus.durable import (
    PersistEpoch,
    PersistExecuted,
    PersistRecord,
    PersistStable,
)
from agentmesh.core.node import Event, Send
from agentmesh.core.rounds import RoundsConfig, RoundsMachine
from agentmesh.core.rounds.epochs import EpochTracker
from agentmesh.core.rounds.replay import KeptLog, reduce_records, replay_decided
from agentmesh.core.rounds.testing import Node, RoundsNet
from agentmesh.edge.replica_driver import UNWRITTEN_RECORDS_MAX

PARAMS = 32
_DEFERRABLE = (PersistExecuted, PersistStable)  # the host may lose these in a crash


class RestartNet(RoundsNet):
    """RoundsNet whose hosts keep each replica's persist records, to restart from them."""

    kept: dict[str, list[PersistRecord]]

    def _replica_output(self, node: Node, item: Send | Event) -> None:
        if isinstance(item, Event) and item.kind == "persist":
            self.__dict__.setdefault("kept", {}).setdefault(node.peer, []).extend(
                item.data["records"]
            )
        super()._replica_output(node, item)

    def crash_losing_tail(self, peer: str) -> int:
        """Stop `peer`, losing what its host may not have written: the deferrable records
        after its last forced write (ReplicaDriver forces one every UNWRITTEN_RECORDS_MAX)."""
        self.down.add(peer)
        records = self.kept[peer]
        keep = len(records)
        while (
            keep > 0
            and isinstance(records[keep - 1], _DEFERRABLE)
            and len(records) - keep < UNWRITTEN_RECORDS_MAX - 1
        ):
            keep -= 1
        lost = len(records) - keep
        del records[keep:]
        return lost

    def restart(self, peer: str) -> KeptLog:
        """What RoundsHost does: replica from the records, tracker and machine replayed."""
        old = self.nodes[peer]
        kept = reduce_records(self.kept[peer], self.genesis.consensus_committee())
        signer = self.keyring.signer(peer)
        tracker = EpochTracker(self.genesis_view, self.roles_config, self.epoch_stable_ms,
                               retry_ms=2_000)  # fmt: skip
        replica = Replica(signer, self.keyring.verify, self.genesis.consensus_committee(),
                          random.Random(f"{self.seed}/{peer}/restarted"),
                          ConsensusConfig(view_change_timeout_ms=300), kept.durable,
                          validate_entry=self._validate_entry,
                          reconfigure=tracker.reconfigure)  # fmt: skip
        rounds = RoundsMachine(signer, self.keyring.verify, self.genesis, self.config, self.model,
                               random.Random(f"{self.seed}/{peer}/r2"))  # fmt: skip
        node = Node(peer, replica, rounds, epochs=tracker, certifiers=self.genesis.committee)
        self.nodes[peer] = node

        def on_epoch(step: PersistEpoch) -> None:
            roles = tracker.on_epoch(step.epoch, step.start_seq, step.members)
            node.certifiers = roles.committee
            rounds.set_epoch(roles, self.now_ms)

        replay_decided(kept.steps, tracker, rounds, self.now_ms, on_epoch, lambda item: None)
        rounds.resume(self.now_ms)
        current = rounds.current
        for digest in {rounds.global_digest, current.base if current else b""}:
            data = old.rounds.models.get(digest)  # the host's blob store
            if data is not None:
                rounds.on_blob(peer, data, self.now_ms)
        self.down.discard(peer)
        self._start_node(peer)
        return kept


def config(rounds_total: int) -> RoundsConfig:
    return RoundsConfig(params=PARAMS, rounds_total=rounds_total, window_ms=400,
                        takeover_ms=300, abort_after_ms=2000, contributors_min=2)  # fmt: skip


def tracker(node: Node) -> EpochTracker:
    assert node.epochs is not None
    return node.epochs


def counted_after(net: RoundsNet, watcher: str, peer: str, after_round: int) -> list[int]:
    return [
        e["round"]
        for e in net.events(watcher, "round_committed")
        if e["round"] > after_round and peer in {t for t, _ in e["contributors"]}
    ]


# Down 800 ms: long enough for an epoch without it, short enough for the others to still
# retain the batches it missed (the limit of state transfer across epochs).
@pytest.mark.parametrize("down_ms", [100, 800], ids=["back-at-once", "dropped-by-an-epoch"])
@pytest.mark.parametrize("lose_tail", [False, True], ids=["all-written", "unwritten-tail-lost"])
def test_a_restarted_agent_replays_its_log_and_rejoins_rounds(
    down_ms: int, lose_tail: bool
) -> None:
    net = RestartNet(4, config(40), epochs=True)
    net.run(400)
    net.join("a4")  # epoch 1: a mesh past its genesis
    net.run(1500)
    victim, watcher = net.genesis.committee[1], net.genesis.committee[0]
    assert counted_after(net, watcher, victim, 0), "it trained before the crash"
    lost = net.crash_losing_tail(victim) if lose_tail else 0
    net.down.add(victim)
    closed_at_crash = net.nodes[victim].rounds.closed_round
    net.run(down_ms)
    if down_ms > 1000:  # its death was confirmed: an epoch without it
        assert victim not in tracker(net.nodes[watcher]).committed.peers
    kept = net.restart(victim)
    restarted = net.nodes[victim]
    assert kept.gaps == 0 and kept.batches > 0
    # The replay rebuilds what the persisted prefix implies (lost batches are fetched again).
    if not lose_tail:
        assert restarted.rounds.closed_round == closed_at_crash
    assert lost < UNWRITTEN_RECORDS_MAX
    assert restarted.rounds.closed_round <= closed_at_crash
    open_round = restarted.rounds.current.number if restarted.rounds.current else None
    net.run(6000)
    # The round open in its replayed log is sat out: it may have offered in it already.
    trained = [e["round"] for e in net.events(victim, "train")]
    assert open_round not in trained and trained, (open_round, trained)

    others = [p for p in net.ids if p != victim]
    final = {p: net.nodes[p] for p in net.ids}
    assert len({n.rounds.global_digest for n in final.values()}) == 1, "same global model"
    assert len({n.rounds.closed_round for n in final.values()}) == 1
    assert len({tracker(n).chain for n in final.values()}) == 1
    views = {tracker(n).committed for n in final.values()}
    assert len(views) == 1 and victim in next(iter(views)).peers, "back in the view"
    assert counted_after(net, watcher, victim, closed_at_crash), "counted again"
    seen = [(e.get("reason"), e.get("sender")) for p in others for e in net.events(p, "evidence")]
    assert not [s for s in seen if s[1] == victim], seen
    assert all(not n.replica.counters.get("evidence_equivocation") for n in final.values())
