"""The asyncio host of the bridge: a UDP endpoint on --mcu-listen driving GatewayMachine.

This is the seam for the agent host (`agent join --gateway --mcu-listen HOST:PORT`):
construct a `GatewayServer` with the agent's identity and state dir, `await start()`,
gossip `bridged_adverts()` through membership (signing each with `signer_for`),
hand model updates to `send_model`, and read events (readings, inference results,
model loads, device liveness) from `events`. The server owns no other task.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from agentmesh.core.identity import Identity
from agentmesh.core.node import Event, Send
from agentmesh.edge.keystore import load_or_create_identity
from agentmesh.edge.waiting import wait_event
from agentmesh.gateway_peer.devices import BridgedAdvert
from agentmesh.gateway_peer.limits import DEFAULT_GATEWAY_LIMITS, GatewayLimits
from agentmesh.gateway_peer.machine import GatewayMachine
from agentmesh.gateway_peer.messages import Sample
from agentmesh.gateway_peer.model import MlpModel
from agentmesh.gateway_peer.registry import DeviceRegistry
from agentmesh.gateway_peer.serial_link import ADDRESS_PREFIX, SerialLink

TICK_MS_MAX = 50
EventHook = Callable[[Event], None]


def parse_host_port(text: str) -> tuple[str, int]:
    """ "HOST:PORT" (IPv6 as [addr]:port) -> (host, port); ValueError with a clear message."""
    host, sep, port_text = text.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host, int(port_text)


def monotonic_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, server: GatewayServer) -> None:
        self.server = server

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.server.on_datagram(data, f"{addr[0]}:{addr[1]}")

    def error_received(self, exc: Exception) -> None:
        # ICMP errors for devices that went away: counted, never fatal.
        self.server.machine.count("socket_errors")


class GatewayServer:
    """UDP server + machine + registry; `events` is a bounded queue for the host."""

    def __init__(
        self,
        state_dir: Path,
        listen: tuple[str, int],
        *,
        identity: Identity | None = None,
        limits: GatewayLimits = DEFAULT_GATEWAY_LIMITS,
        event_hook: EventHook | None = None,
        rng: random.Random | None = None,
        receive_buffer_bytes: int | None = None,
        serial_paths: tuple[str, ...] = (),
    ) -> None:
        self.state_dir = Path(state_dir)
        self.listen = listen
        self.limits = limits
        self.identity = identity or load_or_create_identity(self.state_dir)
        self.registry = DeviceRegistry(self.state_dir)
        self.machine = GatewayMachine(
            self.identity, self.registry.lookup, rng or random.Random(), limits
        )
        self.events: asyncio.Queue[Event] = asyncio.Queue(maxsize=limits.events_max)
        self.event_hook = event_hook
        self.receive_buffer_bytes = receive_buffer_bytes  # SO_RCVBUF for bursts of devices
        self._transport: asyncio.DatagramTransport | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        # Serial lines feed the same machine; their address is "serial:PATH".
        self.serial_links = {
            link.address: link
            for link in (
                SerialLink(path, self.on_datagram, limits.datagram_bytes_max)
                for path in serial_paths
            )
        }

    @property
    def peer_id(self) -> str:
        peer_id: str = self.identity.peer_id
        return peer_id

    async def start(self) -> tuple[str, int]:
        """Bind the UDP endpoint; returns the bound (host, port)."""
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self), local_addr=self.listen
        )
        self._transport = transport
        if self.receive_buffer_bytes:
            transport.get_extra_info("socket").setsockopt(
                socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer_bytes
            )
        self.machine.start(monotonic_ms())
        for link in self.serial_links.values():
            link.start()
        self._ticker = asyncio.create_task(self._tick_loop(), name="gateway-tick")
        host, port = transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def close(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        if self._transport is not None:
            self._transport.close()
        for link in self.serial_links.values():
            await link.close()
        self.registry.save_counters(self.machine.take_counter_updates())
        self.registry.close()

    async def __aenter__(self) -> GatewayServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ driving

    def on_datagram(self, data: bytes, sender: str) -> None:
        self.machine.receive(data, sender, monotonic_ms())
        self._drain()

    def _drain(self) -> None:
        for item in self.machine.take_outbox():
            if isinstance(item, Send):
                if item.to.startswith(ADDRESS_PREFIX):
                    link = self.serial_links.get(item.to)
                    if link is not None:
                        link.send(item.message)
                elif self._transport is not None:
                    self._transport.sendto(item.message, parse_host_port(item.to))
            else:
                self._deliver(item)

    def _deliver(self, event: Event) -> None:
        if self.event_hook is not None:
            self.event_hook(event)
        try:
            self.events.put_nowait(event)
        except asyncio.QueueFull:
            self.machine.count("dropped_events")

    async def _tick_loop(self) -> None:
        flush_at_ms = monotonic_ms() + self.limits.counter_flush_ms
        while True:
            now_ms = monotonic_ms()
            self.machine.tick(now_ms)
            self._drain()
            if now_ms >= flush_at_ms:
                self.registry.save_counters(self.machine.take_counter_updates())
                flush_at_ms = now_ms + self.limits.counter_flush_ms
            deadline = self.machine.next_deadline()
            wait_ms = TICK_MS_MAX if deadline is None else max(1, deadline - monotonic_ms())
            self._wake.clear()
            await wait_event(self._wake, min(wait_ms, TICK_MS_MAX) / 1000)

    # ------------------------------------------------------------------ commands

    def send_model(self, device_id: str, model: MlpModel) -> None:
        self.machine.send_model(device_id, model, monotonic_ms())
        self._drain()
        self._wake.set()

    def request_inference(self, device_id: str, inputs: np.ndarray) -> int:
        request_id: int = self.machine.request_inference(device_id, inputs, monotonic_ms())
        self._drain()
        return request_id

    def bridged_adverts(self) -> list[BridgedAdvert]:
        adverts: list[BridgedAdvert] = self.machine.bridged_adverts(monotonic_ms())
        return adverts

    def sample_sets(self, samples_min: int) -> list[tuple[str, list[Sample]]]:
        """Buffered labelled samples of alive devices with at least `samples_min` of them."""
        sets: list[tuple[str, list[Sample]]] = self.machine.sample_sets(monotonic_ms(), samples_min)
        return sets

    def signer_for(self, device_id: str) -> Identity:
        signer: Identity = self.machine.signer_for(device_id)
        return signer

    def devices_status(self) -> list[dict[str, Any]]:
        status: list[dict[str, Any]] = self.machine.devices_status()
        return status

    def serial_status(self) -> list[dict[str, Any]]:
        return [link.status() for link in self.serial_links.values()]

    def counters(self) -> dict[str, int]:
        return dict(self.machine.counters)
