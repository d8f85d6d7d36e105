"""`RoundsNet`: agents (PBFT replica + round machine) wired in memory with a virtual clock.

The pair tests' harness, and a model of what the edge host does: decided
batches go to the round machine, committee members push each decided batch
with its certificate to the non-members (a `StateReply` their observer replica
verifies), `propose` events go to the replica, `train` events complete after a
virtual training time with a deterministic fake delta.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agentmesh.core.consensus import ConsensusConfig, Entry, Replica
from agentmesh.core.consensus.messages import CertifiedBatch, StateReply
from agentmesh.core.consensus.testing import FakeKeyring
from agentmesh.core.node import Event, Send

from .config import RoundsConfig
from .entries import (
    KIND_RESULT,
    RoundResult,
    consensus_entry_validator,
    decode_entry,
    sign_result,
)
from .machine import RoundsMachine
from .roles import Genesis, genesis_roles

ALL_ROLES = ("trainer", "aggregator", "validator")
Filter = Callable[[str, str, Any], bool]  # (sender, target, message) -> deliver?


def initial_model(params: int) -> bytes:
    return np.linspace(-1.0, 1.0, params, dtype=np.float32).astype("<f4").tobytes()


def fake_delta(peer: str, round_number: int, params: int) -> bytes:
    seed = int.from_bytes(hashlib.sha256(f"{peer}/{round_number}".encode()).digest()[:8], "big")
    values = np.random.default_rng(seed).normal(0.0, 0.01, params).astype(np.float32)
    return values.astype("<f4").tobytes()


@dataclass
class Node:
    peer: str
    replica: Replica
    rounds: RoundsMachine
    events: list[Event] = field(default_factory=list)


class RoundsNet:
    """N agents; the first `committee_size` ranked ids validate (see roles.genesis_roles)."""

    def __init__(
        self,
        size: int,
        config: RoundsConfig,
        seed: int = 1,
        train_ms: int = 50,
        committee_size: int = 4,
    ) -> None:
        self.keyring = FakeKeyring(b"roundsnet")
        self.ids = [f"a{i}" for i in range(size)]
        self.config = config
        self.train_ms = train_ms
        self.model = initial_model(config.params)
        self.genesis: Genesis = genesis_roles(
            "test", dict.fromkeys(self.ids, ALL_ROLES),
            hashlib.sha256(self.model).digest(), committee_size,
        )  # fmt: skip
        self.now_ms = 0
        self.queue: deque[tuple[str, str, str, Any]] = deque()
        self.trainings: list[tuple[int, str, int]] = []  # (done_ms, peer, round)
        self.down: set[str] = set()
        self.filter: Filter | None = None
        self.tamper: set[str] = set()  # aggregators that lie about their result
        self.nodes: dict[str, Node] = {}
        consensus = ConsensusConfig(view_change_timeout_ms=300)
        for peer in self.ids:
            signer = self.keyring.signer(peer)
            replica = Replica(signer, self.keyring.verify, self.genesis.consensus_committee(),
                              random.Random(f"{seed}/{peer}"), consensus,
                              validate_entry=consensus_entry_validator)  # fmt: skip
            rounds = RoundsMachine(signer, self.keyring.verify, self.genesis, config, self.model,
                                   random.Random(f"{seed}/{peer}/r"))  # fmt: skip
            self.nodes[peer] = Node(peer, replica, rounds)
        for peer in self.ids:
            node = self.nodes[peer]
            node.replica.start(0)
            node.rounds.start(0)
            self._drain(peer)

    # -- the host's rules -----------------------------------------------------------------

    def _drain(self, peer: str) -> None:
        node = self.nodes[peer]
        for _ in range(64):
            replica_out = node.replica.take_outbox()
            rounds_out = node.rounds.take_outbox()
            if not replica_out and not rounds_out:
                break
            for item in replica_out:
                self._replica_output(node, item)
            for item in rounds_out:
                self._rounds_output(node, item)
        node.replica.check_invariants()
        node.rounds.check_invariants()

    def _replica_output(self, node: Node, item: Send | Event) -> None:
        if isinstance(item, Send):
            self.queue.append((node.peer, item.to, "pbft", item.message))
            return
        if item.kind != "decided":
            return
        entries = item.data["entries"]
        if node.peer in self.genesis.committee:
            push = StateReply(
                (CertifiedBatch(entries, item.data["certificate"]),), None, None, None
            )
            for peer in self.ids:
                if peer not in self.genesis.committee:
                    self.queue.append((node.peer, peer, "pbft", push))
        node.rounds.on_decided(entries, self.now_ms)

    def _rounds_output(self, node: Node, item: Send | Event) -> None:
        if isinstance(item, Send):
            self.queue.append((node.peer, item.to, "rounds", item.message))
            return
        node.events.append(item)
        if item.kind == "send_blob":
            self.queue.append((node.peer, item.data["to"], "blob", item.data["data"]))
        elif item.kind == "propose":
            node.replica.propose(self._maybe_tamper(node, item.data["entry"]), self.now_ms)
        elif item.kind == "train":
            self.trainings.append((self.now_ms + self.train_ms, node.peer, item.data["round"]))

    def _maybe_tamper(self, node: Node, entry: Entry) -> Entry:
        if node.peer not in self.tamper or entry.kind != KIND_RESULT:
            return entry
        result = decode_entry(entry)
        assert isinstance(result, RoundResult)
        forged = bytes(32 - len(b"forged")) + b"forged"
        signer = self.keyring.signer(node.peer)
        lie = sign_result(signer, self.genesis.genesis_id, result.round, forged,
                          result.rule, result.contributors)  # fmt: skip
        return lie.entry()

    # -- driving --------------------------------------------------------------------------

    def deliver_all(self, steps_max: int = 100_000) -> None:
        for _ in range(steps_max):
            if not self.queue:
                return
            sender, target, kind, message = self.queue.popleft()
            if target in self.down or sender in self.down:
                continue
            if self.filter is not None and not self.filter(sender, target, message):
                continue
            node = self.nodes[target]
            if kind == "pbft":
                node.replica.receive(message, sender, self.now_ms)
            elif kind == "rounds":
                node.rounds.receive(message, sender, self.now_ms)
            else:
                node.rounds.on_blob(sender, message, self.now_ms)
            self._drain(target)

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        due = [t for t in self.trainings if t[0] <= self.now_ms]
        self.trainings = [t for t in self.trainings if t[0] > self.now_ms]
        for _, peer, round_number in due:
            if peer not in self.down:
                delta = fake_delta(peer, round_number, self.config.params)
                self.nodes[peer].rounds.on_trained(round_number, delta, 10, self.now_ms)
                self._drain(peer)
        for peer, node in self.nodes.items():
            if peer in self.down:
                continue
            for machine in (node.replica, node.rounds):
                deadline = machine.next_deadline()
                if deadline is not None and deadline <= self.now_ms:
                    machine.tick(self.now_ms)
            self._drain(peer)

    def run(self, ms: int, step_ms: int = 10) -> None:
        for _ in range(max(1, ms // step_ms)):
            self.deliver_all()
            self.advance(step_ms)
        self.deliver_all()

    def crash(self, peer: str) -> None:
        self.down.add(peer)

    def events(self, peer: str, kind: str) -> list[dict[str, Any]]:
        return [dict(e.data) for e in self.nodes[peer].events if e.kind == kind]

    def committed(self, peer: str) -> list[tuple[int, bytes]]:
        return [(e["round"], e["model"]) for e in self.events(peer, "round_committed")]
