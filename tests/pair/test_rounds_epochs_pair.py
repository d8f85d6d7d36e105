"""Membership epochs in memory (RoundsNet with epochs): join, leave and crash mid-run."""

from __future__ import annotations

import random

import pytest

from agentmesh.core.rounds import RoundsConfig
from agentmesh.core.rounds.testing import RoundsNet

PARAMS = 32


def config(rounds_total: int, contributors_min: int = 2) -> RoundsConfig:
    return RoundsConfig(params=PARAMS, rounds_total=rounds_total, window_ms=400,
                        takeover_ms=300, abort_after_ms=2000,
                        contributors_min=contributors_min)  # fmt: skip


def agreed(net: RoundsNet, peers: list[str]) -> list[tuple[int, bytes]]:
    first = net.committed(peers[0])
    for peer in peers:
        assert net.committed(peer) == first, f"{peer} disagrees with {peers[0]}"
    return first


def epochs_seen(net: RoundsNet, peer: str) -> list[int]:
    return [e["epoch"] for e in net.events(peer, "epoch")]


def contributors(net: RoundsNet, peer: str) -> dict[int, set[str]]:
    return {
        e["round"]: {trainer for trainer, _ in e["contributors"]}
        for e in net.events(peer, "round_committed")
    }


def test_without_churn_no_epoch_is_proposed() -> None:
    net = RoundsNet(4, config(3), epochs=True)
    net.run(3000)
    assert [r for r, _ in agreed(net, net.ids)] == [1, 2, 3]
    assert all(epochs_seen(net, p) == [] for p in net.ids)


def test_a_joiner_becomes_a_trainer_in_exactly_one_new_epoch_and_is_counted() -> None:
    net = RoundsNet(4, config(30), epochs=True)
    net.run(300)
    first_rounds = len(net.committed("a0"))
    assert first_rounds >= 1
    net.join("a4")
    net.run(6000)
    everyone = [*net.ids]
    log = agreed(net, everyone)  # the joiner replayed the whole log from its observer replica
    assert [r for r, _ in log] == list(range(1, 31))
    for peer in everyone:
        assert epochs_seen(net, peer) == [1], f"{peer}: {epochs_seen(net, peer)}"
    counted = [r for r, who in contributors(net, "a0").items() if "a4" in who]
    assert counted, "the joiner's updates must count in a later epoch"
    assert min(counted) > first_rounds
    node = net.nodes["a0"]
    assert node.epochs is not None and node.epochs.committed.peers == ("a0", "a1", "a2", "a3", "a4")
    committees = {tuple(net.nodes[p].replica.committee.members) for p in everyone}
    assert len(committees) == 1
    assert net.nodes["a4"].replica.epoch == 1


def test_a_leave_and_a_crash_each_make_one_epoch_and_rounds_continue() -> None:
    net = RoundsNet(6, config(40), epochs=True)
    net.run(300)
    net.leave("a5")
    net.run(1000)
    survivors = [p for p in net.ids if p != "a5"]
    assert all(epochs_seen(net, p) == [1] for p in survivors)
    victim = net.nodes["a0"].replica.committee.members[0]  # the primary of the new epoch
    net.crash(victim)
    net.membership.pop(victim)  # confirmed dead by the failure detector
    net.run(8000)
    live = [p for p in survivors if p != victim]
    log = agreed(net, live)
    assert [r for r, _ in log] == list(range(1, 41)), "no round lost to the churn"
    for peer in live:
        assert epochs_seen(net, peer) == [1, 2]
        node = net.nodes[peer]
        assert node.epochs is not None and victim not in node.epochs.committed.peers
        assert victim not in node.replica.committee
    late = [who for r, who in contributors(net, live[0]).items() if r >= 35]
    assert all(victim not in who and "a5" not in who for who in late)


def test_a_joiner_restricted_to_training_never_validates_or_aggregates() -> None:
    net = RoundsNet(4, config(30), epochs=True)
    net.run(300)
    net.join("a4", roles=("trainer",))  # agent join --roles trainer
    net.run(6000)
    assert [r for r, _ in agreed(net, net.ids)] == list(range(1, 31))
    (epoch,) = net.events("a0", "epoch")
    assert "a4" in epoch["cohort"]
    assert "a4" not in epoch["committee"] and "a4" not in epoch["aggregators"]
    assert any("a4" in who for who in contributors(net, "a0").values())
    assert not net.events("a4", "propose"), "a pure trainer proposes nothing"


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_seeded_churn_with_loss_never_forks_and_every_round_closes(seed: int) -> None:
    """Random joins, leaves and a crash at random times, 2% message loss: one log, no hang."""
    rng = random.Random(seed)
    net = RoundsNet(5, config(25), seed=seed, epochs=True)
    net.filter = lambda sender, target, message: rng.random() >= 0.02
    events = sorted(rng.sample(range(200, 3000, 50), 3))
    actions = ["join", "leave", "crash"]
    rng.shuffle(actions)
    at = 0
    for when, action in zip(events, actions, strict=True):
        net.run(when - at)
        at = when
        if action == "join":
            net.join("j0")
        else:
            candidates = [p for p in net.ids if p not in net.down and p != "j0"]
            victim = rng.choice(candidates[1:])  # keep a0 as the observer of record
            if action == "leave":
                net.leave(victim)
            else:
                net.crash(victim)
                net.membership.pop(victim)
    net.run(15000)
    live = [p for p in net.ids if p not in net.down]
    log = agreed(net, live)
    closed = {e["round"] for e in net.events("a0", "round_aborted")} | {r for r, _ in log}
    assert closed == set(range(1, 26)), f"seed {seed}: rounds {sorted(closed)}"
    epochs = {tuple(epochs_seen(net, p)) for p in live}
    assert len(epochs) == 1, f"seed {seed}: agents disagree on epochs {epochs}"
    assert len(next(iter(epochs))) <= 3, "at most one epoch per membership change"


def test_a_committee_of_one_decides() -> None:
    """n = 1 (f = 0): the primary's pre-prepare alone prepares (a shrunken mesh's epoch)."""
    net = RoundsNet(1, config(3, contributors_min=1), committee_size=1)
    net.run(2000)
    assert [r for r, _ in agreed(net, net.ids)] == [1, 2, 3]
