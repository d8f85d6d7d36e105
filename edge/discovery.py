"""mDNS discovery (zeroconf): advertise `_agentmesh._udp.local.` and report what is found.

The instance name is the peer id (no dots: a dot would split the instance into
two labels and other mDNS clients such as avahi would ignore the service). TXT
records carry the peer id, mesh name, QUIC port and a short capability summary.
Found peers go into a bounded asyncio queue that the agent host drains; the
zeroconf callbacks never touch protocol state directly.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from zeroconf import IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from agentmesh.core.identity import is_peer_id

SERVICE_TYPE = "_agentmesh._udp.local."
LOOPBACK_ADDRESS = "127.0.0.1"
_TXT_VALUE_BYTES_MAX = 200
_FOUND_QUEUE_MAX = 1024
_RESOLVE_TIMEOUT_MS = 1500

log = logging.getLogger("agentmesh.discovery")


@dataclass(frozen=True, slots=True)
class FoundPeer:
    """A peer seen on the LAN: where to dial it and what it says about itself."""

    peer_id: str
    mesh: str
    host: str
    port: int
    summary: Mapping[str, str]


class MdnsDiscovery:
    """Advertise this agent and browse for others of the same mesh."""

    def __init__(
        self,
        peer_id: str,
        mesh: str,
        port: int,
        summary: Mapping[str, str] | None = None,
        loopback: bool = False,
        advertise_address: str | None = None,
    ) -> None:
        self.peer_id = peer_id
        self.mesh = mesh
        self.port = port
        self.summary = dict(summary or {})
        self.loopback = loopback
        self.advertise_address = advertise_address or (LOOPBACK_ADDRESS if loopback else None)
        self.found: asyncio.Queue[FoundPeer] = asyncio.Queue(maxsize=_FOUND_QUEUE_MAX)
        self.counters: dict[str, int] = {}
        self._zeroconf: AsyncZeroconf | None = None
        self._browser: AsyncServiceBrowser | None = None
        self._info: AsyncServiceInfo | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Register our service and start browsing."""
        interfaces = [LOOPBACK_ADDRESS] if self.loopback else None
        if interfaces is None:
            self._zeroconf = AsyncZeroconf(ip_version=IPVersion.V4Only)
        else:
            self._zeroconf = AsyncZeroconf(interfaces=interfaces, ip_version=IPVersion.V4Only)
        # Browse first: announcements of agents that register after us then
        # arrive as cache updates instead of waiting for a backed-off query.
        self._browser = AsyncServiceBrowser(
            self._zeroconf.zeroconf, SERVICE_TYPE, handlers=[self._on_state_change]
        )
        self._info = self._service_info()
        # Registration probes the name for ~1 s (RFC 6762 §8.1); run it in the
        # background so the agent starts serving meanwhile.
        self._spawn(self._register(self._info))

    async def _register(self, info: AsyncServiceInfo) -> None:
        if self._zeroconf is not None:
            await self._zeroconf.async_register_service(info)
            self._count("registered")

    async def close(self) -> None:
        """Unregister (a goodbye packet) and stop."""
        if self._browser is not None:
            await self._browser.async_cancel()
        for task in list(self._tasks):
            task.cancel()
        if self._zeroconf is not None:
            if self._info is not None and self.counters.get("registered"):
                await self._zeroconf.async_unregister_service(self._info)
            await self._zeroconf.async_close()
        self._zeroconf = None

    def _service_info(self) -> AsyncServiceInfo:
        properties = {"id": self.peer_id, "mesh": self.mesh, "port": str(self.port)}
        properties.update({k: v[:_TXT_VALUE_BYTES_MAX] for k, v in self.summary.items()})
        addresses = [self.advertise_address] if self.advertise_address else [default_address()]
        return AsyncServiceInfo(
            SERVICE_TYPE,
            f"{self.peer_id}.{SERVICE_TYPE}",
            port=self.port,
            properties=properties,
            parsed_addresses=addresses,
            server=f"{self.peer_id.lower()}.local.",
        )

    def _on_state_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        if state_change not in (ServiceStateChange.Added, ServiceStateChange.Updated):
            return
        self._spawn(self._resolve(service_type, name))

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _resolve(self, service_type: str, name: str) -> None:
        if self._zeroconf is None:
            return
        info = AsyncServiceInfo(service_type, name)
        if not await info.async_request(self._zeroconf.zeroconf, _RESOLVE_TIMEOUT_MS):
            self._count("resolve_timeouts")
            return
        found = parse_service(info)
        if found is None:
            self._count("malformed_adverts")
            return
        if found.peer_id == self.peer_id or found.mesh != self.mesh:
            return
        try:
            self.found.put_nowait(found)
        except asyncio.QueueFull:
            self._count("found_queue_full")

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1


def parse_service(info: AsyncServiceInfo) -> FoundPeer | None:
    """A FoundPeer from a resolved service, or None when the advert is malformed."""
    properties: dict[str, str] = {}
    for key, value in (info.properties or {}).items():
        if not isinstance(key, bytes) or value is None or len(value) > _TXT_VALUE_BYTES_MAX:
            continue
        try:
            properties[key.decode()] = value.decode()
        except UnicodeDecodeError:
            return None
    peer_id = properties.pop("id", "")
    mesh = properties.pop("mesh", "")
    addresses = info.parsed_addresses(IPVersion.V4Only)
    if not is_peer_id(peer_id) or not mesh or not addresses or not info.port:
        return None
    properties.pop("port", None)
    return FoundPeer(peer_id, mesh, addresses[0], int(info.port), properties)


def default_address() -> str:
    """The address other hosts reach us on (no packet is sent by connect on UDP)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only, nothing is sent
        address: str = probe.getsockname()[0]
    except OSError:
        address = LOOPBACK_ADDRESS
    finally:
        probe.close()
    return address
