"""The gossip machine alone: spreading, pulling, bounds, bad input, durable state."""

from __future__ import annotations

import random

import pytest

from agentmesh.core.gossip import Digest, GossipConfig, GossipNode, Push
from agentmesh.core.limits import GossipLimits
from agentmesh.core.node import ContractError, InvariantViolation, Send

PEERS = ["a", "b", "c", "d"]


def _node(node_id: str = "a", **config: object) -> GossipNode:
    node = GossipNode(node_id, random.Random(node_id), PEERS, GossipConfig(**config))  # type: ignore[arg-type]
    node.start(0)
    return node


def _sends(node: GossipNode) -> list[Send]:
    return [item for item in node.take_outbox() if isinstance(item, Send)]


def test_originated_rumor_is_pushed_to_fanout_peers_for_hot_rounds() -> None:
    node = _node(fanout=2, hot_rounds=2, pull_every_rounds=100)
    rumor = node.originate("hello", 0)
    assert rumor == ("a", 1)
    node.take_outbox()
    pushes = []
    for round_number in range(4):
        node.tick(node.next_deadline() or 0)
        pushes.append(_sends(node))
        assert round_number < 4
    assert [len(sends) for sends in pushes] == [2, 2, 0, 0]
    assert all(s.to != "a" and s.message == Push(((rumor, "hello"),)) for s in pushes[0])


def test_push_teaches_new_rumors_and_ignores_known_ones() -> None:
    node = _node("b")
    node.receive(Push(((("a", 1), "x"), (("a", 2), "y"))), "a", 5)
    assert node.known == {("a", 1): "x", ("a", 2): "y"}
    node.receive(Push(((("a", 1), "x"),)), "c", 6)
    assert len(node.known) == 2 and node.counters == {}
    node.receive(Push(((("a", 1), "forged"),)), "c", 7)
    assert node.known[("a", 1)] == "x" and node.counters["conflicting_rumor"] == 1
    node.check_invariants_full()


def test_digest_is_answered_with_what_the_requester_lacks() -> None:
    node = _node("b")
    node.receive(Push(((("a", 1), "x"), (("a", 2), "y"), (("c", 1), "z"))), "a", 5)
    node.take_outbox()
    node.receive(Digest((("a", 1),)), "d", 6)
    (reply,) = _sends(node)
    assert reply.to == "d" and set(reply.message.rumors) == {(("a", 2), "y"), (("c", 1), "z")}
    node.receive(Digest((("a", 2), ("c", 1))), "d", 7)
    assert _sends(node) == []


@pytest.mark.parametrize(
    "message",
    [
        "junk",
        Push("not a tuple"),
        Push(tuple((("a", k), "x") for k in range(1, 100))),
        Push((("not", "a", "pair"),)),
        Push(((["unhashable"], "x"),)),
        Push(((("a", 0), "x"),)),
        Push(((("a", 1), 5),)),
        Push(((("a", 1), "p" * 1000),)),
        Digest("nope"),
        Digest(((["x"], 1),)),
        Digest((("a", "not-int"),)),
    ],
)
def test_bad_messages_are_counted_and_dropped(message: object) -> None:
    node = _node("b")
    node.originate("mine", 0)
    node.take_outbox()
    node.receive(message, "evil", 3)
    assert sum(node.counters.values()) >= 1
    assert list(node.known) == [("b", 1)]
    node.check_invariants_full()


def test_rumor_table_is_bounded() -> None:
    node = _node("b", limits=GossipLimits(rumors_max=3))
    node.receive(Push(tuple((("a", k), "x") for k in range(1, 6))), "a", 1)
    assert len(node.known) == 3 and node.counters["rumors_dropped_full"] == 2
    assert node.originate("more", 2) is None


def test_durable_state_survives_a_rebuild_and_sequence_numbers_continue() -> None:
    node = _node("a")
    node.originate("one", 0)
    node.receive(Push(((("c", 1), "z"),)), "c", 1)
    state = node.durable_state()
    reborn = GossipNode("a", random.Random(2), PEERS, GossipConfig(), state)
    assert reborn.known == node.known and not reborn.hot
    assert reborn.originate("two", 5) == ("a", 2)


def test_invariants_catch_corrupted_state() -> None:
    node = _node("a")
    node.originate("one", 0)
    node.last_seq = 0  # as if a restart lost the counter
    with pytest.raises(InvariantViolation):
        node.check_invariants()
    other = _node("b")
    other.hot[("z", 9)] = 1
    with pytest.raises(InvariantViolation):
        other.check_invariants_full()


def test_bad_configuration_is_a_contract_error() -> None:
    with pytest.raises(ContractError):
        GossipConfig(round_ms=0)
    with pytest.raises(ContractError):
        _node("a").originate("p" * 1000, 0)
