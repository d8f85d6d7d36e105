"""One QUIC connection to one peer: TLS handshake, peer-id proof, control frames, blobs.

The owner (QuicTransport) does the UDP I/O and holds per-peer policy (rates, queue
shares, buffer budgets); a connection drives its aioquic `QuicConnection` state
machine, parses the streams and asks the owner before it keeps anything.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import ipaddress
import os
from typing import Protocol

from aioquic import tls
from aioquic.quic import events
from aioquic.quic.connection import NetworkAddress, QuicConnection

from agentmesh.core.identity import Identity
from agentmesh.core.limits import TransportLimits
from agentmesh.edge.transport import auth
from agentmesh.edge.transport.cert import InvalidCertificate, server_peer_id
from agentmesh.edge.transport.errors import (
    BlobRejected,
    ConnectionLost,
    DialError,
    PeerIdMismatch,
    SendTimeout,
    TransportError,
)
from agentmesh.edge.transport.framing import (
    STREAM_BLOB,
    STREAM_CONTROL,
    BlobDecoder,
    BlobVerdict,
    ControlDecoder,
    ControlFrame,
    FrameOversized,
    FrameType,
    encode_blob_header,
    encode_frame,
)
from agentmesh.edge.waiting import wait_event

# Application error codes in CONNECTION_CLOSE / STOP_SENDING (RFC 9000 §20.2).
ERROR_NONE = 0x0
ERROR_AUTH_FAILED = 0x101
ERROR_PROTOCOL = 0x102
ERROR_PEER_ID_MISMATCH = 0x103
ERROR_HANDSHAKE_TIMEOUT = 0x104
ERROR_IDLE = 0x105
ERROR_BLOB_REJECTED = 0x201

# Loopback has no 1,500-byte path MTU: larger datagrams mean far fewer packets (and
# per-packet Python work) per blob byte. Kept below 16,384 because aioquic writes
# packet and STREAM frame lengths as 2-byte varints (RFC 9000 §16).
_LOOPBACK_DATAGRAM_BYTES = 16_000
# Loop turns a received datagram's ACK waits for a reply to carry it: a receiver
# awaiting receive() directly replies one turn later, through wait_for() three.
_REPLY_GRACE_TURNS = 3
# asyncio may run a timer handle up to its clock resolution early.
_TIMER_SLACK_S = 1e-6

_BLOB_VERDICT_COUNTERS = {
    BlobVerdict.OVERSIZED: "blobs_rejected_oversize",
    BlobVerdict.OVERRUN: "blobs_rejected_size",
    BlobVerdict.TRUNCATED: "blobs_rejected_size",
    BlobVerdict.DIGEST_MISMATCH: "blobs_rejected_digest",
}


class ConnectionState(enum.Enum):
    HANDSHAKE = "handshake"  # TLS running
    PROVING = "proving"  # TLS done; the client's peer-id proof is running
    READY = "ready"
    CLOSING = "closing"  # CONNECTION_CLOSE sent or received, draining
    CLOSED = "closed"


class ConnectionOwner(Protocol):
    """What a connection needs from the transport that owns it."""

    def send_datagram(self, data: bytes, address: NetworkAddress) -> None: ...

    def count(self, name: str, amount: int = 1) -> None: ...

    def cid_issued(self, connection: PeerConnection, cid: bytes) -> None: ...

    def cid_retired(self, cid: bytes) -> None: ...

    def connection_ready(self, connection: PeerConnection) -> None: ...

    def connection_closed(self, connection: PeerConnection) -> None: ...

    def connection_terminated(self, connection: PeerConnection) -> None: ...

    def deliver_frame(self, connection: PeerConnection, payload: bytes) -> None: ...

    def admit_blob(self, connection: PeerConnection) -> bool: ...

    def reserve_blob_bytes(self, connection: PeerConnection, size_bytes: int) -> bool: ...

    def release_blob(self, connection: PeerConnection, reserved_bytes: int) -> None: ...

    def charge_bytes(self, connection: PeerConnection, size_bytes: int) -> None: ...

    def deliver_blob(self, connection: PeerConnection, data: bytes, digest: bytes) -> None: ...


class _InboundStream:
    """Parsing state of one peer-initiated stream."""

    __slots__ = ("blob", "control", "discarding", "reserved_bytes")

    def __init__(self) -> None:
        self.control: ControlDecoder | None = None
        self.blob: BlobDecoder | None = None
        self.discarding = False
        self.reserved_bytes = 0


class PeerConnection:
    """A QUIC connection and the peer id it proved (once READY)."""

    def __init__(
        self,
        owner: ConnectionOwner,
        quic: QuicConnection,
        identity: Identity,
        limits: TransportLimits,
        address: NetworkAddress,
        expected_peer_id: str | None = None,
    ) -> None:
        self._owner = owner
        self.quic = quic
        self._identity = identity
        self._limits = limits
        self.address = address
        self.is_client = quic.configuration.is_client
        self.expected_peer_id = expected_peer_id
        self.peer_id: str | None = None
        self.state = ConnectionState.HANDSHAKE
        self._loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[str] = self._loop.create_future()
        self.ready.add_done_callback(_consume_exception)
        self.last_activity_s = self._loop.time()
        self._nonce = b""
        self._proof_sent = False
        self._control_stream_id: int | None = None
        self._has_peer_control = False
        self._inbound: dict[int, _InboundStream] = {}
        self._stopped_streams: set[int] = set()
        self._progress = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._flush_handle: asyncio.Handle | None = None  # after datagrams received
        self._flush_pending = False
        self._flush_turns = 0
        self._burst_handle: asyncio.Handle | None = None  # after our own writes
        self._burst_pending = False
        self._control_received = False
        self._failure: TransportError | None = None

    # -- I/O driven by the owner ------------------------------------------------------

    def datagram_received(self, data: bytes, address: NetworkAddress) -> None:
        now = self._loop.time()
        self.quic.receive_datagram(data, address, now=now)
        if self.state is ConnectionState.READY and self.quic._close_event is not None:
            self._peer_closed()
        self._control_received = False
        self._process_events()
        if self._control_received:
            # A control frame usually gets an answer: acknowledge it in that answer.
            # Blob data keeps aioquic's delayed ACK (one ACK for many datagrams).
            _make_ack_due(self.quic, now)
        # Not transmitted here: a receiver woken by a frame delivered above runs a
        # loop turn or a few later, and its reply (sent at once, see _transmit_soon)
        # then carries our ACK; one datagram each way per request and reply instead
        # of an ACK-only datagram besides. Without a reply, _flush sends the ACK.
        self._flush_pending = True
        if self._flush_handle is None:
            self._flush_turns = _REPLY_GRACE_TURNS
            self._flush_handle = self._loop.call_soon(self._flush)
        self._progress.set()

    def transmit(self) -> None:
        """Send what aioquic has queued and arm its timer."""
        self._flush_pending = False
        for data, address in self.quic.datagrams_to_send(now=self._loop.time()):
            self._owner.send_datagram(data, address)
        self._arm_timer()

    def _transmit_soon(self) -> None:
        # The first write goes out at once (latency); writes that follow in the same
        # loop turn are coalesced into as few datagrams as possible (throughput).
        if self._burst_handle is None:
            self.transmit()
            self._burst_handle = self._loop.call_soon(self._end_burst)
        else:
            self._burst_pending = True

    def _end_burst(self) -> None:
        self._burst_handle = None
        if self._burst_pending:
            self._burst_pending = False
            self.transmit()

    def _flush(self) -> None:
        if not self._flush_pending:  # a write went out meanwhile, with the ACK
            self._flush_handle = None
            return
        self._flush_turns -= 1
        if self._flush_turns > 0:
            self._flush_handle = self._loop.call_soon(self._flush)
            return
        self._flush_handle = None
        self.transmit()

    def _arm_timer(self) -> None:
        # aioquic moves its deadline on nearly every packet (ACK, loss detection).
        # One handle is kept and only moved earlier; a handle that fires before the
        # current deadline re-arms itself (cheaper than cancel + call_at per packet).
        timer_at = self.quic.get_timer()
        if timer_at is None:
            return
        if self._timer is not None:
            if self._timer.when() <= timer_at:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(timer_at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        timer_at = self.quic.get_timer()
        if timer_at is None:
            return
        if timer_at > now + _TIMER_SLACK_S:
            self._arm_timer()
            return
        self.quic.handle_timer(now=max(now, timer_at))
        self._process_events()
        if self._flush_pending:
            # Usually an old handle meeting the ACK made due on receipt: the reply
            # (or _flush, a few loop turns on) carries it and re-arms the timer; an
            # ACK-only datagram now would cost the peer a wakeup and a decrypt.
            return
        self.transmit()

    # -- QUIC events ----------------------------------------------------------------

    def _process_events(self) -> None:
        event = self.quic.next_event()
        while event is not None:
            if isinstance(event, events.StreamDataReceived):
                self._on_stream_data(event.stream_id, event.data, event.end_stream)
            elif isinstance(event, events.HandshakeCompleted):
                self._on_handshake()
            elif isinstance(event, events.ConnectionIdIssued):
                self._owner.cid_issued(self, event.connection_id)
            elif isinstance(event, events.ConnectionIdRetired):
                self._owner.cid_retired(event.connection_id)
            elif isinstance(event, events.StopSendingReceived):
                self._stopped_streams.add(event.stream_id)
            elif isinstance(event, events.StreamReset):
                self._drop_inbound(event.stream_id)
            elif isinstance(event, events.ConnectionTerminated):
                self._on_terminated(event)
            event = self.quic.next_event()

    def _on_handshake(self) -> None:
        if is_loopback_host(self.address[0]):
            _raise_datagram_size(self.quic, _LOOPBACK_DATAGRAM_BYTES)
        if self.is_client:
            try:
                server_id = server_peer_id(self.quic)
            except InvalidCertificate as error:
                self._owner.count("auth_bad_certificate")
                self.fail(DialError(f"server certificate: {error}"), ERROR_AUTH_FAILED)
                return
            if self.expected_peer_id is not None and server_id != self.expected_peer_id:
                self._owner.count("peer_id_mismatches")
                self.fail(
                    PeerIdMismatch(
                        f"{self.address} proved {server_id}, expected {self.expected_peer_id}"
                    ),
                    ERROR_PEER_ID_MISMATCH,
                )
                return
            if server_id == self._identity.peer_id:
                self.fail(DialError("dialed our own address"), ERROR_PEER_ID_MISMATCH)
                return
            self.peer_id = server_id
            self._open_control_stream()
        else:
            self._open_control_stream()
            self._nonce = os.urandom(auth.NONCE_SIZE_BYTES)
            self._write_control(FrameType.CHALLENGE, self._nonce)
        self.state = ConnectionState.PROVING

    def _peer_closed(self) -> None:
        # RFC 9000 §10.2.2: after the peer's CONNECTION_CLOSE we are draining and may
        # send nothing; aioquic reports ConnectionTerminated only 3 PTO later (seconds
        # under load) and drops writes meanwhile, so stop choosing this connection now.
        self._owner.count("connections_closed_by_peer")
        self.state = ConnectionState.CLOSING
        self._progress.set()
        self._owner.connection_closed(self)

    def _on_terminated(self, event: events.ConnectionTerminated) -> None:
        was_live = self.state not in (ConnectionState.CLOSING, ConnectionState.CLOSED)
        self.state = ConnectionState.CLOSED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.ready.done():
            reason = event.reason_phrase or f"error 0x{event.error_code:x}"
            self.ready.set_exception(self._failure or DialError(f"connection closed: {reason}"))
        for inbound in self._inbound.values():
            self._release(inbound)
        self._inbound.clear()
        self._progress.set()
        if was_live:
            self._owner.connection_closed(self)
        self._owner.connection_terminated(self)

    # -- streams --------------------------------------------------------------------

    def _open_control_stream(self) -> None:
        self._control_stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
        self.quic.send_stream_data(self._control_stream_id, bytes([STREAM_CONTROL]))

    def _write_control(self, frame_type: FrameType, payload: bytes) -> None:
        assert self._control_stream_id is not None
        self.quic.send_stream_data(self._control_stream_id, encode_frame(frame_type, payload))
        self._transmit_soon()

    def _on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        # Bit 0x2 of a stream id marks a unidirectional stream (RFC 9000 §2.1); only
        # peer-opened unidirectional streams reach here, anything else is refused.
        inbound = self._inbound.get(stream_id)
        if inbound is None:
            if not data:
                return
            if not stream_id & 0x2:
                self._owner.count("streams_rejected")
                self._stop(stream_id, ERROR_PROTOCOL)
                self._inbound[stream_id] = _discarding()
                return
            inbound = self._inbound[stream_id] = _InboundStream()
            data = self._classify(stream_id, inbound, data)
        if not inbound.discarding:
            if inbound.control is not None:
                self._on_control_bytes(inbound.control, data)
            elif inbound.blob is not None:
                self._on_blob_bytes(stream_id, inbound, data, end_stream)
        if end_stream:
            self._drop_inbound(stream_id)

    def _classify(self, stream_id: int, inbound: _InboundStream, data: bytes) -> bytes:
        """Read the stream-type byte; set up the decoder or refuse the stream."""
        kind, rest = data[0], data[1:]
        if kind == STREAM_CONTROL and not self._has_peer_control:
            self._has_peer_control = True
            inbound.control = ControlDecoder(self._limits.frame_bytes_max)
        elif kind == STREAM_BLOB and self.state is ConnectionState.READY:
            if self._owner.admit_blob(self):
                inbound.blob = BlobDecoder(self._limits.blob_bytes_max)
            else:
                self._reject_blob(stream_id, inbound, None)
        else:
            self._owner.count("streams_rejected")
            inbound.discarding = True
            self._stop(stream_id, ERROR_PROTOCOL)
        return rest

    def _on_control_bytes(self, decoder: ControlDecoder, data: bytes) -> None:
        for item in decoder.feed(data):
            if self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
                return
            if isinstance(item, FrameOversized):
                self._owner.count("frames_rejected_oversize")
                if self.state is not ConnectionState.READY:
                    self._violation("oversized frame before authentication")
            else:
                self._on_control_frame(item)

    def _on_control_frame(self, frame: ControlFrame) -> None:
        self._control_received = True
        if frame.frame_type == FrameType.DATA:
            if self.state is ConnectionState.READY:
                self.last_activity_s = self._loop.time()
                self._owner.deliver_frame(self, frame.payload)
            else:
                self._violation("data frame before authentication")
        elif frame.frame_type == FrameType.CHALLENGE:
            self._on_challenge(frame.payload)
        elif frame.frame_type == FrameType.AUTH:
            self._on_proof(frame.payload)
        elif frame.frame_type == FrameType.ACCEPT:
            if not (self.is_client and self._proof_sent and self.state is ConnectionState.PROVING):
                self._violation("unexpected ACCEPT")
                return
            self._become_ready()
        else:
            self._owner.count("frames_unknown_type")

    def _on_challenge(self, payload: bytes) -> None:
        if not self.is_client or self._proof_sent or self.state is not ConnectionState.PROVING:
            self._violation("unexpected CHALLENGE")
            return
        try:
            nonce = auth.check_nonce(payload)
        except auth.AuthFormatError as error:
            self._violation(str(error))
            return
        assert self.peer_id is not None
        message = auth.signed_message(nonce, self._identity.peer_id, self.peer_id)
        proof = auth.ClientProof(self._identity.peer_id, self._identity.sign(message))
        self._write_control(FrameType.AUTH, auth.encode_proof(proof))
        self._proof_sent = True

    def _on_proof(self, payload: bytes) -> None:
        if self.is_client or self.state is not ConnectionState.PROVING:
            self._violation("unexpected AUTH")
            return
        try:
            proof = auth.decode_proof(payload)
        except auth.AuthFormatError:
            self._owner.count("auth_failures")
            self.close("malformed peer-id proof", ERROR_AUTH_FAILED)
            return
        if not auth.verify_proof(proof, self._nonce, self._identity.peer_id):
            self._owner.count("auth_failures")
            self.close("peer-id proof does not verify", ERROR_AUTH_FAILED)
            return
        if proof.client_id == self._identity.peer_id:
            self._violation("peer claims our own id")
            return
        self.peer_id = proof.client_id
        self._write_control(FrameType.ACCEPT, b"")
        self._become_ready()

    def _become_ready(self) -> None:
        assert self.peer_id is not None
        self.state = ConnectionState.READY
        self.last_activity_s = self._loop.time()
        self._owner.connection_ready(self)
        if not self.ready.done():
            self.ready.set_result(self.peer_id)

    def _on_blob_bytes(
        self, stream_id: int, inbound: _InboundStream, data: bytes, end_stream: bool
    ) -> None:
        decoder = inbound.blob
        assert decoder is not None
        self._owner.charge_bytes(self, len(data))
        self.last_activity_s = self._loop.time()
        verdict = decoder.feed(data, end_stream)
        if decoder.size_bytes is not None and not inbound.reserved_bytes:
            if verdict is not BlobVerdict.OVERSIZED:
                if not self._owner.reserve_blob_bytes(self, decoder.size_bytes):
                    self._reject_blob(stream_id, inbound, "blobs_rejected_buffer_full")
                    return
                # An empty blob reserves nothing but must still count as reserved.
                inbound.reserved_bytes = max(1, decoder.size_bytes)
        if verdict is BlobVerdict.INCOMPLETE:
            return
        if verdict is BlobVerdict.COMPLETE:
            self._owner.deliver_blob(self, decoder.take(), decoder.digest)
            self._release(inbound)
            return
        self._reject_blob(stream_id, inbound, _BLOB_VERDICT_COUNTERS[verdict])

    def _reject_blob(self, stream_id: int, inbound: _InboundStream, counter: str | None) -> None:
        if counter is not None:
            self._owner.count(counter)
        self._release(inbound)
        inbound.discarding = True
        self._stop(stream_id, ERROR_BLOB_REJECTED)

    def _release(self, inbound: _InboundStream) -> None:
        if inbound.blob is not None:
            self._owner.release_blob(self, inbound.reserved_bytes)
            inbound.blob = None
            inbound.reserved_bytes = 0

    def _drop_inbound(self, stream_id: int) -> None:
        inbound = self._inbound.pop(stream_id, None)
        if inbound is not None:
            self._release(inbound)

    def _stop(self, stream_id: int, error_code: int) -> None:
        try:
            self.quic.stop_stream(stream_id, error_code)
        except ValueError:
            return  # already finished or never known: nothing to stop
        self._transmit_soon()

    def _violation(self, reason: str) -> None:
        self._owner.count("protocol_violations")
        self.close(reason, ERROR_PROTOCOL)

    # -- commands from the owner ------------------------------------------------------

    @property
    def is_usable(self) -> bool:
        return self.state is ConnectionState.READY

    def close(self, reason: str, error_code: int = ERROR_NONE) -> None:
        """Send CONNECTION_CLOSE; the owner forgets the connection for sending at once."""
        if self.state in (ConnectionState.CLOSING, ConnectionState.CLOSED):
            return
        self.state = ConnectionState.CLOSING
        self.quic.close(error_code=error_code, reason_phrase=reason)
        self.transmit()
        self._progress.set()
        self._owner.connection_closed(self)

    def fail(self, error: TransportError, error_code: int) -> None:
        """Close and make `ready` raise `error`."""
        self._failure = error
        if not self.ready.done():
            self.ready.set_exception(error)
        self.close(str(error), error_code)

    def send_frame(self, payload: bytes) -> None:
        """Queue one DATA frame on our control stream."""
        if not self.is_usable:
            raise ConnectionLost(f"connection to {self.peer_id} is {self.state.value}")
        self.last_activity_s = self._loop.time()
        self._write_control(FrameType.DATA, payload)

    def control_writable(self) -> bool:
        """True when a control frame may be written without waiting for ACKs."""
        stream_id = self._control_stream_id
        return (
            stream_id is not None
            and stream_id not in self._stopped_streams
            and self._unacked_bytes(stream_id) <= self._limits.send_window_bytes
        )

    async def wait_control_writable(self, timeout_s: float) -> None:
        """Back-pressure for control frames: wait while too much is unacknowledged."""
        assert self._control_stream_id is not None
        await self._wait_window(self._control_stream_id, self._loop.time() + timeout_s)

    async def send_blob(self, data: bytes, timeout_s: float) -> bytes:
        """Stream `data` on a new stream in chunks, one window ahead of the ACKs."""
        if not self.is_usable:
            raise ConnectionLost(f"connection to {self.peer_id} is {self.state.value}")
        digest = hashlib.sha256(data).digest()
        stream_id = self.quic.get_next_available_stream_id(is_unidirectional=True)
        header = bytes([STREAM_BLOB]) + encode_blob_header(len(data), digest)
        self.quic.send_stream_data(stream_id, header, end_stream=not data)
        self._transmit_soon()
        view = memoryview(data)
        chunk_bytes = self._limits.blob_chunk_bytes
        for offset in range(0, len(data), chunk_bytes):
            deadline_s = self._loop.time() + timeout_s
            await self._wait_window(stream_id, deadline_s)
            end = offset + chunk_bytes >= len(data)
            try:
                self.quic.send_stream_data(
                    stream_id, bytes(view[offset : offset + chunk_bytes]), end_stream=end
                )
            except (RuntimeError, ValueError) as error:
                raise BlobRejected(f"stream {stream_id}: {error}") from error
            self.last_activity_s = self._loop.time()
            self._transmit_soon()
        await self._wait_window(stream_id, self._loop.time() + timeout_s, drained=True)
        return digest

    async def _wait_window(self, stream_id: int, deadline_s: float, drained: bool = False) -> None:
        window = 0 if drained else self._limits.send_window_bytes
        while self._unacked_bytes(stream_id) > window:
            if stream_id in self._stopped_streams:
                raise BlobRejected(f"{self.peer_id} stopped stream {stream_id}")
            if not self.is_usable:
                raise ConnectionLost(f"connection to {self.peer_id} is {self.state.value}")
            remaining_s = deadline_s - self._loop.time()
            if remaining_s <= 0:
                raise SendTimeout(f"{self.peer_id} acknowledged nothing for {stream_id}")
            self._progress.clear()
            await wait_event(self._progress, remaining_s)
        if stream_id in self._stopped_streams:
            raise BlobRejected(f"{self.peer_id} stopped stream {stream_id}")

    def _unacked_bytes(self, stream_id: int) -> int:
        # aioquic 1.7 has no public "bytes in flight" per stream; the sender keeps
        # [_buffer_start, _buffer_stop) = written but not yet acknowledged.
        stream = self.quic._streams.get(stream_id)
        if stream is None:
            return 0
        sender = stream.sender
        return int(sender._buffer_stop - sender._buffer_start)


def _raise_datagram_size(quic: QuicConnection, size_bytes: int) -> None:
    """Send datagrams up to `size_bytes` from now on (call once the handshake is done).

    Not set in QuicConfiguration because aioquic pads Initial datagrams to the full
    size and scans PADDING byte by byte in Python (~5 ms for 16 KB per handshake).
    aioquic 1.7 reads `_max_datagram_size` for every datagram it builds.
    """
    quic._max_datagram_size = size_bytes


def is_loopback_host(host: object) -> bool:
    """True for a loopback IP literal (127.0.0.0/8, ::1); names are never assumed local."""
    try:
        return ipaddress.ip_address(str(host)).is_loopback
    except ValueError:
        return False


def _make_ack_due(quic: QuicConnection, now: float) -> None:
    """Make a pending 1-RTT ACK due now instead of after aioquic's fixed 1 ms delay.

    RFC 9000 §13.2.1 bounds the delay by max_ack_delay; acknowledging sooner is
    always allowed. aioquic 1.7 has no setting for this: its packet space's `ack_at`
    is the one thing read here.
    """
    space = quic._spaces.get(tls.Epoch.ONE_RTT)
    if space is not None and space.ack_at is not None and space.ack_at > now:
        space.ack_at = now


def _discarding() -> _InboundStream:
    inbound = _InboundStream()
    inbound.discarding = True
    return inbound


def _consume_exception(future: asyncio.Future[str]) -> None:
    # Server-side connections have nobody awaiting `ready`; mark the error as seen.
    if not future.cancelled():
        future.exception()
