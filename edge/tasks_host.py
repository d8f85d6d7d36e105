"""The agent's task part: a PBFT replica ordering task entries and a task machine on asyncio.

`TasksHost` lives inside `Agent` (edge/agent.py) and shares its transport,
clock, SQLite file, blob store and signing identity, like the rounds host
(edge/rounds_host.py), whose rules it follows:
- once membership shows the expected number of alive members, every agent
  computes the same task committee (core/tasks/genesis.py) and starts a
  `Replica` (member or observer) and a `TasksMachine`;
- the replica's records are persisted (one SQLite transaction) before any send
  that follows them; committee members push each decided batch with its commit
  certificate to the non-members, whose observer replica verifies it;
- inputs and models travel by sha-256: a worker fetches a blob it lacks from
  the submitter or any agent known to hold it (`TaskBoard.input_holders`, then
  every member; dead ones last), one holder at a time with a per-holder
  timeout (`tasks.fetch` -> `tasks.blob`, checked against its digest), and
  keeps it in the agent's content-addressed store;
- the genesis is kept in the state file; a restarted agent rebuilds its
  replica from the persisted records and its board by replaying the decided
  batches among them, so it answers for old tasks and re-runs nothing finished;
- runs use one worker thread and a trainer instance of their own (LiteRT
  interpreters are not shared between threads).
This host owns its timers and its polling of the membership view, so the
agent only constructs it, routes `tasks.*` frames to it and closes it.
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import os
import random
import sqlite3
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from agentmesh.core.consensus import DurableState, Entry, Replica
from agentmesh.core.consensus.durable import PersistExecuted, PersistSnapshot
from agentmesh.core.consensus.messages import CertifiedBatch, StateReply
from agentmesh.core.identity import verify_from_peer_id
from agentmesh.core.learning.digits8 import initial_mlp_weights
from agentmesh.core.membership import Capabilities
from agentmesh.core.membership.capabilities import DEVICE_CLASSES, TRAINER_RUNTIMES, AdvertError
from agentmesh.core.node import Event, Send
from agentmesh.core.rounds.pbft_wire import PbftWireError, from_wire, to_wire
from agentmesh.core.rounds.task import digits_split, flat_bytes, unflatten
from agentmesh.core.tasks import (
    INPUT_UNAVAILABLE,
    KIND_INFER,
    TasksConfig,
    TasksGenesis,
    TasksMachine,
    TaskSpec,
    entry_validator,
    tasks_genesis,
)
from agentmesh.core.tasks.config import task_consensus_config
from agentmesh.core.wire import DEFAULT_REGISTRY, Envelope, Field, MessageType, cbor
from agentmesh.edge.model_store import ModelStore, ModelStoreError
from agentmesh.edge.probe import probe_capabilities
from agentmesh.edge.replica_driver import ReplicaDriver
from agentmesh.edge.tasks_control import TasksControl, TasksHostError, rows_from_bytes
from agentmesh.edge.trainer import TrainerError, make_trainer
from agentmesh.edge.waiting import wait_event, wait_within
from agentmesh.tools.data import load_digits

if TYPE_CHECKING:
    from agentmesh.edge.agent import Agent

log = logging.getLogger("agentmesh.tasks")

BLOB_BYTES_MAX = TasksConfig().input_bytes_max
PBFT_TYPE = MessageType(112, "tasks.pbft", {"m": Field("list", size_max=16)}, 256 * 1024)
FETCH_TYPE = MessageType(113, "tasks.fetch", {"digest": Field("bytes", size_max=32)}, 512)
BLOB_TYPE = MessageType(
    114,
    "tasks.blob",
    {"digest": Field("bytes", size_max=32), "data": Field("bytes", size_max=BLOB_BYTES_MAX)},
    BLOB_BYTES_MAX + 1024,
)
_TYPES = (PBFT_TYPE, FETCH_TYPE, BLOB_TYPE)
for _type in _TYPES:
    DEFAULT_REGISTRY.register(_type)
TASK_TYPES = frozenset(t.name for t in _TYPES)
Batches = list[tuple[Entry, ...]]  # decided batches, in sequence order

CAPABILITIES_ENV = "AGENTMESH_CAPABILITIES"  # JSON overrides of the advertised capabilities
_EARLY_FRAMES_MAX = 1024
_FETCH_WAITERS_MAX = 256
_FETCH_TIMEOUT_S = 1.5  # per holder: a dead or blob-less holder costs this much
_FETCH_TRIES_MAX = 12  # holders asked per blob (two passes over short lists)
_META_GENESIS = "tasks.genesis"
_POLL_S = 0.25
_OVERRIDABLE = {
    "device_class": str, "ram_total_mb": int, "ram_free_mb": int, "cpu_cores": int,
    "cpu_load_permille": int, "accelerators": list, "trainer_runtime": str,
    "battery_percent": int,
}  # fmt: skip

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks_pbft_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    genesis BLOB NOT NULL,
    record BLOB NOT NULL
);
"""


@dataclass
class TasksSettings:
    """`agent join --tasks N` flags: form the task committee once N members are alive."""

    expect: int
    committee_size: int = 4
    runtime: str | None = None
    partition: int | None = None  # train kind: digits partition (default: rank among members)
    config: TasksConfig | None = None
    advertise: dict[str, Any] = field(default_factory=dict)  # capability overrides (labs, tests)


def add_tasks_flags(join: argparse.ArgumentParser) -> None:
    """`agent join` flags for task distribution (docs/tasks.md); off without --tasks."""
    group = join.add_argument_group("tasks (on with --tasks)")
    group.add_argument("--tasks", type=int, metavar="N",
                       help="form the task committee once N members are alive")  # fmt: skip
    group.add_argument("--tasks-committee-size", type=int, default=4, metavar="N",
                       help="task committee size, 3f+1 (default 4)")  # fmt: skip
    group.add_argument("--device-class", choices=DEVICE_CLASSES,
                       help="advertise this device class (labs and tests)")  # fmt: skip
    group.add_argument("--ram-mb", type=int, help="advertise this much RAM (labs and tests)")
    group.add_argument("--accelerator", action="append", default=[],
                       help="advertise an accelerator (repeatable; labs and tests)")  # fmt: skip
    group.add_argument("--advertise-runtime", choices=TRAINER_RUNTIMES,
                       help="advertise this trainer runtime (labs and tests)")  # fmt: skip


def tasks_settings(args: argparse.Namespace) -> TasksSettings | None:
    """TasksSettings from the join flags; None when --tasks is absent."""
    if args.tasks is None:
        return None
    if args.tasks < 1 or args.tasks_committee_size < 1:
        raise ValueError("--tasks and --tasks-committee-size must be >= 1")
    advertise: dict[str, Any] = {}
    if args.device_class:
        advertise["device_class"] = args.device_class
    if args.ram_mb is not None:
        advertise["ram_total_mb"] = args.ram_mb
    if args.accelerator:
        advertise["accelerators"] = list(args.accelerator)
    if args.advertise_runtime:
        advertise["trainer_runtime"] = args.advertise_runtime
    return TasksSettings(args.tasks, args.tasks_committee_size, runtime=args.runtime,
                         advertise=advertise)  # fmt: skip


def override_capabilities(
    caps: Capabilities, settings: TasksSettings | None = None, text: str | None = None
) -> Capabilities:
    """`caps` with the fields of $AGENTMESH_CAPABILITIES (JSON) and the join flags replaced.

    For tests and labs: advertise a device class, RAM or accelerator this host
    does not have, e.g. '{"device_class": "edge", "ram_total_mb": 2048}'.
    """
    raw = os.environ.get(CAPABILITIES_ENV) if text is None else text
    try:
        wanted = json.loads(raw) if raw else {}
    except json.JSONDecodeError as error:
        raise TasksHostError(f"{CAPABILITIES_ENV} is not JSON: {error}") from None
    if isinstance(wanted, dict) and settings is not None:
        wanted.update(settings.advertise)
    if not wanted:
        return caps
    if not isinstance(wanted, dict) or not all(
        key in _OVERRIDABLE and isinstance(value, _OVERRIDABLE[key])
        for key, value in wanted.items()
    ):
        raise TasksHostError(f"{CAPABILITIES_ENV} may set {sorted(_OVERRIDABLE)} only")
    if "accelerators" in wanted:
        wanted["accelerators"] = tuple(wanted["accelerators"])
    if "ram_total_mb" in wanted and "ram_free_mb" not in wanted:
        wanted["ram_free_mb"] = min(caps.ram_free_mb, wanted["ram_total_mb"])
    try:
        return replace(caps, **wanted)
    except AdvertError as error:
        raise TasksHostError(f"{CAPABILITIES_ENV}: {error}") from None


class TasksHost(ReplicaDriver):
    """Drives the task replica and the task machine for one agent."""

    _log_table = "tasks_pbft_log"
    _evidence_label = "task consensus evidence"

    def __init__(self, agent: Agent, settings: TasksSettings) -> None:
        self.agent = agent
        self.settings = settings
        self.config = settings.config or TasksConfig()
        self.peer_id = agent.identity.peer_id
        self.store = ModelStore(agent.config.state_dir, agent.store.connection)
        agent.store.connection.executescript(_SCHEMA)
        self._log_connection = sqlite3.connect(agent.store.path, isolation_level=None, timeout=5.0)
        self._log_connection.execute(
            "PRAGMA synchronous=" + os.environ.get("AGENTMESH_PBFT_SYNC", "FULL")
        )
        self.trainer = make_trainer("digits_mlp", settings.runtime)
        self.shapes = tuple(tuple(int(n) for n in w.shape) for w in self.trainer.get_weights())
        self.initial_model = self.store.put_blob(flat_bytes(initial_mlp_weights()))
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="task")
        self.genesis: TasksGenesis | None = None
        self.replica: Replica | None = None
        self.machine: TasksMachine | None = None
        self.early: list[tuple[str, Envelope]] = []
        self.counters: dict[str, int] = {}
        self.fetches: dict[bytes, asyncio.Future[tuple[bytes, str]]] = {}
        self.submitted_ms: dict[bytes, int] = {}
        self.finished_ms: dict[bytes, int] = {}
        self.ordered_ms: dict[bytes, int] = {}  # own submissions: when the submit was decided
        self.unordered: dict[bytes, TaskSpec] = {}  # own submissions not decided yet
        self.waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._training_data: Any = None
        self.restored = self._persisted_genesis()
        # Dead or departed members get no fetches or blobs (each would wait behind a
        # connection nobody acknowledges). PBFT frames still go to every member: the
        # view is often wrong under load, and a frame skipped to a live primary stalls
        # the log until a view change; the agent bounds each peer's share of sends.
        self._unreachable: set[str] = set()
        self.disabled: str | None = None  # why tasks stay off (a corrupt stored log)
        self._init_log()
        self._wake = asyncio.Event()
        self._jobs: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        agent.control.handlers["task"] = TasksControl(self).command

    def start(self) -> None:
        """Spawn this host's timer and membership-poll loops on the running event loop."""
        loop = asyncio.get_running_loop()
        self._loops = [loop.create_task(self._timer_loop()), loop.create_task(self._poll_loop())]

    # -- formation and polling -----------------------------------------------------------

    async def _poll_loop(self) -> None:
        while True:
            await asyncio.sleep(_POLL_S)
            membership = self.agent.machine
            if membership is None:
                continue
            members = membership.status()
            self._unreachable = {m["peer_id"] for m in members if m["state"] in ("dead", "left")}
            if self.genesis is None and self.restored is not None:
                self._restart(self.restored)
                continue
            if self.genesis is None:
                self._maybe_form(members)
                continue
            machine = self.machine
            assert machine is not None
            now = self.agent.clock.now_ms()
            gone = [m["peer_id"] for m in members if m["state"] in ("dead", "left")]
            machine.on_members(gone, now)
            machine.advertise(self._own_capabilities(), membership.incarnation, now)
            self.drain()

    def _own_capabilities(self) -> Capabilities:
        caps = probe_capabilities(self.agent.config.roles, address=None)
        return replace(override_capabilities(caps, self.settings), address=None)

    def _maybe_form(self, members: list[dict[str, Any]]) -> None:
        alive = [m for m in members if m["state"] == "alive"]
        if len(alive) != self.settings.expect or self.disabled is not None:
            return
        roles = {m["peer_id"]: tuple(m["capabilities"].get("roles_allowed", ())) for m in alive}
        genesis = tasks_genesis(self.agent.config.mesh, roles, self.settings.committee_size)
        self.agent.store.set_meta(_META_GENESIS, json.dumps(
            {"mesh": genesis.mesh, "members": genesis.members, "committee": genesis.committee}
        ))  # fmt: skip
        self._form(genesis, None, [])

    def _persisted_genesis(self) -> TasksGenesis | None:
        """The task genesis this state dir formed before (same mesh), else None."""
        raw = self.agent.store.get_meta(_META_GENESIS)
        if raw is None:
            return None
        try:
            kept = json.loads(raw)
            genesis = TasksGenesis(kept["mesh"], tuple(kept["members"]), tuple(kept["committee"]))
        except (json.JSONDecodeError, KeyError, TypeError) as error:
            log.warning("ignoring the stored task genesis: %s", error)
            return None
        return genesis if genesis.mesh == self.agent.config.mesh else None

    def _restart(self, genesis: TasksGenesis) -> None:
        """Form from the kept genesis: replica from its records, board from its batches."""
        try:
            durable, batches = self._load_log(genesis)
        except TasksHostError as error:
            # Never start over on a committee member's lost votes: stay out, say why.
            log.error("tasks stay off: %s", error)
            self.restored = None
            self.disabled = str(error)
            return
        self._form(genesis, durable, batches)
        log.info("task log replayed: %d batches, %d entries", len(batches),
                 self.counters.get("replayed_entries", 0))  # fmt: skip

    def _load_log(
        self, genesis: TasksGenesis
    ) -> tuple[DurableState | None, list[tuple[Entry, ...]]]:
        """The replica state the kept records reduce to, and the decided batches in order."""
        rows = self._log_connection.execute(
            f"SELECT record FROM {self._log_table} WHERE genesis = ? ORDER BY id",
            (genesis.genesis_id,),
        ).fetchall()
        if not rows:
            return None, []
        committee = genesis.consensus_committee()
        durable = DurableState(committee.epoch, committee.members)
        batches: dict[int, tuple[Entry, ...]] = {}
        for (row,) in rows:
            try:
                record = from_wire(cbor.decode(row))
            except (PbftWireError, ValueError) as error:
                raise TasksHostError(
                    f"the task log in the state file is corrupt: {error}"
                ) from None
            durable.apply(record)
            if isinstance(record, PersistExecuted):
                batches[record.seq] = record.certified.batch
            elif isinstance(record, PersistSnapshot):
                self._count("replay_gap")  # batches skipped by state transfer: not kept here
        ordered = [batches[seq] for seq in sorted(batches)]
        if sorted(batches) != list(range(1, len(batches) + 1)):
            self._count("replay_gap")
            log.warning("the task log has gaps: old tasks may be missing from this board")
        return durable, ordered

    def _form(
        self,
        genesis: TasksGenesis,
        durable: DurableState | None,
        batches: Batches,
    ) -> None:
        self.genesis = genesis
        rng = random.Random(os.urandom(16))
        self.replica = Replica(
            self.agent.identity, verify_from_peer_id, genesis.consensus_committee(), rng,
            task_consensus_config(), durable, validate_entry=entry_validator(verify_from_peer_id),
        )  # fmt: skip
        self.machine = TasksMachine(
            self.agent.identity, verify_from_peer_id, random.Random(os.urandom(16)),
            self.config, watchdog=self.peer_id in genesis.committee,
            committee=genesis.committee,
        )  # fmt: skip
        now = self.agent.clock.now_ms()
        if batches:
            self.counters["replayed_entries"] = self.machine.replay(batches, now)
        log.info("task committee formed: %s; I am %s", ",".join(p[-6:] for p in genesis.committee),
                 "a member" if self.peer_id in genesis.committee else "an observer")  # fmt: skip
        self.replica.start(now)
        self.machine.start(now)
        membership = self.agent.machine
        assert membership is not None
        self.machine.advertise(self._own_capabilities(), membership.incarnation, now)
        self.drain()
        early, self.early = self.early, []
        for sender, envelope in early:
            self.on_envelope(sender, envelope)

    # -- inputs -------------------------------------------------------------------------

    def on_envelope(self, sender: str, envelope: Envelope) -> None:
        """A `tasks.*` frame from an authenticated peer (the agent checked the envelope)."""
        name = envelope.type_name
        if name == FETCH_TYPE.name:
            self._serve_fetch(sender, envelope.body["digest"])
            return
        if name == BLOB_TYPE.name:
            self._on_blob(sender, envelope.body["digest"], envelope.body["data"])
            return
        replica = self.replica
        if replica is None:
            if len(self.early) < _EARLY_FRAMES_MAX:
                self.early.append((sender, envelope))
            else:
                self._count("dropped_early_frame")
            return
        try:
            replica.receive(from_wire(envelope.body["m"]), sender, self.agent.clock.now_ms())
        except (PbftWireError, ValueError):
            self._count("dropped_bad_pbft")
            return
        self.drain()

    def _serve_fetch(self, sender: str, digest: bytes) -> None:
        try:
            data = self.store.get_blob(digest) if len(digest) == 32 else None
        except ModelStoreError:
            data = None
        if data is None or len(data) > BLOB_BYTES_MAX:
            self._count("fetch_unknown_blob")
            return
        if sender not in self._unreachable:
            self.agent.send_envelope(sender, BLOB_TYPE.name, {"digest": digest, "data": data})

    def _on_blob(self, sender: str, digest: bytes, data: bytes) -> None:
        waiter = self.fetches.get(digest)
        if waiter is None or waiter.done():
            self._count("dropped_unsolicited_blob")
            return
        if hashlib.sha256(data).digest() != digest:
            self._count("dropped_blob_digest_mismatch")
            return
        self.store.put_blob(data)
        waiter.set_result((data, sender))

    async def _timer_loop(self) -> None:
        while True:
            deadlines = [m.next_deadline() for m in (self.replica, self.machine) if m is not None]
            deadline = min((d for d in deadlines if d is not None), default=None)
            now = self.agent.clock.now_ms()
            if deadline is None or deadline > now:
                wait_s = 1.0 if deadline is None else (deadline - now) / 1000
                self._wake.clear()
                await wait_event(self._wake, wait_s)
                continue
            for machine in (self.replica, self.machine):
                due = machine.next_deadline() if machine is not None else None
                if machine is not None and due is not None and due <= now:
                    machine.tick(now)
            self.drain()

    # -- outputs ------------------------------------------------------------------------

    def drain(self) -> None:
        super().drain()
        self._wake.set()

    def _on_decided(self, event: Event) -> None:
        genesis, machine = self.genesis, self.machine
        assert genesis is not None and machine is not None
        entries, certificate = event.data["entries"], event.data["certificate"]
        if self.peer_id in genesis.committee:
            push = StateReply((CertifiedBatch(entries, certificate),), None, None, None)
            for peer in genesis.members:
                if peer not in genesis.committee:
                    self._send_pbft(peer, push)
        now = self.agent.clock.now_ms()
        machine.on_decided(entries, now)
        for task_id in [t for t in self.unordered if t in machine.board.tasks]:
            del self.unordered[task_id]
            self.ordered_ms[task_id] = now

    def _machine_output(self, item: Send | Event) -> None:
        if isinstance(item, Send):
            return  # the task machine speaks only through decided entries
        if item.kind == "propose":
            assert self.replica is not None
            self.replica.propose(item.data["entry"], self.agent.clock.now_ms())
        elif item.kind == "run":
            self._spawn_job(self._run(item.data))
        elif item.kind == "finished":
            task_id: bytes = item.data["task_id"]
            if task_id in self.submitted_ms:
                self.finished_ms.setdefault(task_id, self.agent.clock.now_ms())
            for waiter in self.waiters.pop(task_id, []):
                if not waiter.done():
                    waiter.set_result(None)

    def _send_pbft(self, peer: str, message: Any) -> None:
        self.agent.send_envelope(peer, PBFT_TYPE.name, {"m": to_wire(message)})

    def _spawn_job(self, coroutine: Any) -> None:
        job = asyncio.get_running_loop().create_task(coroutine)
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    # -- running a slot -------------------------------------------------------------------

    async def _run(self, data: Mapping[str, Any]) -> None:
        spec, task_id = data["spec"], data["task_id"]
        slot, attempt = data["slot"], data["attempt"]
        ok, output = False, b""
        machine = self.machine
        if machine is None or not machine.board.holds(task_id, slot, attempt, self.peer_id):
            # Decided batches applied in one go (catching up after a restart) may assign
            # and close a slot together: nothing to run.
            self._count("run_skipped_moved_on")
            return
        self._count("runs_started")
        holders = self._holders(task_id)
        inputs = await self._blob(spec.input, holders)
        model = await self._blob(spec.model, holders) if spec.kind == KIND_INFER else b""
        if inputs is None or model is None:
            self._count("run_input_unavailable")
            output = INPUT_UNAVAILABLE  # with every reader down the board ends it input_lost
        else:
            loop = asyncio.get_running_loop()
            job = self._infer_job if spec.kind == KIND_INFER else self._train_job
            try:
                output = await loop.run_in_executor(self.executor, job, inputs, model)
                ok = True
            except (TrainerError, ValueError) as error:
                self._count(f"run_failed_{spec.kind}")
                output = str(error).encode()[:256]
        machine.on_output(task_id, slot, attempt, ok, output, self.agent.clock.now_ms())
        self.drain()

    def _holders(self, task_id: bytes) -> list[str]:
        """Whom to ask for the task's blobs: known holders, then every member; dead ones last."""
        machine, genesis = self.machine, self.genesis
        assert machine is not None and genesis is not None
        found = dict.fromkeys([*machine.input_holders(task_id), *genesis.members])
        found.pop(self.peer_id, None)
        return sorted(found, key=lambda peer: peer in machine.gone)  # stable: order kept

    async def _blob(self, digest: bytes, holders: list[str]) -> bytes | None:
        """The blob from the local store, else from the first holder that sends it in time."""
        with contextlib.suppress(ModelStoreError):
            data = self.store.get_blob(digest)
            if data is not None:
                return data
        tries = (holders * 2)[:_FETCH_TRIES_MAX]
        for index, holder in enumerate(tries):
            if holder in self._unreachable:
                self._count("fetch_skipped_not_alive")
                continue
            waiter = self.fetches.get(digest)
            if waiter is None or waiter.done():
                if len(self.fetches) >= _FETCH_WAITERS_MAX:
                    self._count("fetch_table_full")
                    return None
                waiter = asyncio.get_running_loop().create_future()
                self.fetches[digest] = waiter
            self.agent.send_envelope(holder, FETCH_TYPE.name, {"digest": digest})
            try:
                data, sender = await wait_within(asyncio.shield(waiter), _FETCH_TIMEOUT_S)
            except TimeoutError:
                self._count("fetch_timeout")
                continue
            finally:
                if waiter.done():
                    self.fetches.pop(digest, None)
            if index > 0 or sender != holders[0]:
                self._count("fetch_from_other_holder")  # not the submitter (first): it failed us
            return data
        return None

    def _infer_job(self, inputs: bytes, model: bytes) -> bytes:
        """On the worker thread: predicted labels (one uint8 per row) of the pinned model."""
        rows = rows_from_bytes(inputs)
        self.trainer.set_weights(unflatten(model, self.shapes))
        logits = self.trainer.infer(rows)
        labels: bytes = np.argmax(logits, axis=1).astype(np.uint8).tobytes()
        return labels

    def _train_job(self, inputs: bytes, model: bytes) -> bytes:
        """On the worker thread: one local epoch from the input weights; loss and examples."""
        del model
        if len(inputs) != 4 * sum(int(np.prod(s)) for s in self.shapes):
            raise ValueError("train input must be the model's float32 weights")
        features, labels = self._own_data()
        self.trainer.set_weights(unflatten(inputs, self.shapes))
        result = self.trainer.train(features, labels, epochs=1, batch_size=32, learning_rate=0.5,
                                    rng=np.random.default_rng(7919))  # fmt: skip
        return struct.pack("<dI", result.mean_loss, result.examples)

    def _own_data(self) -> tuple[np.ndarray, np.ndarray]:
        if self._training_data is None:
            genesis = self.genesis
            assert genesis is not None
            partition = self.settings.partition
            if partition is None:
                partition = genesis.members.index(self.peer_id)
            features, labels = load_digits()
            _, parts = digits_split(features, labels, len(genesis.members), 0.5)
            part = parts[partition % len(parts)]
            self._training_data = (part.features, part.labels)
        data: tuple[np.ndarray, np.ndarray] = self._training_data
        return data

    # -- shutdown ---------------------------------------------------------------------------

    def close(self) -> None:
        for task in [*self._loops, *self._jobs]:
            task.cancel()
        if self.genesis is not None and self._unwritten:
            self._flush()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self._log_connection.close()

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1
