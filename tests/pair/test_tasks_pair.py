"""Task replicas and machines wired in memory with a virtual clock: PBFT-ordered task entries,
capability-aware assignment, a worker killed midway, replicated and verifiable tasks."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from agentmesh.core.consensus import ConsensusConfig, Replica
from agentmesh.core.consensus.messages import KIND_COMMIT, CertifiedBatch, StateReply, Vote
from agentmesh.core.identity import Identity, verify_from_peer_id
from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.node import Event, Send
from agentmesh.core.rounds.pbft_wire import to_wire
from agentmesh.core.tasks import (
    DONE,
    Requirements,
    TasksConfig,
    TasksMachine,
    entry_validator,
    meets,
    sign_timeout,
    tasks_genesis,
)
from agentmesh.core.tasks.config import task_consensus_config
from agentmesh.core.wire import cbor
from agentmesh.edge.tasks_host import PBFT_TYPE

ROLES = ("trainer", "aggregator", "validator")


def caps(cls: str, ram_mb: int, cores: int, acc: tuple[str, ...] = (), rt: str = "litert"):
    return Capabilities(cores, 100, ram_mb, ram_mb // 2, None, acc, rt, 100_000, cls, ROLES)


FLEET = [
    caps("server", 65536, 16),
    caps("laptop", 16384, 8),
    caps("edge", 8192, 6, ("gpu",)),  # a Jetson
    caps("edge", 4096, 4, rt="numpy"),  # a Pi
    caps("edge", 2048, 4, rt="numpy"),
    caps("laptop", 8192, 4),
]


@dataclass
class Node:
    peer: str
    caps: Capabilities
    replica: Replica
    machine: TasksMachine
    runs: list[tuple[bytes, int, int]] = field(default_factory=list)
    finished: list[bytes] = field(default_factory=list)


class TasksNet:
    """The host's rules of edge/tasks_host.py, in memory: persist is ignored, runs are fake."""

    def __init__(
        self,
        fleet: list[Capabilities],
        run_ms: int = 30,
        seed: int = 1,
        committee_size: int = 4,
        consensus: ConsensusConfig | None = None,
        frame_bytes_max: int | None = None,
    ) -> None:
        self.identities = [Identity.from_seed(bytes([seed, k + 1]) * 16) for k in range(len(fleet))]
        self.ids = [i.peer_id for i in self.identities]
        self.genesis = tasks_genesis("test", dict.fromkeys(self.ids, ROLES), committee_size)
        self.now_ms = 0
        self.run_ms = run_ms
        self.queue: deque[tuple[str, str, Any]] = deque()
        self.pending_runs: list[tuple[int, str, dict[str, Any]]] = []
        self.down: set[str] = set()
        # As the agent does: a message too large for one tasks.pbft frame is never sent.
        self.frame_bytes_max = frame_bytes_max
        self.oversize: Counter[str] = Counter()
        self.withhold: Callable[[Any], bool] | None = None  # messages lost on the way
        self.nodes: dict[str, Node] = {}
        config = TasksConfig(deadline_ms_default=2_000, timeout_retry_ms=500,
                             readvertise_interval_ms=200)  # fmt: skip
        consensus = consensus or task_consensus_config(ConsensusConfig(view_change_timeout_ms=300))
        for k, identity in enumerate(self.identities):
            peer = identity.peer_id
            replica = Replica(identity, verify_from_peer_id, self.genesis.consensus_committee(),
                              random.Random(f"{seed}/{peer}"), consensus,
                              validate_entry=entry_validator(verify_from_peer_id))  # fmt: skip
            machine = TasksMachine(identity, verify_from_peer_id, random.Random(f"{seed}/{k}"),
                                   config, watchdog=peer in self.genesis.committee,
                                   committee=self.genesis.committee)  # fmt: skip
            self.nodes[peer] = Node(peer, fleet[k], replica, machine)
        for node in self.nodes.values():
            node.replica.start(0)
            node.machine.start(0)
            node.machine.advertise(node.caps, 0, 0)
            self._drain(node)

    def _drain(self, node: Node) -> None:
        for _ in range(256):
            replica_out, machine_out = node.replica.take_outbox(), node.machine.take_outbox()
            if not replica_out and not machine_out:
                break
            for item in replica_out:
                self._replica_output(node, item)
            for item in machine_out:
                self._machine_output(node, item)
        node.replica.check_invariants()
        node.machine.check_invariants()

    def _replica_output(self, node: Node, item: Send | Event) -> None:
        if isinstance(item, Send):
            self.queue.append((node.peer, item.to, item.message))
        elif item.kind == "decided":
            entries = item.data["entries"]
            if node.peer in self.genesis.committee:
                push = StateReply(
                    (CertifiedBatch(entries, item.data["certificate"]),), None, None, None
                )
                for peer in self.ids:
                    if peer not in self.genesis.committee:
                        self.queue.append((node.peer, peer, push))
            node.machine.on_decided(entries, self.now_ms)

    def _machine_output(self, node: Node, item: Send | Event) -> None:
        assert isinstance(item, Event)
        if item.kind == "propose":
            node.replica.propose(item.data["entry"], self.now_ms)
        elif item.kind == "run":
            data = dict(item.data)
            node.runs.append((data["task_id"], data["slot"], data["attempt"]))
            self.pending_runs.append((self.now_ms + self.run_ms, node.peer, data))
        elif item.kind == "finished":
            node.finished.append(item.data["task_id"])

    def deliver_all(self) -> None:
        while self.queue:
            sender, target, message = self.queue.popleft()
            if target in self.down or sender in self.down:
                continue
            if self.withhold is not None and self.withhold(message):
                continue
            limit = self.frame_bytes_max
            if limit is not None and len(cbor.encode(to_wire(message))) > limit:
                self.oversize[type(message).__name__] += 1
                continue
            node = self.nodes[target]
            node.replica.receive(message, sender, self.now_ms)
            self._drain(node)

    def advance(self, ms: int) -> None:
        self.now_ms += ms
        due = [r for r in self.pending_runs if r[0] <= self.now_ms]
        self.pending_runs = [r for r in self.pending_runs if r[0] > self.now_ms]
        for _, peer, data in due:
            if peer in self.down:
                continue
            node = self.nodes[peer]
            output = hashlib.sha256(data["spec"].input).digest()[:8]  # deterministic "labels"
            node.machine.on_output(data["task_id"], data["slot"], data["attempt"], True, output,
                                   self.now_ms)  # fmt: skip
            self._drain(node)
        for peer, node in self.nodes.items():
            if peer in self.down:
                continue
            for machine in (node.replica, node.machine):
                deadline = machine.next_deadline()
                if deadline is not None and deadline <= self.now_ms:
                    machine.tick(self.now_ms)
            self._drain(node)

    def run(self, ms: int, step_ms: int = 10) -> None:
        for _ in range(max(1, ms // step_ms)):
            self.deliver_all()
            self.advance(step_ms)
        self.deliver_all()

    def kill(self, peer: str) -> None:
        """The process dies; after a while the membership view of the others says so."""
        self.down.add(peer)

    def report_gone(self, peer: str) -> None:
        for other, node in self.nodes.items():
            if other not in self.down:
                node.machine.on_members([peer], self.now_ms)
                self._drain(node)

    def submit(self, via: str, n: int, **kwargs: Any) -> bytes:
        node = self.nodes[via]
        digest = hashlib.sha256(b"input %d" % n).digest()
        spec = node.machine.submit("infer", digest, 256, b"m" * 32, self.now_ms, **kwargs)
        self._drain(node)
        return spec.task_id

    def live(self) -> list[Node]:
        return [n for p, n in self.nodes.items() if p not in self.down]


REQUIREMENTS = [
    Requirements(),
    Requirements(ram_mb_min=8192),
    Requirements(accelerator="gpu"),
    Requirements(runtime="numpy"),
    Requirements(device_classes=("edge",)),
    Requirements(device_classes=("server", "laptop")),
]


def _run_fleet(tasks: int, replicas: int, verifiable: bool) -> tuple[TasksNet, list[bytes], str]:
    net = TasksNet(FLEET)
    net.run(500)
    assert all(len(n.machine.board.workers) == len(FLEET) for n in net.nodes.values())
    submitter = net.genesis.committee[0]
    # The victim: a worker that is neither the submitter nor the first primary.
    victim = next(p for p in net.ids if p not in (submitter, net.genesis.committee[0]))
    # Replicas go to distinct workers: with k = 2 only requirements that 3+ workers meet
    # (one of them is killed), else a slot rightly waits for a capable worker forever.
    choices = REQUIREMENTS if replicas == 1 else [r for r in REQUIREMENTS if r.accelerator is None
                                                  and r.runtime is None]  # fmt: skip
    ids = []
    for n in range(tasks):
        ids.append(net.submit(submitter, n, requirements=choices[n % len(choices)],
                              replicas=replicas, verifiable=verifiable))  # fmt: skip
        if n == tasks // 2:
            net.kill(victim)
        if n == tasks // 2 + 10:
            net.report_gone(victim)
        net.run(20)
    net.run(15_000)
    return net, ids, victim


@pytest.mark.parametrize(("replicas", "verifiable"), [(1, False), (2, True)])
def test_every_task_completes_exactly_k_times_on_capable_workers(
    replicas: int, verifiable: bool
) -> None:
    net, ids, victim = _run_fleet(120, replicas, verifiable)
    live = net.live()
    reference = live[0].machine.board
    for task_id in ids:
        record = reference.tasks[task_id]
        assert record.status == DONE, (record.status, record.reason)
        results = [s.result for s in record.slots if s.result is not None]
        agreeing = Counter(r.digest for r in results).most_common(1)[0][1]
        assert agreeing == replicas and len({r.worker for r in results}) == len(results)
        for result in results:
            worker_caps = next(n.caps for n in net.nodes.values() if n.peer == result.worker)
            assert meets(record.spec.requirements, worker_caps), (result.worker, record.spec)
    for node in live:  # every live agent holds the same board
        board = node.machine.board
        assert [board.tasks[t].status for t in ids] == [reference.tasks[t].status for t in ids]
        assert board.results_by_worker == reference.results_by_worker
        assert Counter(node.finished)[ids[0]] == 1 and set(node.finished) >= set(ids)
    submitter = net.nodes[net.genesis.committee[0]]
    assert len(submitter.finished) == len(set(submitter.finished))  # "finished" exactly once
    for node in net.nodes.values():
        assert len(node.runs) == len(set(node.runs))  # no slot attempt ran twice
    assert not reference.workers[victim].up
    spread = {p[-6:]: reference.results_by_worker.get(p, 0) for p in net.ids}
    print(f"load spread (results per worker, k={replicas}): {spread}")
    assert sum(spread.values()) >= len(ids) * replicas


def test_timeouts_move_work_off_a_silent_worker_without_the_membership_view() -> None:
    net = TasksNet(FLEET[:4], run_ms=30)
    net.run(500)
    submitter = net.genesis.committee[0]
    silent = next(p for p in net.ids if p != submitter and p in net.genesis.committee[1:])
    ids = [net.submit(submitter, n) for n in range(12)]
    net.kill(silent)  # never reported gone: only the per-attempt deadline can save its slots
    net.run(12_000)
    board = net.nodes[submitter].machine.board
    assert all(board.tasks[t].status == DONE for t in ids)
    assert board.results_by_worker.get(silent, 0) == 0


def test_a_byzantine_members_early_timeouts_are_ordered_but_move_no_work() -> None:
    net = TasksNet(FLEET[:4], run_ms=300)
    net.run(500)
    submitter, liar = net.genesis.committee[0], net.genesis.committee[1]
    ids = [net.submit(submitter, n) for n in range(12)]
    voted: set[tuple[bytes, int, int]] = set()
    for _ in range(200):  # the liar votes "timed out" the moment it sees an assignment
        net.run(10)
        node = net.nodes[liar]
        for task_id in list(node.machine.board.open):
            for slot in node.machine.board.tasks[task_id].slots:
                key = (task_id, slot.index, slot.attempt)
                if slot.worker is not None and key not in voted:
                    voted.add(key)
                    vote = sign_timeout(net.identities[net.ids.index(liar)], *key)
                    node.replica.propose(vote.entry(), net.now_ms)
                    net._drain(node)
    net.run(3_000)
    board = net.nodes[submitter].machine.board
    assert voted and board.counters["timeout_votes_pending"] >= len(ids)  # decided, alone
    assert all(board.tasks[t].status == DONE for t in ids)
    assert all(s.attempt == 1 and not s.tried for t in ids for s in board.tasks[t].slots)


def test_a_committee_of_one_decides_downs_and_moves_a_dead_workers_slots() -> None:
    net = TasksNet(FLEET[:3], run_ms=2_000, committee_size=1)  # runs outlast the kill below
    net.run(500)
    assert len(net.genesis.committee) == 1
    member = net.genesis.committee[0]
    ids = [net.submit(member, n) for n in range(9)]
    net.run(100)
    board = net.nodes[member].machine.board
    victim = next(p for p in net.ids if p != member and board.queue_lengths().get(p))
    net.kill(victim)
    net.run(100)
    net.report_gone(victim)  # the member's view says dead: its own down vote is the quorum
    net.run(300)  # well under the 2 s attempt deadline: only the down can have moved them
    assert not board.workers[victim].up and victim not in board.queue_lengths()
    net.run(6_000)
    assert all(board.tasks[t].status == DONE for t in ids), [board.tasks[t].status for t in ids]
    assert board.results_by_worker.get(victim, 0) == 0
    for node in net.live():
        assert [node.machine.board.tasks[t].status for t in ids] == [DONE] * len(ids)


def test_a_view_change_over_full_prepared_batches_fits_one_frame_and_completes() -> None:
    # Sends are signed envelopes of at most PBFT_TYPE's size (less the envelope's own bytes).
    net = TasksNet(FLEET[:4], run_ms=60_000, frame_bytes_max=PBFT_TYPE.size_bytes_max - 1024)
    net.run(500)
    primary = net.genesis.consensus_committee().primary(0)
    submitter = next(p for p in net.ids if p != primary)
    # The first batches (one entry each, proposed as the requests come) are decided; then
    # commits are lost: the full batches that follow are prepared, none executed.
    first = net.nodes[primary].replica.config.inflight_batches_max
    net.withhold = lambda m: isinstance(m, Vote) and m.kind == KIND_COMMIT and m.seq > first
    ids = [net.submit(submitter, n) for n in range(256)]
    net.run(100)
    prepared = max(len(n.replica.durable.prepared) for n in net.live())
    net.withhold = None
    net.kill(primary)  # the view change must carry those prepared batches
    net.report_gone(primary)
    net.run(1_500)  # a few view-change timers of 300 ms
    assert not net.oversize, f"unsendable: {dict(net.oversize)} ({prepared} prepared batches)"
    assert prepared > first
    for node in net.live():  # the new view holds: every submission decided everywhere
        assert node.replica.view > 0 and not node.replica.view_changing
        assert all(t in node.machine.board.tasks for t in ids)
