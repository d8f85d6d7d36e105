"""The agent host: drives the sans-I/O machines with real QUIC, mDNS, SQLite and a clock.

One asyncio loop, three kinds of input (frames from the transport, peers found
by discovery or bootstrap, timers) and one rule after every input: persist what
the machine says must be durable, then send its outbox. The machines never see
sockets or clocks; this module never makes protocol decisions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmesh.core.admission import (
    AdmissionPolicy,
    InvitePolicy,
    InviteToken,
    OpenPolicy,
    PskPolicy,
    issue_invite,
)
from agentmesh.core.identity import Identity
from agentmesh.core.membership import (
    MembershipConfig,
    MembershipMachine,
    MembershipWireError,
    message_from_wire,
)
from agentmesh.core.membership.capabilities import ROLES
from agentmesh.core.node import Event, Send
from agentmesh.core.wire import DEFAULT_REGISTRY, Field, MessageType, WireError, open_envelope, seal
from agentmesh.edge.control import ControlServer
from agentmesh.edge.discovery import FoundPeer, MdnsDiscovery, default_address
from agentmesh.edge.gateway_host import BRIDGED_TYPES, BridgeHost
from agentmesh.edge.keystore import load_or_create_identity
from agentmesh.edge.probe import probe_capabilities
from agentmesh.edge.rounds_host import ROUND_TYPES, RoundsHost, RoundsSettings
from agentmesh.edge.state import StateStore
from agentmesh.edge.tasks_host import TASK_TYPES, TasksHost, TasksSettings, override_capabilities
from agentmesh.edge.transport import Address, QuicTransport, TransportClosed, TransportError
from agentmesh.edge.waiting import wait_event, wait_within

log = logging.getLogger("agentmesh.agent")

# Membership messages travel in one envelope type; the body's "m" is the
# message's own wire form (core/membership/messages.py validates it).
MEMBERSHIP_TYPE = MessageType(16, "membership", {"m": Field("map", size_max=256)}, 60 * 1024)
DEFAULT_REGISTRY.register(MEMBERSHIP_TYPE)

_SENDS_IN_FLIGHT_MAX = 512
# A dead peer's sends each wait send_timeout_ms; without a per-peer share, a few dead
# peers fill the whole backlog and the sends to live peers (SWIM acks!) are dropped.
# The share counts sends that wait, not those spawned in one burst and not yet run.
_SENDS_IN_FLIGHT_PER_PEER_MAX = 64
_SNAPSHOT_INTERVAL_S = 5.0
_LEAVE_LINGER_S = 0.5
_DIAL_TIMEOUT_S = 5.0
_META_INCARNATION = "membership.incarnation"
_META_MESH = "mesh"


class AgentError(Exception):
    """The agent cannot start as configured; the message says why and what to do."""


@dataclass
class AgentConfig:
    """How to run one agent (the flags of `agent join`)."""

    state_dir: Path
    mesh: str = "default"
    listen_host: str = "0.0.0.0"
    listen_port: int = 0
    peers: list[Address] = field(default_factory=list)
    admission: str = "psk"
    mesh_key: bytes | None = None
    invite_token: str | None = None
    loopback: bool = False
    roles: tuple[str, ...] = ROLES
    discovery: bool = True
    membership: MembershipConfig | None = None
    rounds: RoundsSettings | None = None  # federated rounds (agent join --expect ...)
    tasks: TasksSettings | None = None  # task distribution (agent join --tasks N)
    gateway_listen: tuple[str, int] | None = None  # agent join --gateway: UDP for MCUs
    gateway_serial: tuple[str, ...] = ()  # agent join --gateway --mcu-serial: tty paths


class HostClock:
    """Wall-clock milliseconds that never go backwards (start time + monotonic elapsed)."""

    def __init__(self) -> None:
        self._wall_start_ms = int(time.time() * 1000)
        self._mono_start = time.monotonic()

    def now_ms(self) -> int:
        return self._wall_start_ms + int((time.monotonic() - self._mono_start) * 1000)


def build_policy(config: AgentConfig) -> AdmissionPolicy:
    """The admission policy for the configured mesh; AgentError when a credential is missing."""
    if config.admission == "psk":
        if config.mesh_key is None:
            raise AgentError(
                "admission 'psk' needs a mesh key: --mesh-key-file FILE, or the "
                "AGENTMESH_MESH_KEY environment variable (or use --admission open for a "
                "local experiment)"
            )
        return PskPolicy(config.mesh, config.mesh_key)
    if config.admission == "invite":
        return InvitePolicy(config.mesh, own_token=config.invite_token)
    if config.admission == "open":
        return OpenPolicy(config.mesh)
    raise AgentError(f"unknown admission policy {config.admission!r}: psk, invite or open")


class Agent:
    """One running agent: membership over QUIC, found by mDNS, persisted in SQLite."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.clock = HostClock()
        self.identity: Identity = load_or_create_identity(config.state_dir)
        self.policy = build_policy(config)
        self.store = StateStore(config.state_dir)
        self.counters: dict[str, int] = {}
        self.transport = QuicTransport(
            self.identity,
            "127.0.0.1" if config.loopback else config.listen_host,
            config.listen_port,
        )
        self.machine: MembershipMachine | None = None
        self.discovery: MdnsDiscovery | None = None
        self.rounds: RoundsHost | None = None
        self.tasks: TasksHost | None = None
        self.bridge = BridgeHost(self, config.gateway_listen, config.gateway_serial)
        self.control = ControlServer(
            config.state_dir, {"status": self._status_command, "rounds": self._rounds_command}
        )
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._seq = self.clock.now_ms() * 1000
        self._sends: set[asyncio.Task[None]] = set()
        self._sends_per_peer: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._incarnation_persisted = 0
        self.started = asyncio.Event()

    # -- lifecycle ----------------------------------------------------------------------

    async def run(self) -> None:
        """Run until `stop()`; then leave gracefully and close everything."""
        try:
            await self._start()
            self.started.set()
            await self._stopping.wait()
            await self._leave()
        finally:
            await self._close()

    def stop(self) -> None:
        self._stopping.set()

    async def _start(self) -> None:
        if self.policy.warning:
            log.warning(self.policy.warning)
        stored_mesh = self.store.get_meta(_META_MESH)
        if stored_mesh is not None and stored_mesh != self.config.mesh:
            log.warning("state dir was in mesh %r, now joining %r", stored_mesh, self.config.mesh)
        self.store.set_meta(_META_MESH, self.config.mesh)
        await self.transport.start()
        host, port = self.transport.local_address
        advertised = f"{self._advertised_host(host)}:{port}"
        # A restarted agent must rejoin above every incarnation it ever issued (SWIM §4.2:
        # others may hold it as dead at that incarnation). Persist before any message.
        stored = self.store.get_meta(_META_INCARNATION)
        incarnation = 0 if stored is None else int(stored) + 1
        self.store.set_meta(_META_INCARNATION, str(incarnation))
        self._incarnation_persisted = incarnation
        caps = probe_capabilities(self.config.roles, address=advertised)
        caps = override_capabilities(caps, self.config.tasks)  # labs and tests only
        self.machine = MembershipMachine(
            self.identity.peer_id,
            random.Random(os.urandom(16)),
            self.policy,
            signer=self.identity,
            config=self.config.membership,
            incarnation=incarnation,
            capabilities=caps,
            random_bytes=os.urandom,
        )
        if self.config.rounds is not None:
            self.rounds = RoundsHost(self, self.config.rounds)
        if self.config.tasks is not None:
            self.tasks = TasksHost(self, self.config.tasks)
            self.tasks.start()
        self.machine.start(self.clock.now_ms())
        self._after_input()
        await self.bridge.start()
        await self.control.start()
        log.info(
            "agent %s in mesh %r listening on %s (admission %s)",
            self.identity.peer_id,
            self.config.mesh,
            advertised,
            self.config.admission,
        )
        self._spawn(self._receive_loop())
        self._spawn(self._timer_loop())
        self._spawn(self._snapshot_loop())
        if self.config.discovery:
            summary = {"class": caps.device_class, "rt": caps.trainer_runtime}
            self.discovery = MdnsDiscovery(
                self.identity.peer_id, self.config.mesh, port, summary, self.config.loopback
            )
            await self.discovery.start()
            self._spawn(self._discovery_loop(self.discovery))
        for address in self.config.peers + self._remembered_addresses():
            self._spawn(self._bootstrap(address))

    def _advertised_host(self, bound_host: str) -> str:
        if bound_host not in ("0.0.0.0", ""):
            return bound_host
        return default_address()

    def _remembered_addresses(self) -> list[Address]:
        """Addresses of the members of our last view: a restarted agent rejoins through them."""
        found: list[Address] = []
        for member in self.store.load_members():
            address = (member.get("capabilities") or {}).get("address")
            if member.get("peer_id") != self.identity.peer_id and isinstance(address, str):
                parsed = _parse_address(address)
                if parsed is not None and member.get("state") in ("alive", "suspect"):
                    found.append(parsed)
        return found

    async def _leave(self) -> None:
        machine = self.machine
        if machine is None:
            return
        machine.leave(self.clock.now_ms())
        self._after_input()
        # Linger briefly so the Left gossip reaches a few members before we vanish.
        deadline = time.monotonic() + _LEAVE_LINGER_S
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            machine.tick(self.clock.now_ms())
            self._after_input()
        if self._sends:
            await asyncio.wait(list(self._sends), timeout=_LEAVE_LINGER_S)

    async def _close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in list(self._sends):
            task.cancel()
        if self.machine is not None:
            self._save_snapshot()
        if self.rounds is not None:
            self.rounds.close()
        if self.tasks is not None:
            self.tasks.close()
        with contextlib.suppress(OSError):
            await self.control.close()
        await self.bridge.close()
        if self.discovery is not None:
            await self.discovery.close()
        await self.transport.close()
        self.store.close()

    def _spawn(self, coroutine: Any) -> None:
        self._tasks.append(asyncio.get_running_loop().create_task(coroutine))

    # -- inputs -------------------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            try:
                incoming = await self.transport.receive()
            except TransportClosed:
                return
            if incoming.kind != "frame":
                if self.rounds is None:
                    self._count("drop_unexpected_blob")
                else:
                    self.rounds.on_blob(incoming.peer_id, incoming.payload)
                    self._wake.set()
                continue
            self._on_frame(incoming.peer_id, incoming.payload)

    def _on_frame(self, peer_id: str, payload: bytes) -> None:
        machine = self.machine
        assert machine is not None
        try:
            envelope = open_envelope(payload, mesh=self.config.mesh)
        except WireError as error:
            self._count(f"drop_{type(error).__name__}")
            return
        if envelope.sender != peer_id:
            # The envelope is signed by someone other than the connection's proven id.
            self._count("drop_sender_mismatch")
            return
        if envelope.type_name in ROUND_TYPES and self.rounds is not None:
            self.rounds.count_frame_in(len(payload))
            self.rounds.on_envelope(peer_id, envelope)
            self._wake.set()
            return
        if envelope.type_name in TASK_TYPES and self.tasks is not None:
            self.tasks.on_envelope(peer_id, envelope)
            return
        if envelope.type_name in BRIDGED_TYPES:
            self.bridge.on_envelope(peer_id, envelope)
            return
        if envelope.type_name != MEMBERSHIP_TYPE.name:
            self._count("drop_unhandled_type")
            return
        try:
            message = message_from_wire(envelope.body["m"])
        except MembershipWireError:
            self._count("drop_bad_membership_message")
            return
        machine.receive(message, peer_id, self.clock.now_ms())
        self._after_input()

    async def _timer_loop(self) -> None:
        machine = self.machine
        assert machine is not None
        while True:
            rounds = self.rounds
            deadlines = [machine.next_deadline(), rounds.next_deadline() if rounds else None]
            deadline = min((d for d in deadlines if d is not None), default=None)
            now = self.clock.now_ms()
            if deadline is None or deadline > now:
                wait_s = 1.0 if deadline is None else (deadline - now) / 1000
                self._wake.clear()
                await wait_event(self._wake, wait_s)
                continue
            membership_due = machine.next_deadline()
            if membership_due is not None and membership_due <= now:
                machine.tick(now)
                self._after_input()
            if rounds is not None:
                rounds.tick(now)

    async def _discovery_loop(self, discovery: MdnsDiscovery) -> None:
        while True:
            found = await discovery.found.get()
            self._spawn_send(found.peer_id, self._on_found(found))

    async def _on_found(self, found: FoundPeer) -> None:
        try:
            await wait_within(
                self.transport.dial((found.host, found.port), expected_peer_id=found.peer_id),
                _DIAL_TIMEOUT_S,
            )
        except (TransportError, TimeoutError, OSError):
            self._count("discovered_unreachable")
            return
        self._discovered(found.peer_id)

    async def _bootstrap(self, address: Address) -> None:
        for attempt in range(5):
            try:
                peer_id = await wait_within(self.transport.dial(address), _DIAL_TIMEOUT_S)
            except (TransportError, TimeoutError, OSError) as error:
                log.debug("bootstrap %s:%d failed: %s", address[0], address[1], error)
                await asyncio.sleep(min(0.5 * 2**attempt, 5.0))
                continue
            if peer_id != self.identity.peer_id:
                self._discovered(peer_id)
            return
        log.warning("bootstrap peer %s:%d unreachable", address[0], address[1])

    def _discovered(self, peer_id: str) -> None:
        machine = self.machine
        assert machine is not None
        machine.add_discovered(peer_id, self.clock.now_ms())
        self._after_input()

    # -- outputs ------------------------------------------------------------------------

    def _after_input(self) -> None:
        """Persist what must be durable, then send: the order the node contract demands."""
        machine = self.machine
        assert machine is not None
        incarnation = machine.durable_state()["incarnation"]
        if incarnation != self._incarnation_persisted:
            self.store.set_meta(_META_INCARNATION, str(incarnation))
            self._incarnation_persisted = incarnation
        for output in machine.take_outbox():
            if isinstance(output, Send):
                self._send(output)
            else:
                self._on_event(output)
        if self.rounds is not None and self.rounds.genesis is None:
            self.rounds.maybe_form(machine.status())
        self._wake.set()

    def _send(self, output: Send) -> None:
        self._seq += 1
        frame = seal(
            self.identity,
            MEMBERSHIP_TYPE.name,
            self.config.mesh,
            (self._seq,),
            {"m": output.message.to_wire()},
        )
        self._spawn_send(output.to, self._deliver(output.to, frame))

    def send_envelope(self, peer_id: str, type_name: str, body: Mapping[str, Any]) -> int:
        """Sign and send one message of a registered type; returns its size in bytes."""
        self._seq += 1
        try:
            frame = seal(self.identity, type_name, self.config.mesh, (self._seq,), body)
        except WireError as error:
            self._count(f"drop_unsendable_{type(error).__name__}")
            return 0
        self._spawn_send(peer_id, self._deliver(peer_id, frame))
        return len(frame)

    def send_blob(self, peer_id: str, data: bytes) -> None:
        """Stream a content-addressed blob to a peer (best effort, like frames)."""
        self._spawn_send(peer_id, self._deliver_blob(peer_id, data))

    async def _deliver_blob(self, peer_id: str, data: bytes) -> None:
        try:
            await self.transport.send_blob(peer_id, data, address=self._address_of(peer_id))
        except (TransportError, TimeoutError, OSError):
            self._count("blob_send_failed")

    def _spawn_send(self, peer_id: str, coroutine: Any) -> None:
        """Run one send as a task, within the agent-wide backlog and the peer's share."""
        if len(self._sends) >= _SENDS_IN_FLIGHT_MAX:
            self._count("drop_send_backlog")
            coroutine.close()
            return
        task = asyncio.get_running_loop().create_task(self._send_in_share(peer_id, coroutine))
        self._sends.add(task)
        task.add_done_callback(lambda done: self._send_done(coroutine, done))

    def _send_done(self, coroutine: Any, task: asyncio.Task[None]) -> None:
        self._sends.discard(task)
        coroutine.close()  # cancelled before its first step: never awaited, close it quietly

    async def _send_in_share(self, peer_id: str, coroutine: Any) -> None:
        """A peer's share counts only sends that wait (from their first step on): a burst
        to a live peer, each sent in its first step, must not fill it and drop the tail
        (PBFT frames and SWIM acks to live peers, which stalled the task log)."""
        waiting = self._sends_per_peer.get(peer_id, 0)
        if waiting >= _SENDS_IN_FLIGHT_PER_PEER_MAX:
            self._count("drop_send_peer_backlog")
            coroutine.close()
            return
        self._sends_per_peer[peer_id] = waiting + 1
        try:
            await coroutine
        finally:
            remaining = self._sends_per_peer.get(peer_id, 1) - 1
            if remaining > 0:
                self._sends_per_peer[peer_id] = remaining
            else:
                self._sends_per_peer.pop(peer_id, None)

    async def _deliver(self, peer_id: str, frame: bytes) -> None:
        address = self._address_of(peer_id)
        try:
            await self.transport.send(peer_id, frame, address=address)
        except (TransportError, TimeoutError, OSError):
            # Unreachable peers are the failure detector's business, not an error here.
            self._count("send_failed")

    def _address_of(self, peer_id: str) -> Address | None:
        known = self.transport.known_address(peer_id)
        if known is not None:
            return known
        machine = self.machine
        member = machine.member(peer_id) if machine is not None else None
        if member is None or member.advert is None or member.advert.capabilities.address is None:
            return None
        return _parse_address(member.advert.capabilities.address)

    def _on_event(self, event: Event) -> None:
        level = logging.WARNING if event.kind in _LOUD_EVENTS else logging.INFO
        details = " ".join(f"{key}={value}" for key, value in event.data.items())
        log.log(level, "%s %s", event.kind, details)

    # -- state and queries ----------------------------------------------------------------

    async def _snapshot_loop(self) -> None:
        while True:
            await asyncio.sleep(_SNAPSHOT_INTERVAL_S)
            self._save_snapshot()

    def _save_snapshot(self) -> None:
        if self.machine is not None:
            self.store.save_members(self.machine.status())

    def status(self) -> dict[str, Any]:
        """The `agent status --json` shape (BENCHMARKS.md)."""
        machine = self.machine
        members = machine.status() if machine is not None else []
        host, port = self.transport.local_address
        return {
            "self": {
                "peer_id": self.identity.peer_id,
                "mesh": self.config.mesh,
                "roles": self.rounds.roles() if self.rounds is not None else [],
                "address": f"{host}:{port}",
                "admission": self.config.admission,
                "incarnation": machine.incarnation if machine is not None else 0,
                "counters": {
                    **self.counters,
                    **(machine.counters if machine is not None else {}),
                    **{f"transport.{k}": v for k, v in self.transport.counters.items()},
                },
                **self.bridge.self_status(),
            },
            "members": members + self.bridge.members_status(),
        }

    async def _status_command(self, request: Mapping[str, Any]) -> dict[str, Any]:
        del request
        return self.status()

    async def _rounds_command(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Federated rounds as this agent saw them (accuracy per round, roles, traffic)."""
        del request
        if self.rounds is None:
            return {"enabled": False}
        return {"enabled": True, "peer_id": self.identity.peer_id, **self.rounds.status()}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


_LOUD_EVENTS = frozenset(
    ("admission_rejected", "join_rejected", "join_failed", "evidence", "member_dead")
)


def _parse_address(text: str) -> Address | None:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        return None
    return (host, int(port))


def make_invite(
    state_dir: Path, mesh: str, ttl_s: int, invitee: str | None = None, now_ms: int | None = None
) -> InviteToken:
    """An invite to `mesh` signed by the identity in `state_dir`, valid for `ttl_s`."""
    identity = load_or_create_identity(state_dir)
    now = int(time.time() * 1000) if now_ms is None else now_ms
    return issue_invite(identity, mesh, now + ttl_s * 1000, invitee)
