"""Microcontrollers in the running agent: the gateway's UDP bridge and bridged-device views.

`BridgeHost` lives inside `Agent` (edge/agent.py) on every agent:
- on a gateway (`agent join --gateway`), it runs `GatewayServer` in the agent's
  event loop, with the device registry in the agent's state dir, and sends every
  live member the signed list of bridged devices ("gateway.bridged",
  gateway_peer/bridged.py): every `refresh_ms`, on a change (at most every
  `change_min_ms`), and at once to a member it has not sent the list to yet;
- on every agent, it keeps the devices other gateways bridge (`BridgedView`),
  verified and bounded, and expires them when their gateway leaves, dies or
  stops refreshing. `agent status` lists them as members with `bridged_via`.
Bridged devices are not SWIM members: SWIM probes every member over QUIC, and a
device has no QUIC endpoint (docs/microcontrollers.md).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from agentmesh.core.membership.table import LIVE_STATES
from agentmesh.core.node import Event
from agentmesh.core.wire import Envelope
from agentmesh.edge.device_rounds import DeviceRounds
from agentmesh.gateway_peer.bridged import (
    BRIDGED_TYPE,
    BRIDGED_TYPES,
    PUBLISHED_STATES,
    AdvertCache,
    BridgedEntry,
    BridgedView,
    bridged_bodies,
    bridged_item,
)
from agentmesh.gateway_peer.limits import DEFAULT_BRIDGE_LIMITS, BridgeLimits
from agentmesh.gateway_peer.registry import RegistryError
from agentmesh.gateway_peer.server import GatewayServer, parse_host_port

if TYPE_CHECKING:
    from agentmesh.edge.agent import Agent

log = logging.getLogger("agentmesh.gateway")

MCU_PORT_DEFAULT = 7448
_LOGGED_EVENTS = frozenset(("device_joined", "device_state", "model_loaded", "model_failed"))
__all__ = [
    "BRIDGED_TYPES",
    "BridgeHost",
    "add_gateway_flags",
    "bridged_mark",
    "gateway_listen_from",
]


def add_gateway_flags(join: argparse.ArgumentParser) -> None:
    """`--gateway` and `--mcu-listen` of `agent join`."""
    group = join.add_argument_group("microcontroller gateway (docs/microcontrollers.md)")
    group.add_argument(
        "--gateway",
        action="store_true",
        help="bridge microcontrollers into the mesh (device keys: agent firmware build "
        "--state-dir of this agent)",
    )
    group.add_argument(
        "--mcu-listen",
        type=_host_port,
        metavar="HOST:PORT",
        help=f"UDP address for microcontrollers (default 0.0.0.0:{MCU_PORT_DEFAULT}; "
        "127.0.0.1 with --loopback)",
    )
    group.add_argument(
        "--mcu-serial",
        action="append",
        default=[],
        metavar="DEVICE",
        help="also accept microcontrollers on this serial line (SLIP-framed, 115200 8N1; "
        "repeatable), e.g. /dev/ttyUSB0",
    )


def _host_port(text: str) -> tuple[str, int]:
    try:
        return parse_host_port(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def gateway_listen_from(args: argparse.Namespace) -> tuple[str, int] | None:
    """The UDP address the gateway listens on; None without --gateway."""
    if not args.gateway:
        if args.mcu_listen is not None:
            raise ValueError("--mcu-listen needs --gateway")
        return None
    if args.mcu_listen is not None:
        listen: tuple[str, int] = args.mcu_listen
        return listen
    return ("127.0.0.1" if args.loopback else "0.0.0.0", MCU_PORT_DEFAULT)


def gateway_serial_from(args: argparse.Namespace) -> tuple[str, ...]:
    """The serial lines (--mcu-serial) the gateway reads; () without any."""
    paths = tuple(getattr(args, "mcu_serial", None) or ())
    if paths and not args.gateway:
        raise ValueError("--mcu-serial needs --gateway")
    if len(set(paths)) != len(paths):
        raise ValueError("--mcu-serial: the same device given twice")
    return paths


class BridgeHost:
    """The bridge of one agent: gateway side when configured, receiver side always."""

    def __init__(
        self,
        agent: Agent,
        listen: tuple[str, int] | None,
        serial_paths: tuple[str, ...] = (),
        limits: BridgeLimits = DEFAULT_BRIDGE_LIMITS,
    ) -> None:
        self.agent = agent
        self.listen = listen
        self.serial_paths = serial_paths
        self.limits = limits
        self.view = BridgedView(
            agent.identity.peer_id, self._is_live_member, self._is_member, limits
        )
        self.server: GatewayServer | None = None
        self.device_rounds: DeviceRounds | None = None
        self.mcu_address: tuple[str, int] | None = None
        self.counters: dict[str, int] = {}
        self._cache = AdvertCache(limits.devices_per_gateway_max)
        self._published: list[dict[str, Any]] = []  # own devices, status shape
        self._bodies: list[dict[str, Any]] = []
        self._published_key: tuple[tuple[Any, ...], ...] | None = None
        self._published_ms: int | None = None
        self._generation = 0
        self._sent_to: set[str] = set()
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the microcontroller endpoint (gateways) and start the bridge loop."""
        if self.listen is not None:
            from agentmesh.edge.agent import AgentError  # agent.py imports this module

            try:
                self.server = GatewayServer(
                    self.agent.config.state_dir,
                    self.listen,
                    identity=self.agent.identity,
                    event_hook=self._on_gateway_event,
                    serial_paths=self.serial_paths,
                )
            except RegistryError as error:
                raise AgentError(f"gateway device registry: {error}") from None
            self.mcu_address = await self.server.start()
            if self.agent.rounds is not None:  # devices' samples become their round updates
                self.device_rounds = DeviceRounds(self.agent.rounds, self.server)
            log.info("gateway: microcontrollers on udp %s:%d", *self.mcu_address)
            for path in self.serial_paths:
                log.info("gateway: microcontrollers on serial %s", path)
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="bridge")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self.server is not None:
            await self.server.close()

    async def _loop(self) -> None:
        while True:
            now_ms = self.agent.clock.now_ms()
            self.view.expire(now_ms)
            if self.server is not None:
                self._drain_events(self.server)
                self._publish(now_ms)
            await asyncio.sleep(self.limits.loop_ms / 1000)

    # -- receiver side ------------------------------------------------------------------

    def on_envelope(self, peer_id: str, envelope: Envelope) -> None:
        """A schema-checked, signature-verified "gateway.bridged" from `peer_id`."""
        self.view.receive(peer_id, envelope.body, self.agent.clock.now_ms())

    def _member_state(self, peer_id: str) -> str | None:
        machine = self.agent.machine
        member = machine.member(peer_id) if machine is not None else None
        return None if member is None else str(member.state)

    def _is_live_member(self, peer_id: str) -> bool:
        return self._member_state(peer_id) in LIVE_STATES

    def _is_member(self, peer_id: str) -> bool:
        return self._member_state(peer_id) is not None

    # -- gateway side -------------------------------------------------------------------

    def _on_gateway_event(self, event: Event) -> None:
        if event.kind in _LOGGED_EVENTS:
            details = " ".join(f"{key}={value}" for key, value in event.data.items())
            log.info("gateway %s %s", event.kind, details)

    def _drain_events(self, server: GatewayServer) -> None:
        """Nothing consumes device events yet: keep the bounded queue from filling up."""
        while not server.events.empty():
            server.events.get_nowait()

    def _live_members(self) -> list[str]:
        machine = self.agent.machine
        if machine is None:
            return []
        own = self.agent.identity.peer_id
        return [
            str(member["peer_id"])
            for member in machine.status()
            if member["state"] in LIVE_STATES and member["peer_id"] != own
        ]

    def _publish(self, now_ms: int) -> None:
        """Send the signed list when it is due or changed; to new members at once."""
        assert self.server is not None
        adverts = [a for a in self.server.bridged_adverts() if a.state in PUBLISHED_STATES]
        key = tuple(
            (a.peer_id, a.state, a.incarnation, a.seq, a.mcu.get("model_id")) for a in adverts
        )
        last_ms = self._published_ms
        due = (
            last_ms is None
            or now_ms - last_ms >= self.limits.refresh_ms
            or (key != self._published_key and now_ms - last_ms >= self.limits.change_min_ms)
        )
        live = self._live_members()
        if due:
            self._generation = max(now_ms, self._generation + 1)
            items, self._published = [], []
            for advert in adverts:
                try:
                    signed = self._cache.sign(advert, self.server.signer_for(advert.device_id))
                except ValueError:  # AdvertError: capabilities out of range; leave it out
                    self._count("bridged_unsignable")
                    continue
                items.append(bridged_item(advert, signed))
                entry = BridgedEntry(
                    signed, advert.device_id, advert.state, advert.mcu, self._generation, now_ms
                )
                self._published.append(entry.to_status(advert.bridged_via))
            self._bodies = bridged_bodies(self.agent.identity.peer_id, self._generation, items)
            self._published_key, self._published_ms = key, now_ms
            self._sent_to = set()
        else:
            self._sent_to &= set(live)
        targets = [peer_id for peer_id in live if peer_id not in self._sent_to]
        for peer_id in targets:
            for body in self._bodies:
                self.agent.send_envelope(peer_id, BRIDGED_TYPE.name, body)
                self._count("bridged_sent")
        self._sent_to.update(targets)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- status -------------------------------------------------------------------------

    def members_status(self) -> list[dict[str, Any]]:
        """Bridged devices for `agent status`: this gateway's own, then other gateways'."""
        return self._published + self.view.members_status()

    def self_status(self) -> dict[str, Any]:
        """The "bridge" entry of `agent status --json` "self"."""
        status: dict[str, Any] = {
            "bridge": {
                "gateways": self.view.gateways(),
                "counters": {**self.view.counters, **self.counters},
            }
        }
        if self.server is not None and self.mcu_address is not None:
            status["gateway"] = {
                "mcu_listen": "{}:{}".format(*self.mcu_address),
                "devices": _count_states(self.server.devices_status()),
                "counters": self.server.counters(),
                "mcu_serial": self.server.serial_status(),
            }
            if self.device_rounds is not None:
                status["gateway"]["device_rounds"] = self.device_rounds.status()
        return status


def bridged_mark(member: dict[str, Any]) -> str:
    """The human `agent status` table's note for a bridged device."""
    via = member.get("bridged_via")
    return f"  bridged via {via[:20]}… ({member.get('device_id', '?')})" if via else ""


def _count_states(devices: list[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for device in devices:
        counts[device["state"]] = counts.get(device["state"], 0) + 1
    return counts
