"""The agent's federated-learning part: a PBFT replica and a round machine on asyncio.

`RoundsHost` lives inside `Agent` (edge/agent.py) and shares its transport,
clock, SQLite file and signing identity. Once membership shows the expected
number of alive members, every agent computes the same genesis (roles.py) and
starts a `Replica` (a member or an observer of the committee) and a
`RoundsMachine`; an agent that starts later adopts the running mesh's genesis
(`rounds.genesis` from f + 1 of its members) and replays the log. After that,
membership changes become `rounds_epoch` entries (core/rounds/epochs.py): this
host only compares its membership view with the committed one every 500 ms,
proposes, and hands the replica's `epoch` events to the tracker and the round
machine. Rules of this host:
- persist the replica's records (one SQLite transaction) before any send that
  follows them in the outbox; executed/stable records may wait (the consensus
  host's reasoning: losing them only means fetching those batches again);
- the committee that certified a batch pushes it with its commit certificate to
  every other member and alive peer, whose observer replica verifies it;
- the genesis is kept in the state file; a restarted agent rebuilds its replica
  from the persisted records and its epochs and rounds by replaying the decided
  batches among them (core/rounds/replay.py), then catches up from its peers;
- training and evaluation run on one worker thread, so the loop stays
  responsive and the LiteRT interpreter is never used by two threads.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
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
from agentmesh.core.consensus.durable import PersistEpoch
from agentmesh.core.consensus.messages import CertifiedBatch, CommitCertificate, StateReply
from agentmesh.core.entry_fields import EntryError
from agentmesh.core.identity import verify_from_peer_id
from agentmesh.core.learning.digits8 import initial_mlp_weights
from agentmesh.core.limits import DEVICE_OFFERS_PER_GATEWAY_MAX
from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.node import Event, Send
from agentmesh.core.roles import RolesConfig, RolesError
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
    COHORT_MAX,
    KIND_RESULT,
    RoundResult,
    consensus_entry_validator,
    decode_entry,
    offer_from_wire,
)
from agentmesh.core.rounds.epochs import (
    KIND_EPOCH,
    EpochRoles,
    EpochTracker,
    decode_epoch_entry,
    make_view,
)
from agentmesh.core.rounds.pbft_wire import PbftWireError, from_wire, to_wire
from agentmesh.core.rounds.replay import replay_decided
from agentmesh.core.rounds.task import digits_split, flat_bytes, unflatten
from agentmesh.core.wire import DEFAULT_REGISTRY, Envelope, Field, MessageType, cbor
from agentmesh.edge.model_store import ModelStore, ModelStoreError
from agentmesh.edge.replica_driver import ReplicaDriver
from agentmesh.edge.replica_log import KeptLog, ReplicaLogError, load_replica_log
from agentmesh.edge.trainer import make_trainer
from agentmesh.tools.data import load_digits

if TYPE_CHECKING:
    from agentmesh.edge.agent import Agent

log = logging.getLogger("agentmesh.rounds")

PBFT_TYPE = MessageType(96, "rounds.pbft", {"m": Field("list", size_max=16)}, 256 * 1024)
OFFER_TYPE = MessageType(
    97, "rounds.offer", {"round": Field("uint"), "offer": Field("list", size_max=5)}, 1024
)
FETCH_TYPE = MessageType(98, "rounds.fetch", {"digest": Field("bytes", size_max=32)}, 512)
RESULT_TYPE = MessageType(
    99, "rounds.result", {"entry": Field("bytes", size_max=48 * 1024)}, 50 * 1024
)
GENESIS_TYPE = MessageType(
    100,
    "rounds.genesis",
    {"members": Field("list", size_max=COHORT_MAX), "model": Field("bytes", size_max=32),
     "size": Field("uint")},
    64 * 1024,
)  # fmt: skip
_TYPES = (PBFT_TYPE, OFFER_TYPE, FETCH_TYPE, RESULT_TYPE, GENESIS_TYPE)
for _type in _TYPES:
    DEFAULT_REGISTRY.register(_type)
ROUND_TYPES = frozenset(t.name for t in _TYPES)

POISONS = ("sign-flip", "noise", "alie")
_EARLY_FRAMES_MAX = 1024  # frames that arrive before this agent formed the genesis
_SHUFFLE_SEED = 7919
_MEMBERSHIP_CHECK_MS = 500  # how often the host compares the membership view to the epoch's
_GENESIS_RESEND_MS = 2_000  # tell a member outside the committed view about the genesis
_GENESIS_CLAIMS_MAX = 64  # distinct genesis descriptions a late joiner keeps while it waits
_META_GENESIS = "rounds.genesis"  # the genesis this state dir formed or adopted (JSON)
_RESTART_WAIT_MS = 5_000  # a restart waits at most this long to see a quorum of its committee
# After a restart the membership table is still filling: a member not heard of yet is not
# gone, so a restarted validator proposes no epoch for this long (the others still do).
_RESTART_QUIET_MS = 10_000

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
    form_stable_ms: int = 1_500  # the alive view must show `expect` members this long
    epoch_stable_ms: int = 2_000  # a membership difference must last this long to propose
    epoch_retry_ms: int = 5_000  # propose the same epoch again if it was not decided
    device_offers_max: int = DEVICE_OFFERS_PER_GATEWAY_MAX  # per gateway and round


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
    contributor_ids: list[str] = field(default_factory=list)
    epoch: int = 0

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
        self.roles_config = RolesConfig(validators_target=settings.committee_size)
        self.epochs: EpochTracker | None = None
        self._form_since_ms: int | None = None
        self._membership_due_ms = 0
        self._alive: dict[str, Capabilities] = {}  # serving members of this agent's view
        self._genesis_sent: dict[str, int] = {}  # peer -> when we last told it the genesis
        self._genesis_claims: dict[bytes, tuple[Genesis, set[str]]] = {}
        self._joined_ms: int | None = None  # when this agent adopted a running mesh
        self.epoch_log: list[dict[str, Any]] = []
        self._certifiers: tuple[str, ...] = ()  # the committee of the batches being decided
        # Suspect, dead or departed members: sends to them would only queue behind a
        # connection nobody acknowledges (send_timeout_ms each) and fill the agent's
        # bounded send backlog, starving the live peers (SWIM acks included).
        self._unreachable: set[str] = set()
        self.settings_aggregators = RoundsConfig(params=1).aggregators_per_round
        # A gateway's bridged devices: called with (round, model, deadline_ms) before this
        # agent's own training is queued (edge/device_rounds.py offers their updates).
        self.extra_training: Callable[[int, bytes, int], None] | None = None
        # A restart: the genesis this state dir kept and the log it persisted under it.
        self.restored: dict[str, Any] | None = None  # what the restart rebuilt (status)
        self.disabled: str | None = None  # why rounds stay off (an unreadable stored log)
        self._restart_since_ms: int | None = None
        self._kept = self._kept_log()

    # -- formation ----------------------------------------------------------------------

    def maybe_form(self, members: list[dict[str, Any]]) -> None:
        """Form the genesis once exactly the expected members have been alive for a while.

        The wait (`form_stable_ms`) lets a late joiner, whose view passes through
        `expect` members on its way up, hear the running mesh's genesis first.
        """
        if self.genesis is not None or self.disabled is not None:
            return
        now = self.agent.clock.now_ms()
        if self._kept is not None:
            self._maybe_restart(now)
            return
        alive = [m for m in members if m["state"] == "alive"]
        if len(alive) != self.settings.expect:
            self._form_since_ms = None
            return
        if self._form_since_ms is None:
            self._form_since_ms = now
        if now - self._form_since_ms < self.settings.form_stable_ms:
            return
        roles = {m["peer_id"]: tuple(m["capabilities"].get("roles_allowed", ())) for m in alive}
        initial = self.store.put_blob(self.initial_model)
        genesis = genesis_roles(
            self.agent.config.mesh, roles, initial, self.settings.committee_size
        )
        self._start(genesis)

    def _start(self, genesis: Genesis, joining: bool = False, kept: KeptLog | None = None) -> None:
        """Run the replica (member or observer) and the round machine of `genesis`.

        With `kept` (a restart) the replica resumes from the persisted records and
        the tracker and round machine replay the decided batches among them first.
        """
        self.genesis = genesis
        if kept is None:
            self._keep_genesis(genesis)
        self._certifiers = genesis.committee
        config = RoundsConfig(
            params=self.params,
            rounds_total=self.settings.rounds,
            rule=self.settings.rule,
            window_ms=self.settings.window_ms,
            takeover_ms=self.settings.takeover_ms,
            abort_after_ms=self.settings.window_ms + 3 * self.settings.takeover_ms + 3_000,
            contributors_min=max(1, (len(genesis.cohort) + 1) // 2),
            device_offers_per_gateway_max=self.settings.device_offers_max,
        )
        members = set(genesis.cohort) | set(genesis.aggregators) | set(genesis.committee)
        adverts = {p: c for p, c in self._serving().items() if p in members}
        settings = self.settings
        view = make_view(0, adverts)
        self.epochs = EpochTracker(
            view, self.roles_config, settings.epoch_stable_ms, settings.epoch_retry_ms
        )
        rng = random.Random(os.urandom(16))
        self.replica = Replica(
            self.agent.identity, verify_from_peer_id, genesis.consensus_committee(), rng,
            ConsensusConfig(), None if kept is None else kept.durable,
            validate_entry=self._validate_entry, reconfigure=self.epochs.reconfigure,
        )  # fmt: skip
        self.machine = RoundsMachine(self.agent.identity, verify_from_peer_id, genesis, config,
                                     self.initial_model, random.Random(os.urandom(16)))  # fmt: skip
        log.info("genesis %s: committee %s, %d trainers, I am %s",
                 "kept" if kept else "adopted" if joining else "formed",
                 ",".join(p[-6:] for p in genesis.committee), len(genesis.cohort),
                 self.roles())  # fmt: skip
        now = self.agent.clock.now_ms()
        if joining:
            self._joined_ms = now
        if kept is not None:
            self._replay(kept, now)
        self.replica.start(now)
        self.machine.start(now)
        self.drain()
        early, self.early = self.early, []
        for sender, envelope in early:
            self.on_envelope(sender, envelope)

    def _validate_entry(self, entry: Entry) -> bool:
        """Stateless shape checks (same answer on every replica); epochs must staff rounds."""
        if entry.kind == KIND_EPOCH:
            try:
                decode_epoch_entry(entry, self.roles_config)
            except EntryError:
                return False
            return True
        return consensus_entry_validator(entry)

    # -- restart from the state dir ----------------------------------------------------------

    def _keep_genesis(self, genesis: Genesis) -> None:
        """Write the genesis to the state file (before the replica persists anything)."""
        self.agent.store.set_meta(_META_GENESIS, json.dumps({
            "mesh": genesis.mesh, "committee": genesis.committee, "cohort": genesis.cohort,
            "aggregators": genesis.aggregators, "model": genesis.initial_model.hex(),
        }))  # fmt: skip

    def _kept_log(self) -> tuple[Genesis, KeptLog] | None:
        """The genesis this state dir kept (same mesh and initial model) and its PBFT log."""
        raw = self.agent.store.get_meta(_META_GENESIS)
        if raw is None:
            return None
        try:
            kept = json.loads(raw)
            genesis = Genesis(kept["mesh"], tuple(kept["committee"]), tuple(kept["cohort"]),
                              tuple(kept["aggregators"]), bytes.fromhex(kept["model"]))  # fmt: skip
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as error:
            log.warning("ignoring the stored rounds genesis: %s", error)
            return None
        if genesis.mesh != self.agent.config.mesh or genesis.initial_model != self.store.put_blob(
            self.initial_model
        ):
            return None
        try:
            replica_log = load_replica_log(
                self._log_connection, self._log_table, genesis.genesis_id,
                genesis.consensus_committee(),
            )  # fmt: skip
        except ReplicaLogError as error:
            # Never start over on a committee member's lost votes: stay out, say why.
            log.error("rounds stay off: %s", error)
            self.disabled = str(error)
            return None
        return genesis, replica_log

    def _maybe_restart(self, now: int) -> None:
        """Resume the kept genesis once f + 1 others of the last committee are in the view.

        They answer the replica's state requests (sent once at start to every member);
        after `_RESTART_WAIT_MS` it resumes anyway and polls.
        """
        assert self._kept is not None
        genesis, kept = self._kept
        members = genesis.committee if kept.durable is None else kept.durable.members
        others = set(members) - {self.peer_id}
        needed = min(len(others), (len(members) - 1) // 3 + 1)
        if self._restart_since_ms is None:
            self._restart_since_ms = now
        waited = now - self._restart_since_ms >= _RESTART_WAIT_MS
        if len(others & set(self._serving())) < needed and not waited:
            return
        self._kept = None
        self._start(genesis, kept=kept)

    def _replay(self, kept: KeptLog, now: int) -> None:
        """Feed the kept decided batches and epoch changes to the tracker and round machine.

        The same calls, in the same order, as when the replica executed them; the
        replica itself resumes after them (its `DurableState`), so no entry is
        applied twice. Only round records come out: the replay's proposals,
        trainings and fetches are stale and dropped.
        """
        tracker, machine, replica = self.epochs, self.machine, self.replica
        assert tracker is not None and machine is not None and replica is not None

        def on_epoch(step: PersistEpoch) -> None:
            self._on_epoch(Event("epoch", {"epoch": step.epoch, "members": step.members,
                                           "start_seq": step.start_seq}))  # fmt: skip

        def on_output(item: Send | Event) -> None:
            if isinstance(item, Event):
                self._replayed_event(item, now)

        entries = replay_decided(kept.steps, tracker, machine, now, on_epoch, on_output)
        if kept.gaps:
            self._count("replay_gap")
            log.warning("the rounds log has %d gaps (state transfer): rounds state may lag",
                        kept.gaps)  # fmt: skip
        elif kept.durable is not None and tracker.chain != kept.durable.chain_hash:
            self._count("replay_chain_mismatch")
            log.error("replayed hash chain differs from the replica's")
        machine.resume(now)
        current = machine.current
        for digest in {machine.global_digest, current.base if current else b""}:
            data = self._stored_blob(digest)
            if data is not None:
                machine.on_blob(self.peer_id, data, now)
        self.restored = {
            "at_ms": now, "records": kept.records, "batches": kept.batches, "entries": entries,
            "gaps": kept.gaps, "seq": replica.last_executed, "epoch": tracker.committed.epoch,
            "closed_round": machine.closed_round,
        }  # fmt: skip
        log.info("rounds log replayed: %d batches, %d entries, epoch %d, round %d closed",
                 kept.batches, entries, tracker.committed.epoch, machine.closed_round)  # fmt: skip

    def _replayed_event(self, item: Event, now: int) -> None:
        """A replayed round event: rebuild the in-memory record (the table has it already)."""
        data = dict(item.data)
        if item.kind == "round_started":
            number = data["round"]
            self.records[number] = RoundRecord(number, now, data["model"].hex(),
                                               epoch=data["epoch"])  # fmt: skip
        elif item.kind == "round_committed":
            self._record_committed(data, now)
        elif item.kind == "round_aborted":
            self._record_aborted(data, now)

    def _stored_blob(self, digest: bytes) -> bytes | None:
        if len(digest) != 32:
            return None
        try:
            return self.store.get_blob(digest)
        except ModelStoreError:
            return None

    # -- membership epochs -----------------------------------------------------------------

    def _serving(self) -> dict[str, Capabilities]:
        """Alive or suspect members with an advert in this agent's membership view."""
        machine = self.agent.machine
        if machine is None:
            return {}
        serving: dict[str, Capabilities] = {}
        members = machine.status()
        self._unreachable = {m["peer_id"] for m in members if m["state"] != "alive"}
        for member in members:
            if member["state"] not in self.roles_config.states_serving:
                continue
            record = machine.member(member["peer_id"])
            if record is not None and record.advert is not None:
                serving[member["peer_id"]] = record.advert.capabilities
        return serving

    def _check_membership(self, now: int) -> None:
        """Every `_MEMBERSHIP_CHECK_MS`: form, tell joiners the genesis, propose an epoch."""
        self._membership_due_ms = now + _MEMBERSHIP_CHECK_MS
        self._alive = self._serving()
        machine = self.agent.machine
        if self.genesis is None:
            if machine is not None:
                self.maybe_form(machine.status())
            return
        tracker, replica = self.epochs, self.replica
        if tracker is None or replica is None:
            return
        committed = set(tracker.committed.peers)
        for peer in sorted(set(self._alive) - committed - {self.peer_id}):
            if now - self._genesis_sent.get(peer, -_GENESIS_RESEND_MS) >= _GENESIS_RESEND_MS:
                self._genesis_sent[peer] = now
                self._send_genesis(peer)
        for peer in list(self._genesis_sent):
            if peer not in self._alive:
                del self._genesis_sent[peer]  # bounded by the membership view
        restored = self.restored
        if replica.is_member and (restored is None or now - restored["at_ms"] >= _RESTART_QUIET_MS):
            entry = tracker.proposal(self._alive, now)
            if entry is not None:
                log.info("proposing epoch %d (%d members)", tracker.committed.epoch + 1,
                         len(self._alive))  # fmt: skip
                replica.propose(entry, now)
                self.drain()

    def _send_genesis(self, peer: str) -> None:
        genesis = self.genesis
        assert genesis is not None
        members = sorted(set(genesis.cohort) | set(genesis.aggregators) | set(genesis.committee))
        roles = {p: [r for r, group in (("trainer", genesis.cohort),
                                        ("aggregator", genesis.aggregators),
                                        ("validator", genesis.committee)) if p in group]
                 for p in members}  # fmt: skip
        body = {"members": [[p, roles[p]] for p in members], "model": genesis.initial_model,
                "size": self.settings.committee_size}  # fmt: skip
        self._send_frame(peer, GENESIS_TYPE.name, body)

    def _on_genesis_claim(self, sender: str, body: dict[str, Any]) -> None:
        """A running mesh's genesis: adopt it once f + 1 of its members told us the same one."""
        if self.genesis is not None or self._kept is not None or self.disabled is not None:
            return  # a restarting agent resumes its own genesis (and its signed votes)
        try:
            roles = {}
            for item in body["members"]:
                peer, allowed = item
                if type(peer) is not str or type(allowed) is not list:
                    raise RolesError("member is [peer id, [roles]]")
                roles[peer] = tuple(str(r) for r in allowed)
            size = min(int(body["size"]), self.settings.committee_size)
            genesis = genesis_roles(self.agent.config.mesh, roles, body["model"], size)
        except (RolesError, TypeError, ValueError):
            self._count("dropped_bad_genesis")
            return
        if genesis.initial_model != self.store.put_blob(self.initial_model):
            self._count("dropped_genesis_other_model")
            return
        if sender not in roles or self.peer_id in roles:
            self._count("dropped_genesis_not_member")
            return
        key = genesis.genesis_id
        if key not in self._genesis_claims and len(self._genesis_claims) >= _GENESIS_CLAIMS_MAX:
            self._count("dropped_genesis_table_full")
            return
        claimed, senders = self._genesis_claims.setdefault(key, (genesis, set()))
        senders.add(sender)
        if len(senders) >= claimed.f + 1:
            self._genesis_claims.clear()
            self._start(claimed, joining=True)

    def _on_epoch(self, event: Event) -> None:
        """The replica reconfigured: derive the epoch's roles, switch at the next round start."""
        tracker, machine = self.epochs, self.machine
        assert tracker is not None and machine is not None
        data = event.data
        try:
            roles = tracker.on_epoch(data["epoch"], data["start_seq"], tuple(data["members"]))
        except (RolesError, KeyError) as error:
            self._count("epoch_roles_failed")
            log.error("epoch %s: cannot derive roles: %s", data.get("epoch"), error)
            return
        now = self.agent.clock.now_ms()
        self.epoch_log.append(
            {
                "epoch": roles.epoch,
                "at_ms": now,
                "seq": data["start_seq"],
                "members": len(tracker.committed.peers),
                "committee": list(roles.committee),
                "trainers": len(roles.cohort),
                "aggregators": list(roles.aggregators[: self.settings_aggregators]),
            }
        )
        del self.epoch_log[:-64]
        log.info("epoch %d: %d members, committee %s, I am %s", roles.epoch,
                 len(tracker.committed.peers), ",".join(p[-6:] for p in roles.committee),
                 self._roles_of(roles))  # fmt: skip
        self._certifiers = roles.committee
        machine.set_epoch(roles, now)

    def _roles_of(self, roles: EpochRoles) -> list[str]:
        groups = (
            ("trainer", roles.cohort),
            ("aggregator", roles.aggregators[: self.settings_aggregators]),
            ("validator", roles.committee),
        )
        return [name for name, group in groups if self.peer_id in group]

    def roles(self) -> list[str]:
        """This agent's roles in the latest committed epoch (the genesis before the first)."""
        genesis, tracker = self.genesis, self.epochs
        if genesis is None:
            return []
        if tracker is not None and tracker.roles is not None:
            return self._roles_of(tracker.roles)
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
        if envelope.type_name == GENESIS_TYPE.name:
            self._on_genesis_claim(sender, dict(envelope.body))
            return
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
        deadlines.append(self._membership_due_ms)
        return min((d for d in deadlines if d is not None), default=None)

    def tick(self, now_ms: int) -> None:
        if now_ms >= self._membership_due_ms:
            self._check_membership(now_ms)
        for machine in (self.replica, self.machine):
            if machine is None:
                continue
            deadline = machine.next_deadline()
            if deadline is not None and deadline <= now_ms:
                machine.tick(now_ms)
        self.drain()

    # -- outputs ------------------------------------------------------------------------

    def _replica_output(self, item: Send | Event) -> None:
        if isinstance(item, Event) and item.kind == "epoch":
            self._on_epoch(item)
        else:
            super()._replica_output(item)

    def _on_decided(self, event: Event) -> None:
        replica, machine, tracker = self.replica, self.machine, self.epochs
        assert replica is not None and machine is not None and tracker is not None
        entries, certificate = event.data["entries"], event.data["certificate"]
        tracker.on_decided(event.data["seq"], event.data["digest"])
        certifiers = self._certifiers  # the batch's committee (an epoch batch changed replica's)
        if self.peer_id in certifiers:
            # Everyone outside that committee (observers, joiners, its successors) gets it.
            push = StateReply((CertifiedBatch(entries, certificate),), None, None, None)
            committed = set(tracker.committed.peers) | set(self._alive)
            for peer in sorted(committed - set(certifiers) - {self.peer_id}):
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
        if peer in self._unreachable:
            self._count("skipped_send_not_alive")
            return
        size = self.agent.send_envelope(peer, type_name, body)
        self.bytes_out += size

    # -- events of the round machine ------------------------------------------------------

    def _on_send_blob(self, data: dict[str, Any]) -> None:
        blob: bytes = data["data"]
        if data["to"] in self._unreachable:
            self._count("skipped_send_not_alive")
            return
        self.bytes_out += len(blob)
        self.agent.send_blob(data["to"], blob)

    def _on_propose(self, data: dict[str, Any]) -> None:
        assert self.replica is not None
        self.replica.propose(data["entry"], self.agent.clock.now_ms())

    def _on_round_started(self, data: dict[str, Any]) -> None:
        number = data["round"]
        now = self.agent.clock.now_ms()
        self.records[number] = RoundRecord(number, now, data["model"].hex(), epoch=data["epoch"])
        self.store.record_round(number, base=data["model"].hex(), started_ms=now)

    def _on_train(self, data: dict[str, Any]) -> None:
        number, model, deadline_ms = data["round"], data["model"], data["deadline_ms"]
        if self.extra_training is not None:
            self.extra_training(number, model, deadline_ms)
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

    def _record_committed(self, data: dict[str, Any], now: int) -> RoundRecord:
        number = data["round"]
        record = self.records.setdefault(number, RoundRecord(number, now, ""))
        record.status, record.closed_ms = "committed", now
        record.model = data["model"].hex()
        record.aggregator = data["aggregator"]
        record.validators = list(data["validators"])
        record.contributors = len(data["contributors"])
        record.contributor_ids = [trainer for trainer, _ in data["contributors"]]
        return record

    def _record_aborted(self, data: dict[str, Any], now: int) -> RoundRecord:
        number = data["round"]
        record = self.records.setdefault(number, RoundRecord(number, now, ""))
        record.status, record.closed_ms = "aborted", now
        return record

    def _on_round_committed(self, data: dict[str, Any]) -> None:
        number = data["round"]
        now = self.agent.clock.now_ms()
        record = self._record_committed(data, now)
        assert record.model is not None and record.aggregator is not None
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
        self._record_aborted(data, now)
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
            "committee": list(self.replica.committee.members) if self.replica else [],
            "epoch": self.epochs.status() if self.epochs else None,
            "epochs": list(self.epoch_log),
            "joined_ms": self._joined_ms,
            "restored": self.restored,
            "disabled": self.disabled,
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
