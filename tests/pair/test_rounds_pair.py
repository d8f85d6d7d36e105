"""Round machines + PBFT replicas wired in memory (RoundsNet): the round protocol's cases."""

from __future__ import annotations

import hashlib

from agentmesh.core.rounds import RoundsConfig, aggregate_model, aggregator_order
from agentmesh.core.rounds.testing import RoundsNet, fake_delta

PARAMS = 64


def config(**changes: object) -> RoundsConfig:
    values: dict[str, object] = {"params": PARAMS, "rounds_total": 3, "window_ms": 400,
                                 "takeover_ms": 300, "abort_after_ms": 2000}  # fmt: skip
    values.update(changes)
    return RoundsConfig(**values)  # type: ignore[arg-type]


def agreed_log(net: RoundsNet) -> list[tuple[int, bytes]]:
    """The committed (round, model) log; asserts every live agent holds the same one."""
    live = [p for p in net.ids if p not in net.down]
    first = net.committed(live[0])
    for peer in live:
        assert net.committed(peer) == first, f"{peer} disagrees with {live[0]}"
    return first


def test_rounds_complete_and_every_agent_commits_the_same_recomputable_models() -> None:
    net = RoundsNet(8, config())
    net.run(3000)
    log = agreed_log(net)
    assert [r for r, _ in log] == [1, 2, 3]
    # Round 1 from first principles: FedAvg of every agent's delta over the initial model.
    inputs = [(fake_delta(p, 1, PARAMS), 10) for p in sorted(net.ids)]
    expected = aggregate_model(net.model, inputs, net.config.rule, PARAMS)
    assert log[0][1] == hashlib.sha256(expected).digest()
    for peer in net.ids:
        committed = net.events(peer, "round_committed")
        assert all(len(e["contributors"]) == 8 for e in committed)
        assert all(len(e["validators"]) >= net.genesis.vote_quorum for e in committed)
        # every agent ends up holding (and so can serve) each committed model
        models = {e["model"] for e in net.events(peer, "model")}
        assert {m for _, m in log} <= models
        assert net.nodes[peer].rounds.finished
    assert net.events(net.ids[0], "finished")


def test_a_missing_trainer_is_closed_out_by_the_deadline() -> None:
    net = RoundsNet(8, config(rounds_total=1))
    straggler = next(p for p in net.ids if p not in net.genesis.committee
                     and p not in aggregator_order(net.genesis, 1)[:2])  # fmt: skip
    net.crash(straggler)
    net.run(300)
    assert not agreed_log(net), "nobody may close the cohort before the deadline"
    net.run(1500)
    (committed,) = net.events(net.genesis.committee[0], "round_committed")
    trainers = [t for t, _ in committed["contributors"]]
    assert straggler not in trainers and len(trainers) == 7
    assert [r for r, _ in agreed_log(net)] == [1]


def test_a_dead_aggregator_is_replaced_by_the_next_in_order() -> None:
    net = RoundsNet(8, config(rounds_total=1))
    first, second = aggregator_order(net.genesis, 1)[:2]
    net.crash(first)
    net.run(3000)
    log = agreed_log(net)
    assert [r for r, _ in log] == [1]
    (committed,) = net.events(second, "round_committed")
    assert committed["aggregator"] == second


def test_an_aggregate_validators_cannot_reproduce_never_commits() -> None:
    net = RoundsNet(8, config(rounds_total=1))
    liar, honest = aggregator_order(net.genesis, 1)[:2]
    net.tamper.add(liar)
    net.run(3000)
    log = agreed_log(net)
    assert len(log) == 1
    (committed,) = net.events(net.ids[0], "round_committed")
    assert committed["aggregator"] == honest, "the forged result must not commit"
    assert log[0][1] != bytes(26) + b"forged"
    refusals = sum(
        net.nodes[p].rounds.counters.get("refused_irreproducible_result", 0)
        for p in net.genesis.committee
    )
    assert refusals >= len(net.genesis.committee) - (liar in net.genesis.committee)


def test_a_round_that_cannot_finish_is_aborted_by_a_decided_entry() -> None:
    # Nobody can gather more contributors than there are trainers: the round must abort.
    net = RoundsNet(5, config(rounds_total=2, contributors_min=6))
    net.run(6000)
    assert not agreed_log(net)
    for peer in net.ids:
        aborted = [e["round"] for e in net.events(peer, "round_aborted")]
        assert aborted == [1, 2], f"{peer} aborted {aborted}"
        assert net.nodes[peer].rounds.finished
        assert net.nodes[peer].rounds.current is None
