"""QuicTransport: one UDP port per agent, one authenticated QUIC connection per peer pair.

The transport listens and dials on the same socket, so the address a peer's
connection comes from is the address that peer listens on, and a connection that
timed out can be re-dialed from either side. Datagrams are routed to connections
by destination connection id (RFC 9000 §5.2); an unknown id in a long-header
Initial of full size starts a server-side connection.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import Literal

from aioquic.buffer import Buffer  # type: ignore[attr-defined]  # re-exported from _buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.connection import NetworkAddress, QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header

from agentmesh.core.identity import Identity, is_peer_id
from agentmesh.core.limits import TransportLimits
from agentmesh.edge.transport.cert import certificate_for, private_key_for
from agentmesh.edge.transport.connection import (
    ERROR_HANDSHAKE_TIMEOUT,
    ERROR_IDLE,
    ConnectionState,
    PeerConnection,
)
from agentmesh.edge.transport.errors import (
    DialError,
    FrameTooLarge,
    TransportClosed,
    UnknownPeer,
)
from agentmesh.edge.transport.ratelimit import PeerRate
from agentmesh.edge.waiting import wait_within

ALPN = "agentmesh/1"
_CID_LENGTH = 8
_CONNECTIONS_PER_PEER_MAX = 4
# QUIC's own idle timer is a backstop for dead peers; the transport closes idle
# connections itself (with CONNECTION_CLOSE, so the peer knows at once).
_QUIC_IDLE_FACTOR = 2.0
# Simultaneous dials complete within a handshake of each other; a peer that dials
# us later than this while our own connection to it stands has lost that
# connection (it restarted), so ours is dead and must not stay preferred.
_SIMULTANEOUS_DIAL_WINDOW_S = 2.0

Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Incoming:
    """A frame or verified blob from an authenticated peer."""

    peer_id: str
    kind: Literal["frame", "blob"]
    payload: bytes
    digest: bytes = b""  # sha-256 of a blob's payload


class _PeerState:
    """Per-peer policy state: rates, queue share, blobs being received."""

    __slots__ = ("blobs_in_flight", "queued", "rate")

    def __init__(self, limits: TransportLimits, now_s: float) -> None:
        self.rate = PeerRate(
            limits.messages_per_s,
            limits.message_burst,
            limits.bytes_per_s,
            limits.byte_burst,
            now_s,
        )
        self.queued = 0
        self.blobs_in_flight = 0


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, owner: QuicTransport) -> None:
        self._owner = owner

    def datagram_received(self, data: bytes, addr: NetworkAddress) -> None:
        self._owner.datagram_received(data, addr)

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable) on UDP: QUIC's own timers handle the loss.
        self._owner.count("udp_errors")


class QuicTransport:
    """Authenticated frames and blobs between peers over QUIC (see docs/transport.md)."""

    def __init__(
        self,
        identity: Identity,
        host: str = "127.0.0.1",
        port: int = 0,
        limits: TransportLimits | None = None,
    ) -> None:
        self.identity = identity
        self.limits = limits or TransportLimits()
        self._host = host
        self._port = port
        self._udp: asyncio.DatagramTransport | None = None
        self._closed = False
        self._counters: Counter[str] = Counter()
        self._by_cid: dict[bytes, PeerConnection] = {}
        self._connections: set[PeerConnection] = set()
        self._ready: dict[str, list[PeerConnection]] = {}
        self._peers: OrderedDict[str, _PeerState] = OrderedDict()
        self._addresses: OrderedDict[str, Address] = OrderedDict()
        self._dials: dict[tuple[Address, str | None], asyncio.Future[str]] = {}
        self._incoming: asyncio.Queue[Incoming | None] = asyncio.Queue(
            self.limits.incoming_queue_max
        )
        self._blob_bytes_reserved = 0
        self._server_config: QuicConfiguration | None = None
        self._sweep: asyncio.TimerHandle | None = None
        self._ready_at: dict[PeerConnection, float] = {}

    # -- lifecycle --------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the UDP port and start accepting connections."""
        loop = asyncio.get_running_loop()
        self._server_config = self._configuration(is_client=False)
        self._server_config.certificate = certificate_for(self.identity)
        self._server_config.private_key = private_key_for(self.identity)
        self._udp, _ = await loop.create_datagram_endpoint(
            lambda: _Endpoint(self), local_addr=(self._host, self._port), family=socket.AF_INET
        )
        self._schedule_sweep()

    async def close(self) -> None:
        """Close every connection (CONNECTION_CLOSE sent) and the socket."""
        if self._closed:
            return
        self._closed = True
        if self._sweep is not None:
            self._sweep.cancel()
        for connection in list(self._connections):
            connection.close("transport closing")
        for future in list(self._dials.values()):
            future.cancel()  # dials are tasks: waiters get CancelledError, then TransportClosed
        await asyncio.sleep(0)  # let the close datagrams go out
        for connection in list(self._connections):
            self.connection_terminated(connection)
        if self._udp is not None:
            self._udp.close()
        self._wake_receivers()

    @property
    def local_address(self) -> Address:
        """The (host, port) this agent listens and dials on."""
        if self._udp is None:
            raise TransportClosed("transport not started")
        host, port = self._udp.get_extra_info("sockname")[:2]
        return (str(host), int(port))

    @property
    def counters(self) -> dict[str, int]:
        """Drops, rejections and totals, by name (a copy)."""
        return dict(self._counters)

    def connected_peers(self) -> list[str]:
        """Peers with at least one authenticated, open connection."""
        return sorted(peer for peer, conns in self._ready.items() if conns)

    def known_address(self, peer_id: str) -> Address | None:
        """The address a peer was last connected at, if remembered."""
        return self._addresses.get(peer_id)

    # -- sending ----------------------------------------------------------------------

    async def dial(self, address: Address, expected_peer_id: str | None = None) -> str:
        """Connect (or reuse a connection) to `address`; return the peer id it proved."""
        self._check_running()
        if expected_peer_id is not None:
            if not is_peer_id(expected_peer_id):
                raise UnknownPeer(f"{expected_peer_id!r} is not a peer id")
            if self._preferred(expected_peer_id) is not None:
                return expected_peer_id
        target = await self._resolve(address)
        key = (target, expected_peer_id)
        pending = self._dials.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._dial_new(target, expected_peer_id))
            self._dials[key] = pending
            pending.add_done_callback(lambda _: self._dials.pop(key, None))
            # Every waiter may have given up (timeouts); the failure is theirs to see,
            # so retrieve it here to keep asyncio from logging it as never retrieved.
            pending.add_done_callback(_retrieve_exception)
        try:
            return await asyncio.shield(pending)
        except asyncio.CancelledError:
            if self._closed and pending.cancelled():  # close() cancelled the dial, not us
                raise TransportClosed("transport closed during dial") from None
            raise

    async def send(self, peer_id: str, frame: bytes, address: Address | None = None) -> None:
        """Send one frame; dials `address` (or the remembered one) when not connected."""
        if len(frame) > self.limits.frame_bytes_max:
            raise FrameTooLarge(f"{len(frame)} bytes > frame_bytes_max")
        connection = self._preferred(peer_id) if not self._closed else None
        if connection is None:
            connection = await self._connection_to(peer_id, address)
        if not connection.control_writable():
            await connection.wait_control_writable(self.limits.send_timeout_ms / 1000)
        connection.send_frame(frame)
        self.count("frames_sent")

    async def send_blob(self, peer_id: str, data: bytes, address: Address | None = None) -> bytes:
        """Stream a blob with back-pressure; returns its sha-256 once fully acknowledged."""
        if len(data) > self.limits.blob_bytes_max:
            raise FrameTooLarge(f"{len(data)} bytes > blob_bytes_max")
        connection = await self._connection_to(peer_id, address)
        digest: bytes = await connection.send_blob(data, self.limits.send_timeout_ms / 1000)
        self.count("blobs_sent")
        return digest

    async def receive(self) -> Incoming:
        """The next frame or blob from any peer; raises TransportClosed after close()."""
        item = await self._incoming.get()
        if item is None:
            self._wake_receivers()
            raise TransportClosed("transport closed")
        state = self._peers.get(item.peer_id)
        if state is not None and state.queued > 0:
            state.queued -= 1
        return item

    # -- connections ------------------------------------------------------------------

    def _configuration(self, is_client: bool) -> QuicConfiguration:
        limits = self.limits
        return QuicConfiguration(
            is_client=is_client,
            alpn_protocols=[ALPN],
            connection_id_length=_CID_LENGTH,
            idle_timeout=limits.idle_timeout_ms / 1000 * _QUIC_IDLE_FACTOR,
            max_stream_data=max(limits.send_window_bytes, 2 * limits.blob_chunk_bytes),
            max_data=4 * max(limits.send_window_bytes, 2 * limits.blob_chunk_bytes),
            # The peer id, not a CA, is the trust anchor: see cert.py.
            verify_mode=ssl.CERT_NONE,
            server_name="agentmesh",
        )

    async def _resolve(self, address: Address) -> Address:
        host, port = address
        try:
            # An IPv4 literal needs no lookup (getaddrinfo runs in a worker thread).
            return (str(ipaddress.IPv4Address(host)), int(port))
        except ValueError:
            pass
        loop = asyncio.get_running_loop()
        try:
            infos = await loop.getaddrinfo(
                host, port, family=socket.AF_INET, type=socket.SOCK_DGRAM
            )
        except socket.gaierror as error:
            raise DialError(f"cannot resolve {host}: {error}") from error
        resolved = infos[0][4]
        return (str(resolved[0]), int(resolved[1]))

    async def _dial_new(self, address: Address, expected_peer_id: str | None) -> str:
        if len(self._connections) >= self.limits.connections_max:
            self.count("connections_refused")
            raise DialError("connections_max reached")
        loop = asyncio.get_running_loop()
        quic = QuicConnection(configuration=self._configuration(is_client=True))
        connection = PeerConnection(
            self, quic, self.identity, self.limits, address, expected_peer_id
        )
        self._register(connection, quic.host_cid)
        quic.connect(address, now=loop.time())
        connection.transmit()
        self.count("connections_dialed")
        timeout_s = self.limits.handshake_timeout_ms / 1000
        try:
            return await wait_within(asyncio.shield(connection.ready), timeout_s)
        except TimeoutError:
            self.count("handshake_timeouts")
            connection.fail(DialError(f"no handshake with {address}"), ERROR_HANDSHAKE_TIMEOUT)
            raise DialError(f"handshake with {address} timed out") from None

    async def _connection_to(self, peer_id: str, address: Address | None) -> PeerConnection:
        self._check_running()
        connection = self._preferred(peer_id)
        if connection is not None:
            return connection
        target = address or self._addresses.get(peer_id)
        if target is None:
            raise UnknownPeer(f"no connection to {peer_id} and no address to dial")
        await self.dial(target, expected_peer_id=peer_id)
        connection = self._preferred(peer_id)
        if connection is None:
            raise DialError(f"connection to {peer_id} closed right after the handshake")
        return connection

    def _preferred(self, peer_id: str) -> PeerConnection | None:
        """The connection both ends send on, chosen the same way by both.

        After a simultaneous dial both ends hold two connections; each picks the one
        dialed by the smaller peer id, so both send on the same one and the other
        idles out. Among several dialed by the same side, the newest wins.
        """
        connections = [c for c in self._ready.get(peer_id, ()) if c.is_usable]
        if not connections:
            return None
        smaller_dialed = self.identity.peer_id < peer_id
        by_rule = [c for c in connections if c.is_client == smaller_dialed]
        return (by_rule or connections)[-1]

    def _register(self, connection: PeerConnection, cid: bytes) -> None:
        self._connections.add(connection)
        self._by_cid[cid] = connection

    def _check_running(self) -> None:
        if self._closed or self._udp is None:
            raise TransportClosed("transport not started or closed")

    # -- datagrams ----------------------------------------------------------------------

    def datagram_received(self, data: bytes, address: NetworkAddress) -> None:
        """Route one datagram to its connection, or start a server-side connection."""
        self._counters["datagrams_received"] += 1
        # Fast path, nearly every datagram: a 1-RTT short header (form bit 0, fixed
        # bit 1, RFC 9000 §17.3) of a known connection; the id follows the first byte.
        if data and data[0] & 0xC0 == 0x40:
            connection = self._by_cid.get(data[1 : 1 + _CID_LENGTH])
            if connection is not None:
                connection.datagram_received(data, address)
                return
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=_CID_LENGTH)
        except ValueError:
            self.count("datagrams_malformed")
            return
        connection = self._by_cid.get(header.destination_cid)
        if connection is None:
            connection = self._accept(
                header.packet_type, header.version, header.destination_cid, len(data), address
            )
            if connection is None:
                return
        connection.datagram_received(data, address)

    def _accept(
        self,
        packet_type: QuicPacketType,
        version: int | None,
        cid: bytes,
        size: int,
        address: NetworkAddress,
    ) -> PeerConnection | None:
        assert self._server_config is not None
        if (
            self._closed
            or packet_type != QuicPacketType.INITIAL
            or size < SMALLEST_MAX_DATAGRAM_SIZE
            or version not in self._server_config.supported_versions
        ):
            self.count("datagrams_unroutable")
            return None
        pending = sum(1 for c in self._connections if c.state is not ConnectionState.READY)
        if (
            len(self._connections) >= self.limits.connections_max
            or pending >= self.limits.pending_connections_max
        ):
            self.count("connections_refused")
            return None
        quic = QuicConnection(
            configuration=self._server_config, original_destination_connection_id=cid
        )
        connection = PeerConnection(
            self, quic, self.identity, self.limits, (str(address[0]), int(address[1]))
        )
        self._register(connection, cid)
        self._by_cid[quic.host_cid] = connection
        self.count("connections_accepted")
        loop = asyncio.get_running_loop()
        loop.call_later(
            self.limits.handshake_timeout_ms / 1000, self._handshake_deadline, connection
        )
        return connection

    def _handshake_deadline(self, connection: PeerConnection) -> None:
        if connection.state in (ConnectionState.HANDSHAKE, ConnectionState.PROVING):
            self.count("handshake_timeouts")
            connection.fail(DialError("handshake timed out"), ERROR_HANDSHAKE_TIMEOUT)

    # -- idle sweep ---------------------------------------------------------------------

    def _schedule_sweep(self) -> None:
        interval_s = max(0.02, min(1.0, self.limits.idle_timeout_ms / 4000))
        self._sweep = asyncio.get_running_loop().call_later(interval_s, self._sweep_idle)

    def _sweep_idle(self) -> None:
        now_s = asyncio.get_running_loop().time()
        idle_s = self.limits.idle_timeout_ms / 1000
        for connection in list(self._connections):
            if connection.is_usable and now_s - connection.last_activity_s >= idle_s:
                self.count("connections_idle_closed")
                connection.close("idle", ERROR_IDLE)
        if not self._closed:
            self._schedule_sweep()

    # -- ConnectionOwner ---------------------------------------------------------------

    def send_datagram(self, data: bytes, address: NetworkAddress) -> None:
        if self._udp is not None and not self._udp.is_closing():
            self._udp.sendto(data, address)
            self._counters["datagrams_sent"] += 1

    def count(self, name: str, amount: int = 1) -> None:
        self._counters[name] += amount

    def cid_issued(self, connection: PeerConnection, cid: bytes) -> None:
        self._by_cid[cid] = connection

    def cid_retired(self, cid: bytes) -> None:
        self._by_cid.pop(cid, None)

    def connection_ready(self, connection: PeerConnection) -> None:
        peer_id = connection.peer_id
        assert peer_id is not None
        connections = self._ready.setdefault(peer_id, [])
        now_s = asyncio.get_running_loop().time()
        self._drop_connections_the_peer_lost(connection, connections, now_s)
        connections = self._ready.setdefault(peer_id, [])  # closing may have dropped the list
        self._ready_at[connection] = now_s
        connections.append(connection)
        while len(connections) > _CONNECTIONS_PER_PEER_MAX:
            connections[0].close("too many connections to one peer")
        self._remember(peer_id, (str(connection.address[0]), int(connection.address[1])))
        self._peer_state(peer_id)
        self.count("connections_ready")

    def _drop_connections_the_peer_lost(
        self, new: PeerConnection, connections: list[PeerConnection], now_s: float
    ) -> None:
        """The peer dialed against the tie-break rule long after our own connection
        to it was ready: it no longer has that connection (a restart), so close it."""
        assert new.peer_id is not None
        we_dial = self.identity.peer_id < new.peer_id
        if new.is_client == we_dial:
            return  # dialed by the side the rule prefers: nothing contradicts it
        for old in list(connections):
            ready_at = self._ready_at.get(old, now_s)
            if old.is_client == we_dial and now_s - ready_at > _SIMULTANEOUS_DIAL_WINDOW_S:
                self.count("connections_lost_by_peer")
                old.close("peer dialed again: it lost this connection")
                if old in connections:
                    connections.remove(old)

    def connection_closed(self, connection: PeerConnection) -> None:
        self._ready_at.pop(connection, None)
        peer_id = connection.peer_id
        if peer_id is None:
            return
        connections = self._ready.get(peer_id)
        if connections is not None and connection in connections:
            connections.remove(connection)
            if not connections:
                del self._ready[peer_id]

    def connection_terminated(self, connection: PeerConnection) -> None:
        self.connection_closed(connection)
        self._connections.discard(connection)
        for cid in [cid for cid, c in self._by_cid.items() if c is connection]:
            del self._by_cid[cid]

    def deliver_frame(self, connection: PeerConnection, payload: bytes) -> None:
        assert connection.peer_id is not None
        state = self._peer_state(connection.peer_id)
        now_s = asyncio.get_running_loop().time()
        if not state.rate.admit(len(payload), now_s):
            self.count("frames_rate_limited")
            return
        if self._enqueue(state, Incoming(connection.peer_id, "frame", payload), "frames"):
            self.count("frames_received")

    def admit_blob(self, connection: PeerConnection) -> bool:
        assert connection.peer_id is not None
        state = self._peer_state(connection.peer_id)
        now_s = asyncio.get_running_loop().time()
        if state.blobs_in_flight >= self.limits.blobs_in_flight_per_peer_max:
            self.count("blobs_rejected_in_flight")
            return False
        if state.rate.bytes.tokens(now_s) <= 0 or not state.rate.messages.take(1, now_s):
            self.count("blobs_rate_limited")
            return False
        state.blobs_in_flight += 1
        return True

    def reserve_blob_bytes(self, connection: PeerConnection, size_bytes: int) -> bool:
        if self._blob_bytes_reserved + size_bytes > self.limits.blob_buffer_bytes_max:
            return False
        self._blob_bytes_reserved += size_bytes
        return True

    def release_blob(self, connection: PeerConnection, reserved_bytes: int) -> None:
        self._blob_bytes_reserved = max(0, self._blob_bytes_reserved - reserved_bytes)
        if connection.peer_id is not None:
            state = self._peer_state(connection.peer_id)
            state.blobs_in_flight = max(0, state.blobs_in_flight - 1)

    def charge_bytes(self, connection: PeerConnection, size_bytes: int) -> None:
        assert connection.peer_id is not None
        now_s = asyncio.get_running_loop().time()
        self._peer_state(connection.peer_id).rate.bytes.charge(size_bytes, now_s)

    def deliver_blob(self, connection: PeerConnection, data: bytes, digest: bytes) -> None:
        assert connection.peer_id is not None
        state = self._peer_state(connection.peer_id)
        if self._enqueue(state, Incoming(connection.peer_id, "blob", data, digest), "blobs"):
            self.count("blobs_received")

    # -- helpers -------------------------------------------------------------------------

    def _enqueue(self, state: _PeerState, item: Incoming, what: str) -> bool:
        if state.queued >= self.limits.incoming_per_peer_max:
            self.count(f"{what}_dropped_peer_queue_full")
            return False
        try:
            self._incoming.put_nowait(item)
        except asyncio.QueueFull:
            self.count(f"{what}_dropped_queue_full")
            return False
        state.queued += 1
        return True

    def _peer_state(self, peer_id: str) -> _PeerState:
        state = self._peers.get(peer_id)
        if state is None:
            state = _PeerState(self.limits, asyncio.get_running_loop().time())
            self._peers[peer_id] = state
            self._evict(self._peers)
        else:
            self._peers.move_to_end(peer_id)
        return state

    def _remember(self, peer_id: str, address: Address) -> None:
        self._addresses[peer_id] = address
        self._addresses.move_to_end(peer_id)
        self._evict(self._addresses)

    def _evict(self, table: OrderedDict[str, _PeerState] | OrderedDict[str, Address]) -> None:
        # Oldest first, but never a peer that is connected or has queued items.
        while len(table) > self.limits.address_book_max:
            for peer_id in table:
                state = self._peers.get(peer_id)
                if peer_id not in self._ready and (state is None or state.queued == 0):
                    del table[peer_id]
                    break
            else:
                return

    def _wake_receivers(self) -> None:
        # A bounded queue may be full: make room for the close marker by dropping one.
        while True:
            try:
                self._incoming.put_nowait(None)
                return
            except asyncio.QueueFull:
                self._incoming.get_nowait()


def _retrieve_exception(future: asyncio.Future[str]) -> None:
    if not future.cancelled():
        future.exception()
