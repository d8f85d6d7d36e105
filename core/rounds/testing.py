"""`RoundsNet`: agents (PBFT replica + round machine) wired in memory with a virtual clock.

The pair tests' harness, and a model of what the edge host does: decided
batches go to the round machine, committee members push each decided batch
with its certificate to the non-members (a `StateReply` their observer replica
verifies), `propose` events go to the replica, `train` events complete after a
virtual training time with a deterministic fake delta. With `epochs=True` every
agent also runs an `EpochTracker` like the host: validators propose a
`rounds_epoch` entry once the membership (`net.membership` minus crashed
agents, a perfect failure detector) differs from the committed view, the
replica reconfigures on it and the round machine takes the epoch's roles.
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
from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.node import Event, Send
from agentmesh.core.roles import RolesConfig

from .config import RoundsConfig
from .entries import (
    KIND_RESULT,
    EntryError,
    RoundResult,
    consensus_entry_validator,
    decode_entry,
    sign_result,
)
from .epochs import KIND_EPOCH, EpochTracker, decode_epoch_entry, make_view
from .machine import RoundsMachine
from .roles import Genesis, genesis_roles

ALL_ROLES = ("trainer", "aggregator", "validator")
Filter = Callable[[str, str, Any], bool]  # (sender, target, message) -> deliver?


def initial_model(params: int) -> bytes:
    return np.linspace(-1.0, 1.0, params, dtype=np.float32).astype("<f4").tobytes()


def fake_caps(roles: tuple[str, ...] = ALL_ROLES) -> Capabilities:
    """A laptop-like advert (every role eligible if `roles` allows it)."""
    return Capabilities(cpu_cores=4, cpu_load_permille=100, ram_total_mb=8192, ram_free_mb=4096,
                        battery_percent=None, accelerators=(), trainer_runtime="numpy",
                        link_bandwidth_kbps=100_000, device_class="laptop",
                        roles_allowed=roles)  # fmt: skip


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
    epochs: EpochTracker | None = None
    certifiers: tuple[str, ...] = ()


class RoundsNet:
    """N agents; the first `committee_size` ranked ids validate (see roles.genesis_roles)."""

    def __init__(
        self,
        size: int,
        config: RoundsConfig,
        seed: int = 1,
        train_ms: int = 50,
        committee_size: int = 4,
        epochs: bool = False,
        epoch_stable_ms: int = 200,
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
        # gateway -> {device: its delta for a round}: offered when the gateway's training ends
        self.devices: dict[str, dict[str, Callable[[int], bytes]]] = {}
        self.nodes: dict[str, Node] = {}
        self.seed = seed
        self.epochs = epochs
        self.epoch_stable_ms = epoch_stable_ms
        self.roles_config = RolesConfig(validators_target=committee_size)
        self.membership: dict[str, Capabilities] = {peer: fake_caps() for peer in self.ids}
        self.genesis_view = make_view(0, self.membership)
        for peer in self.ids:
            self._make_node(peer)
        for peer in self.ids:
            self._start_node(peer)

    def _make_node(self, peer: str) -> None:
        signer = self.keyring.signer(peer)
        tracker = None
        if self.epochs:
            tracker = EpochTracker(self.genesis_view, self.roles_config, self.epoch_stable_ms,
                                   retry_ms=2_000)  # fmt: skip
        replica = Replica(signer, self.keyring.verify, self.genesis.consensus_committee(),
                          random.Random(f"{self.seed}/{peer}"),
                          ConsensusConfig(view_change_timeout_ms=300),
                          validate_entry=self._validate_entry,
                          reconfigure=None if tracker is None else tracker.reconfigure)  # fmt: skip
        rounds = RoundsMachine(signer, self.keyring.verify, self.genesis, self.config, self.model,
                               random.Random(f"{self.seed}/{peer}/r"))  # fmt: skip
        self.nodes[peer] = Node(peer, replica, rounds, epochs=tracker,
                                certifiers=self.genesis.committee)  # fmt: skip

    def _start_node(self, peer: str) -> None:
        node = self.nodes[peer]
        node.replica.start(self.now_ms)
        node.rounds.start(self.now_ms)
        self._drain(peer)

    def _validate_entry(self, entry: Entry) -> bool:
        if entry.kind == KIND_EPOCH:
            try:
                decode_epoch_entry(entry, self.roles_config)
            except EntryError:
                return False
            return self.epochs
        return consensus_entry_validator(entry)

    def join(self, peer: str, roles: tuple[str, ...] = ALL_ROLES) -> None:
        """A new agent: an observer of the genesis committee that replays the decided log."""
        self.ids.append(peer)
        self.membership[peer] = fake_caps(roles)
        self._make_node(peer)
        self._start_node(peer)

    def leave(self, peer: str) -> None:
        """A graceful leave: gone from everyone's membership view (and stopped)."""
        self.membership.pop(peer, None)
        self.down.add(peer)

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
        if item.kind == "epoch":
            assert node.epochs is not None
            data = item.data
            roles = node.epochs.on_epoch(data["epoch"], data["start_seq"], data["members"])
            node.certifiers = roles.committee
            node.rounds.set_epoch(roles, self.now_ms)
            return
        if item.kind != "decided":
            return
        entries = item.data["entries"]
        if node.epochs is not None:
            node.epochs.on_decided(item.data["seq"], item.data["digest"])
        if node.peer in node.certifiers:  # the batch's committee, not the one it elected
            push = StateReply(
                (CertifiedBatch(entries, item.data["certificate"]),), None, None, None
            )
            for peer in self.ids:
                if peer not in node.certifiers:
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
                rounds = self.nodes[peer].rounds
                for device, device_delta in sorted(self.devices.get(peer, {}).items()):
                    signer = self.keyring.signer(device)
                    update = device_delta(round_number)
                    rounds.on_device_trained(round_number, signer, update, 20, self.now_ms)
                delta = fake_delta(peer, round_number, self.config.params)
                rounds.on_trained(round_number, delta, 10, self.now_ms)
                self._drain(peer)
        for peer, node in self.nodes.items():
            if peer in self.down:
                continue
            self._maybe_propose_epoch(node)
            for machine in (node.replica, node.rounds):
                deadline = machine.next_deadline()
                if deadline is not None and deadline <= self.now_ms:
                    machine.tick(self.now_ms)
            self._drain(peer)

    def _maybe_propose_epoch(self, node: Node) -> None:
        if node.epochs is None or not node.replica.is_member:
            return
        local = {p: c for p, c in self.membership.items() if p not in self.down}
        entry = node.epochs.proposal(local, self.now_ms)
        if entry is not None:
            node.replica.propose(entry, self.now_ms)

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
