"""The membership machine alone: admission gate, bounds, invariants, commands."""

from __future__ import annotations

import random

import pytest

from agentmesh.core.admission import PskPolicy
from agentmesh.core.membership import (
    ALIVE,
    Ack,
    Alive,
    Gossip,
    JoinHello,
    MembershipConfig,
    MembershipMachine,
    Ping,
)
from agentmesh.core.membership.table import VIA_SNAPSHOT, Member, MembershipSnapshot
from agentmesh.core.node import ContractError, InvariantViolation, Send

POLICY = PskPolicy("lab", b"k" * 32)


def machine(members: int = 3, **config: int) -> MembershipMachine:
    snapshot = MembershipSnapshot(
        {f"n{i}": Member(f"n{i}", ALIVE, 0, None, 0, VIA_SNAPSHOT) for i in range(members)}
    )
    node = MembershipMachine(
        "n0", random.Random(1), POLICY, config=MembershipConfig(**config), snapshot=snapshot
    )
    node.start(0)
    return node


def sends(node: MembershipMachine) -> list[Send]:
    return [item for item in node.take_outbox() if isinstance(item, Send)]


def test_snapshot_restores_without_bumping_an_alive_incarnation() -> None:
    node = machine()
    assert node.incarnation == 0 and node.live_count == 3
    node.check_invariants_full()


def test_updates_from_non_members_are_dropped_and_counted() -> None:
    node = machine()
    node.receive(Gossip((Alive("intruder-friend", 0),)), "intruder", 10)
    assert node.member("intruder-friend") is None
    assert node.counters["updates_from_non_member"] == 1


def test_non_member_ping_gets_a_bare_ack() -> None:
    node = machine()
    node.receive(Alive("n1", 1), "n1", 0)  # not a message type: dropped, counted
    node.receive(Gossip((Alive("n5", 0),)), "n1", 0)  # a member vouches for n5
    node.take_outbox()
    node.receive(Ping(7, "n0", (Alive("stranger", 0),)), "stranger", 5)
    (reply,) = sends(node)
    assert reply.to == "stranger" and reply.message == Ack(7, ())
    assert node.member("stranger") is None and node.member("n5") is not None
    assert node.counters["drop_unknown_message"] == 1


def test_members_table_is_bounded() -> None:
    node = machine(members=3, members_max=4)
    node.receive(Gossip((Alive("n7", 0), Alive("n8", 0))), "n1", 0)
    assert node.members_count == 4 and node.counters["members_full_drop"] == 1
    node.check_invariants_full()


def test_pending_joins_are_bounded() -> None:
    node = machine(pending_joins_max=2)
    for index in range(4):
        node.receive(JoinHello("lab", bytes([index]) * 16), f"joiner{index}", 0)
    assert node.counters["pending_joins_full_drop"] == 2
    node.check_invariants()


def test_invariants_catch_a_corrupted_table() -> None:
    node = machine()
    node._members["ghost"] = Member("ghost", ALIVE, 0, None, 0, "hearsay")
    with pytest.raises(InvariantViolation):
        node.check_invariants_full()
    node = machine()
    node.incarnation += 1  # own record no longer matches
    with pytest.raises(InvariantViolation):
        node.check_invariants()


def test_join_needs_a_seed_and_discovery_starts_one() -> None:
    lonely = MembershipMachine("solo", random.Random(2), POLICY)
    lonely.start(0)
    with pytest.raises(ContractError):
        lonely.join(["solo"], 0)
    lonely.add_discovered("peer", 10)
    (hello,) = sends(lonely)
    assert hello.to == "peer" and isinstance(hello.message, JoinHello)
    assert lonely.member("peer") is None  # discovered is not admitted


def test_ping_for_someone_else_is_not_acked() -> None:
    node = machine()
    node.receive(Ping(1, "n2", ()), "n1", 0)
    assert sends(node) == [] and node.counters["ping_misdelivered"] == 1
