"""The agent's federated-learning part: a PBFT replica and a round machine on asyncio.

`RoundsHost` lives inside `Agent` (edge/agent.py) and shares its transport,
clock, SQLite file and signing identity. Once membership shows the expected
number of alive members, every agent computes the same genesis (roles.py) and
starts a `Replica` (a member or an observer of the committee) and a
`RoundsMachine`. Rules of this host:
- persist the replica's records (one SQLite transaction) before any send that
  follows them in the outbox; executed/stable records may wait (the consensus
  host's reasoning: losing them only means fetching those batches again);
- committee members push every decided batch with its commit certificate to
  the non-members, whose observer replica verifies it (verify_certificate);
- training and evaluation run on one worker thread, so the loop stays
  responsive and the LiteRT interpreter is never used by two threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import random
import resource
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from agentmesh.core.consensus import ConsensusConfig, Entry, Replica
from agentmesh.core.consensus.messages import CertifiedBatch, CommitCertificate, StateReply
from agentmesh.core.identity import verify_from_peer_id
from agentmesh.core.learning.digits8 import initial_mlp_weights
from agentmesh.core.node import Event, Send
from agentmesh.core.rounds import (
    FetchRequest,
    Genesis,
    RoundsConfig,
    RoundsMachine,
    RuleConfig,
    UpdateOffer,
    genesis_roles,
)
from agentmesh.core.rounds.entries import (
    KIND_RESULT,
    RoundResult,
    consensus_entry_validator,
    decode_entry,
    offer_from_wire,
)
from agentmesh.core.rounds.pbft_wire import PbftWireError, from_wire, to_wire
from agentmesh.core.rounds.task import digits_split, flat_bytes, unflatten
from agentmesh.core.wire import DEFAULT_REGISTRY, Envelope, Field, MessageType, cbor
from agentmesh.edge.model_store import ModelStore
from agentmesh.edge.replica_driver import ReplicaDriver
from agentmesh.edge.trainer import make_trainer
from agentmesh.tools.data import load_digits

if TYPE_CHECKING:
    from agentmesh.edge.agent import Agent

log = logging.getLogger("agentmesh.rounds")

PBFT_TYPE = MessageType(96, "rounds.pbft", {"m": Field("list", size_max=16)}, 256 * 1024)
OFFER_TYPE = MessageType(
    97, "rounds.offer", {"round": Field("uint"), "offer": Field("list", size_max=4)}, 1024
)
FETCH_TYPE = MessageType(98, "rounds.fetch", {"digest": Field("bytes", size_max=32)}, 512)
RESULT_TYPE = MessageType(
    99, "rounds.result", {"entry": Field("bytes", size_max=48 * 1024)}, 50 * 1024
)
_TYPES = (PBFT_TYPE, OFFER_TYPE, FETCH_TYPE, RESULT_TYPE)
for _type in _TYPES:
    DEFAULT_REGISTRY.register(_type)
ROUND_TYPES = frozenset(t.name for t in _TYPES)

POISONS = ("sign-flip", "noise", "alie")
_EARLY_FRAMES_MAX = 1024  # frames that arrive before this agent formed the genesis
_SHUFFLE_SEED = 7919

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fl_pbft_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    genesis BLOB NOT NULL,
    record BLOB NOT NULL
);
"""


@dataclass
class RoundsSettings:
    """`agent join` flags for federated rounds on the digits task."""

    expect: int  # form the genesis once this many members are alive
    partition: int  # this agent trains on partition k of the split
    partitions: int | None = None  # default: expect
    alpha: float = 0.5
    rounds: int = 20
    rule: RuleConfig = field(default_factory=RuleConfig)
    window_ms: int = 3_000
    takeover_ms: int = 1_000
    committee_size: int = 4
    poison: str | None = None  # sign-flip | noise | alie: a Byzantine trainer (experiments)
    runtime: str | None = None  # trainer runtime; None = best available
    learning_rate: float = 0.5
    batch_size: int = 32
    epochs: int = 1


@dataclass
class RoundRecord:
    """What this agent saw of one round (the `rounds` control command)."""

    round: int
    started_ms: int
    base: str
    status: str = "open"
    model: str | None = None
    closed_ms: int | None = None
    train_s: float | None = None
    accuracy: float | None = None
    aggregator: str | None = None
    validators: list[str] = field(default_factory=list)
    contributors: int = 0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class RoundsHost(ReplicaDriver):
    """Drives the committee replica and the round machine for one agent."""

    _log_table = "fl_pbft_log"

    def __init__(self, agent: Agent, settings: RoundsSettings) -> None:
        self.agent = agent
        self.settings = settings
        self.peer_id = agent.identity.peer_id
        self.store = ModelStore(agent.config.state_dir, agent.store.connection)
        agent.store.connection.executescript(_SCHEMA)
        self._log_connection = sqlite3.connect(agent.store.path, isolation_level=None, timeout=5.0)
        self._log_connection.execute(
            "PRAGMA synchronous=" + os.environ.get("AGENTMESH_PBFT_SYNC", "FULL")
        )
        self.trainer = make_trainer("digits_mlp", settings.runtime)
        self.shapes = tuple(tuple(int(n) for n in w.shape) for w in self.trainer.get_weights())
        self.params = sum(int(np.prod(s)) for s in self.shapes)
        features, labels = load_digits()
        partitions = settings.partitions or settings.expect
        self.test, parts = digits_split(features, labels, partitions, settings.alpha)
        self.data = parts[settings.partition]
        self.initial_model = flat_bytes(initial_mlp_weights())
        self.store.put_blob(self.initial_model)
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="train")
        self.genesis: Genesis | None = None
        self.replica: Replica | None = None
        self.machine: RoundsMachine | None = None
        self.early: list[tuple[str, Envelope]] = []
        self.records: dict[int, RoundRecord] = {}
        self.counters: dict[str, int] = {}
        self.bytes_in = 0
        self.bytes_out = 0
        self.peak_rss_training_mb = 0.0
        self._init_log()
        self._certificate: CommitCertificate | None = None
        self._finished_ms: int | None = None

    # -- formation ----------------------------------------------------------------------

    def maybe_form(self, members: list[dict[str, Any]]) -> None:
        """Form the genesis when exactly the expected members are alive (same view everywhere)."""
        if self.genesis is not None:
            return
        alive = [m for m in members if m["state"] == "alive"]
        if len(alive) != self.settings.expect:
            return
        roles = {m["peer_id"]: tuple(m["capabilities"].get("roles_allowed", ())) for m in alive}
        initial = self.store.put_blob(self.initial_model)
        genesis = genesis_roles(
            self.agent.config.mesh, roles, initial, self.settings.committee_size
        )
        self.genesis = genesis
        config = RoundsConfig(
            params=self.params,
            rounds_total=self.settings.rounds,
            rule=self.settings.rule,
            window_ms=self.settings.window_ms,
            takeover_ms=self.settings.takeover_ms,
            abort_after_ms=self.settings.window_ms + 3 * self.settings.takeover_ms + 3_000,
            contributors_min=max(1, (len(genesis.cohort) + 1) // 2),
        )
        rng = random.Random(os.urandom(16))
        self.replica = Replica(
            self.agent.identity, verify_from_peer_id, genesis.consensus_committee(), rng,
            ConsensusConfig(), validate_entry=consensus_entry_validator,
        )  # fmt: skip
        self.machine = RoundsMachine(self.agent.identity, verify_from_peer_id, genesis, config,
                                     self.initial_model, random.Random(os.urandom(16)))  # fmt: skip
        log.info("genesis formed: committee %s, %d trainers, I am %s", ",".join(
            p[-6:] for p in genesis.committee), len(genesis.cohort), self.roles())  # fmt: skip
        now = self.agent.clock.now_ms()
        self.replica.start(now)
        self.machine.start(now)
        self.drain()
        early, self.early = self.early, []
        for sender, envelope in early:
            self.on_envelope(sender, envelope)

    def roles(self) -> list[str]:
        genesis = self.genesis
        if genesis is None:
            return []
        found = []
        if self.peer_id in genesis.cohort:
            found.append("trainer")
        if self.peer_id in genesis.aggregators:
            found.append("aggregator")
        if self.peer_id in genesis.committee:
            found.append("validator")
        return found

    # -- inputs -------------------------------------------------------------------------

    def on_envelope(self, sender: str, envelope: Envelope) -> None:
        replica, machine = self.replica, self.machine
        if replica is None or machine is None:
            if len(self.early) < _EARLY_FRAMES_MAX:
                self.early.append((sender, envelope))
            else:
                self._count("dropped_early_frame")
            return
        now = self.agent.clock.now_ms()
        name = envelope.type_name
        try:
            if name == PBFT_TYPE.name:
                replica.receive(from_wire(envelope.body["m"]), sender, now)
            elif name == OFFER_TYPE.name:
                offer = offer_from_wire(envelope.body["round"], envelope.body["offer"])
                machine.receive(offer, sender, now)
            elif name == RESULT_TYPE.name:
                result = decode_entry(Entry(KIND_RESULT, envelope.body["entry"]))
                machine.receive(result, sender, now)
            else:
                machine.receive(FetchRequest(envelope.body["digest"]), sender, now)
        except (PbftWireError, ValueError):
            self._count(f"dropped_bad_{name}")
            return
        self.drain()

    def on_blob(self, sender: str, data: bytes) -> None:
        self.bytes_in += len(data)
        if self.machine is None:
            self._count("dropped_early_blob")
            return
        self.machine.on_blob(sender, data, self.agent.clock.now_ms())
        self.drain()

    def count_frame_in(self, size_bytes: int) -> None:
        self.bytes_in += size_bytes

    def next_deadline(self) -> int | None:
        deadlines = [m.next_deadline() for m in (self.replica, self.machine) if m is not None]
        return min((d for d in deadlines if d is not None), default=None)

    def tick(self, now_ms: int) -> None:
        for machine in (self.replica, self.machine):
            if machine is None:
                continue
            deadline = machine.next_deadline()
            if deadline is not None and deadline <= now_ms:
                machine.tick(now_ms)
        self.drain()

    # -- outputs ------------------------------------------------------------------------

    def _on_decided(self, event: Event) -> None:
        genesis, machine = self.genesis, self.machine
        assert genesis is not None and machine is not None
        entries, certificate = event.data["entries"], event.data["certificate"]
        if self.peer_id in genesis.committee:
            push = StateReply((CertifiedBatch(entries, certificate),), None, None, None)
            for peer in genesis.cohort + genesis.aggregators:
                if peer not in genesis.committee:
                    self._send_pbft(peer, push)
        self._certificate = certificate
        machine.on_decided(entries, self.agent.clock.now_ms())

    def _machine_output(self, item: Send | Event) -> None:
        if isinstance(item, Send):
            message = item.message
            if isinstance(message, UpdateOffer):
                body = {"round": message.round, "offer": message.to_wire()}
                self._send_frame(item.to, OFFER_TYPE.name, body)
            elif isinstance(message, RoundResult):
                self._send_frame(item.to, RESULT_TYPE.name, {"entry": message.entry().body})
            else:
                self._send_frame(item.to, FETCH_TYPE.name, {"digest": message.digest})
            return
        handler = self._EVENT_HANDLERS.get(item.kind)
        if handler is not None:
            handler(self, dict(item.data))

    def _send_pbft(self, peer: str, message: Any) -> None:
        self._send_frame(peer, PBFT_TYPE.name, {"m": to_wire(message)})

    def _send_frame(self, peer: str, type_name: str, body: dict[str, Any]) -> None:
        size = self.agent.send_envelope(peer, type_name, body)
        self.bytes_out += size

    # -- events of the round machine ------------------------------------------------------

    def _on_send_blob(self, data: dict[str, Any]) -> None:
        blob: bytes = data["data"]
        self.bytes_out += len(blob)
        self.agent.send_blob(data["to"], blob)

    def _on_propose(self, data: dict[str, Any]) -> None:
        assert self.replica is not None
        self.replica.propose(data["entry"], self.agent.clock.now_ms())

    def _on_round_started(self, data: dict[str, Any]) -> None:
        number = data["round"]
        now = self.agent.clock.now_ms()
        self.records[number] = RoundRecord(number, now, data["model"].hex())
        self.store.record_round(number, base=data["model"].hex(), started_ms=now)

    def _on_train(self, data: dict[str, Any]) -> None:
        number, model, deadline_ms = data["round"], data["model"], data["deadline_ms"]
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._train_job, number, model, deadline_ms)
        future.add_done_callback(lambda f: self._trained(number, f))

    def _train_job(self, number: int, model: bytes, deadline_ms: int) -> tuple[bytes, int, float]:
        """On the worker thread: train one local epoch from the global model, return the delta."""
        base = unflatten(model, self.shapes)
        self.trainer.set_weights(base)
        clock = self.agent.clock
        result = self.trainer.train(
            self.data.features, self.data.labels, epochs=self.settings.epochs,
            batch_size=self.settings.batch_size, learning_rate=self.settings.learning_rate,
            deadline_passed=lambda: clock.now_ms() >= deadline_ms,
            rng=np.random.default_rng((_SHUFFLE_SEED, self.settings.partition, number)),
        )  # fmt: skip
        self.peak_rss_training_mb = max(self.peak_rss_training_mb, _peak_rss_mb())
        trained = np.frombuffer(flat_bytes(self.trainer.get_weights()), dtype="<f4")
        delta = trained - np.frombuffer(model, dtype="<f4")
        if self.settings.poison is not None:
            delta = poison(delta, self.settings.poison, number)
        return delta.astype("<f4").tobytes(), result.examples or 1, result.duration_s

    def _trained(self, number: int, future: asyncio.Future[tuple[bytes, int, float]]) -> None:
        if future.cancelled() or self.machine is None:
            return
        error = future.exception()
        if error is not None:
            log.error("local training for round %d failed: %s", number, error)
            return
        delta, samples, train_s = future.result()
        record = self.records.get(number)
        if record is not None:
            record.train_s = train_s
        self.store.record_round(number, train_s=train_s)
        self.machine.on_trained(number, delta, samples, self.agent.clock.now_ms())
        self.drain()

    def _on_round_committed(self, data: dict[str, Any]) -> None:
        number = data["round"]
        now = self.agent.clock.now_ms()
        record = self.records.setdefault(number, RoundRecord(number, now, ""))
        record.status, record.closed_ms = "committed", now
        record.model = data["model"].hex()
        record.aggregator = data["aggregator"]
        record.validators = list(data["validators"])
        record.contributors = len(data["contributors"])
        certificate = self._certificate
        self.store.record_round(
            number, status="committed", model=record.model, aggregator=record.aggregator,
            validators=record.validators, contributors=[list(c) for c in data["contributors"]],
            closed_ms=now,
            certificate=None if certificate is None else cbor.encode(to_wire(certificate)),
        )  # fmt: skip
        log.info("round %d committed: model %s by %s", number, record.model[:12],
                 record.aggregator[-6:])  # fmt: skip

    def _on_round_aborted(self, data: dict[str, Any]) -> None:
        number = data["round"]
        now = self.agent.clock.now_ms()
        record = self.records.setdefault(number, RoundRecord(number, now, ""))
        record.status, record.closed_ms = "aborted", now
        self.store.record_round(number, status="aborted", closed_ms=now)
        log.warning("round %d aborted", number)

    def _on_model(self, data: dict[str, Any]) -> None:
        """A verified global model: keep it and measure it on the held-out rows."""
        model: bytes = data["data"]
        self.store.put_blob(model)
        number = data["round"]
        if number == 0:
            return
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self.executor, self._evaluate_job, model)
        future.add_done_callback(lambda f: self._evaluated(number, f))

    def _evaluate_job(self, model: bytes) -> tuple[float, float]:
        self.trainer.set_weights(unflatten(model, self.shapes))
        result = self.trainer.evaluate(self.test.features, self.test.labels)
        return result.accuracy, result.mean_loss

    def _evaluated(self, number: int, future: asyncio.Future[tuple[float, float]]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        accuracy, loss = future.result()
        record = self.records.get(number)
        if record is not None:
            record.accuracy = accuracy
        self.store.record_round(number, accuracy=accuracy, loss=loss)

    def _on_finished(self, data: dict[str, Any]) -> None:
        self._finished_ms = self.agent.clock.now_ms()
        log.info("all %d rounds closed; global model %s", data["round"], data["model"].hex()[:12])

    def _on_evidence(self, data: dict[str, Any]) -> None:
        log.warning("rounds evidence %s from %s", data.get("reason"), data.get("sender"))

    _EVENT_HANDLERS: ClassVar[dict[str, Callable[[RoundsHost, dict[str, Any]], None]]] = {
        "send_blob": _on_send_blob,
        "propose": _on_propose,
        "round_started": _on_round_started,
        "train": _on_train,
        "round_committed": _on_round_committed,
        "round_aborted": _on_round_aborted,
        "model": _on_model,
        "finished": _on_finished,
        "evidence": _on_evidence,
    }

    # -- queries and shutdown -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """The `rounds` control command: genesis, roles, per-round records, traffic."""
        genesis, machine = self.genesis, self.machine
        evaluated = [r for r in self.records.values() if r.accuracy is not None]
        return {
            "formed": genesis is not None,
            "expect": self.settings.expect,
            "partition": self.settings.partition,
            "samples": int(self.data.labels.shape[0]),
            "runtime": self.trainer.runtime,
            "poison": self.settings.poison,
            "roles": self.roles(),
            "committee": list(genesis.committee) if genesis else [],
            "machine": machine.status() if machine else None,
            "finished": bool(machine and machine.finished),
            "rounds": [r.to_json() for r in sorted(self.records.values(), key=lambda r: r.round)],
            "evaluated": len(evaluated),
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "peak_rss_training_mb": self.peak_rss_training_mb,
            "peak_rss_mb": _peak_rss_mb(),
            "counters": {**self.counters, **(machine.counters if machine else {}),
                         **{f"pbft.{k}": v for k, v in (self.replica.counters
                                                         if self.replica else {}).items()}},
        }  # fmt: skip

    def close(self) -> None:
        if self.genesis is not None and self._unwritten:
            self._flush()
        self.executor.shutdown(wait=True, cancel_futures=True)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def poison(delta: np.ndarray, kind: str, round_number: int) -> np.ndarray:
    """A Byzantine trainer's update: sign flip x10, random noise, or a small consistent shift.

    `alie` follows "A Little Is Enough" (Baruch et al., NeurIPS 2019) with the
    attacker's own update standing in for the colluders' mean: every coordinate
    moves against its sign by one standard deviation of the update.
    """
    if kind == "sign-flip":
        return -10.0 * delta
    if kind == "noise":
        rng = np.random.default_rng(round_number)
        return rng.normal(0.0, 1.0, delta.shape).astype(np.float32)
    if kind == "alie":
        shifted: np.ndarray = delta - np.float32(delta.std()) * np.sign(delta)
        return shifted
    raise ValueError(f"unknown poison {kind!r}; known: {POISONS}")


def _peak_rss_mb() -> float:
    """This process's peak resident set size (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
