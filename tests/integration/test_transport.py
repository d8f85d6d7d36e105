"""Real QUIC on 127.0.0.1 through aioquic: peers prove their ids, exchange frames and blobs.

No mocks: every transport binds a real UDP port. A misbehaving peer is a real
aioquic client (`RawPeer`) that speaks the documented stream layout by hand.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

import pytest
from aioquic.asyncio import QuicConnectionProtocol, connect
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from agentmesh.core.identity import Identity
from agentmesh.core.limits import KIB, MIB, TransportLimits
from agentmesh.edge.transport import (
    ALPN,
    BlobRejected,
    FrameTooLarge,
    Incoming,
    PeerIdMismatch,
    QuicTransport,
    TransportClosed,
    UnknownPeer,
    auth,
)
from agentmesh.edge.transport.framing import (
    STREAM_BLOB,
    STREAM_CONTROL,
    ControlDecoder,
    ControlFrame,
    FrameType,
    encode_blob_header,
    encode_frame,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")
LIMITS = TransportLimits(handshake_timeout_ms=2_000, send_timeout_ms=5_000)


def identity(n: int) -> Identity:
    return Identity.from_seed(bytes([n]) * 32)


def run(test: Callable[[], Awaitable[T]], timeout_s: float = 20.0) -> T:
    async def bounded() -> T:
        return await asyncio.wait_for(test(), timeout_s)

    return asyncio.run(bounded())


@asynccontextmanager
async def transports(*limits: TransportLimits) -> AsyncIterator[list[QuicTransport]]:
    started = [QuicTransport(identity(i + 1), "127.0.0.1", 0, lim) for i, lim in enumerate(limits)]
    try:
        for transport in started:
            await transport.start()
        yield started
    finally:
        for transport in started:
            await transport.close()


async def receive_all(
    transport: QuicTransport, count: int, timeout_s: float = 5.0
) -> list[Incoming]:
    return [await asyncio.wait_for(transport.receive(), timeout_s) for _ in range(count)]


async def drain(transport: QuicTransport, quiet_s: float = 0.3) -> list[Incoming]:
    """Everything queued until nothing arrives for `quiet_s`."""
    items: list[Incoming] = []
    while True:
        try:
            items.append(await asyncio.wait_for(transport.receive(), quiet_s))
        except TimeoutError:
            return items


class RawPeer(QuicConnectionProtocol):
    """A hand-driven aioquic client: authenticates (or fails to) as told, then misbehaves."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.frames: asyncio.Queue[ControlFrame] = asyncio.Queue()
        self.terminated = asyncio.Event()
        self._decoders: dict[int, ControlDecoder] = {}

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived) and event.data:
            data = event.data
            if event.stream_id not in self._decoders:
                assert data[0] == STREAM_CONTROL
                self._decoders[event.stream_id] = ControlDecoder(1 * MIB)
                data = data[1:]
            for frame in self._decoders[event.stream_id].feed(data):
                assert isinstance(frame, ControlFrame)
                self.frames.put_nowait(frame)
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated.set()

    def write(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._quic.send_stream_data(stream_id, data, end_stream=end_stream)
        self.transmit()

    async def authenticate(self, claimed: Identity, signer: Identity, server_id: str) -> int:
        """Open the control stream and answer the challenge; returns the stream id."""
        stream_id = self._quic.get_next_available_stream_id(is_unidirectional=True)
        self.write(stream_id, bytes([STREAM_CONTROL]))
        challenge = await asyncio.wait_for(self.frames.get(), 2)
        assert challenge.frame_type == FrameType.CHALLENGE
        message = auth.signed_message(challenge.payload, claimed.peer_id, server_id)
        proof = auth.ClientProof(claimed.peer_id, signer.sign(message))
        self.write(stream_id, encode_frame(FrameType.AUTH, auth.encode_proof(proof)))
        return stream_id


@asynccontextmanager
async def raw_peer(server: QuicTransport) -> AsyncIterator[RawPeer]:
    host, port = server.local_address
    config = QuicConfiguration(is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE)
    async with connect(host, port, configuration=config, create_protocol=RawPeer) as client:
        assert isinstance(client, RawPeer)
        yield client


def test_two_transports_exchange_frames_both_ways_on_one_connection() -> None:
    async def scenario() -> None:
        async with transports(LIMITS, LIMITS) as (a, b):
            b_id = await a.dial(b.local_address)
            assert b_id == b.identity.peer_id
            for i in range(5):
                await a.send(b_id, b"a->b %d" % i)
                await b.send(a.identity.peer_id, b"b->a %d" % i)
            got_b = await receive_all(b, 5)
            got_a = await receive_all(a, 5)
            assert [m.payload for m in got_b] == [b"a->b %d" % i for i in range(5)]
            assert {m.peer_id for m in got_b} == {a.identity.peer_id}
            assert [m.payload for m in got_a] == [b"b->a %d" % i for i in range(5)]
            assert {m.peer_id for m in got_a} == {b.identity.peer_id}
            assert a.counters["connections_dialed"] == 1
            assert "connections_dialed" not in b.counters  # b answered on a's connection
            assert a.connected_peers() == [b.identity.peer_id]
            assert b.connected_peers() == [a.identity.peer_id]

    run(scenario)


def test_three_transports_all_pairs() -> None:
    async def scenario() -> None:
        async with transports(LIMITS, LIMITS, LIMITS) as nodes:
            for sender in nodes:
                for receiver in nodes:
                    if sender is not receiver:
                        await sender.send(
                            receiver.identity.peer_id,
                            sender.identity.peer_id.encode(),
                            address=receiver.local_address,
                        )
            for receiver in nodes:
                got = await receive_all(receiver, 2)
                others = {n.identity.peer_id for n in nodes if n is not receiver}
                assert {m.peer_id for m in got} == others
                assert all(m.payload == m.peer_id.encode() for m in got)
                assert sorted(receiver.connected_peers()) == sorted(others)

    run(scenario)


def test_dialing_an_address_expecting_another_peer_id_fails() -> None:
    async def scenario() -> None:
        async with transports(LIMITS, LIMITS) as (a, b):
            with pytest.raises(PeerIdMismatch):
                await a.dial(b.local_address, expected_peer_id=identity(99).peer_id)
            assert a.counters["peer_id_mismatches"] == 1
            assert a.connected_peers() == []
            assert await a.dial(b.local_address, expected_peer_id=b.identity.peer_id)

    run(scenario)


def test_client_proving_an_id_it_has_no_key_for_is_dropped() -> None:
    async def scenario() -> None:
        async with transports(LIMITS) as (server,):
            victim, mallory = identity(50), identity(51)
            async with raw_peer(server) as client:
                await client.authenticate(victim, mallory, server.identity.peer_id)
                await asyncio.wait_for(client.terminated.wait(), 2)
            assert server.counters["auth_failures"] == 1
            assert server.connected_peers() == []

    run(scenario)


def test_client_proving_its_own_id_is_accepted_and_heard() -> None:
    # The positive control for the test above: the same raw client, honest this time.
    async def scenario() -> None:
        async with transports(LIMITS) as (server,):
            honest = identity(52)
            async with raw_peer(server) as client:
                stream_id = await client.authenticate(honest, honest, server.identity.peer_id)
                accept = await asyncio.wait_for(client.frames.get(), 2)
                assert accept.frame_type == FrameType.ACCEPT
                client.write(stream_id, encode_frame(FrameType.DATA, b"hi"))
                got = await receive_all(server, 1)
            assert got == [Incoming(honest.peer_id, "frame", b"hi")]
            assert "auth_failures" not in server.counters

    run(scenario)


def test_data_before_the_proof_is_a_protocol_violation() -> None:
    async def scenario() -> None:
        async with transports(LIMITS) as (server,):
            async with raw_peer(server) as client:
                stream_id = client._quic.get_next_available_stream_id(is_unidirectional=True)
                client.write(
                    stream_id, bytes([STREAM_CONTROL]) + encode_frame(FrameType.DATA, b"x")
                )
                await asyncio.wait_for(client.terminated.wait(), 2)
            assert server.counters["protocol_violations"] == 1
            assert "frames_received" not in server.counters

    run(scenario)


def test_blobs_of_several_megabytes_arrive_intact_without_blocking_frames() -> None:
    async def scenario() -> None:
        async with transports(LIMITS, LIMITS) as (a, b):
            b_id = await a.dial(b.local_address)
            blob = os.urandom(3 * MIB + 12_345)
            sending = asyncio.ensure_future(a.send_blob(b_id, blob))
            await asyncio.sleep(0.05)  # the blob is under way
            await a.send(b_id, b"control")
            first, second = await receive_all(b, 2)
            digest = await sending
            assert (first.kind, first.payload) == ("frame", b"control")
            assert second.kind == "blob" and second.payload == blob
            assert second.digest == digest == hashlib.sha256(blob).digest()
            assert await a.send_blob(b_id, b"") == hashlib.sha256(b"").digest()
            empty = await receive_all(b, 1)
            assert empty[0].kind == "blob" and empty[0].payload == b""

    run(scenario)


def test_blob_above_the_receivers_limit_is_refused() -> None:
    async def scenario() -> None:
        small = replace(LIMITS, blob_bytes_max=1 * MIB)
        async with transports(LIMITS, small) as (a, b):
            b_id = await a.dial(b.local_address)
            with pytest.raises(BlobRejected):
                await a.send_blob(b_id, os.urandom(2 * MIB))
            assert b.counters["blobs_rejected_oversize"] == 1
            await a.send(b_id, b"still connected")
            assert [m.payload for m in await receive_all(b, 1)] == [b"still connected"]
            with pytest.raises(FrameTooLarge):
                await b.send_blob(a.identity.peer_id, b"x" * (1 * MIB + 1))

    run(scenario)


def test_corrupted_and_truncated_blobs_are_rejected() -> None:
    async def scenario() -> None:
        async with transports(LIMITS) as (server,):
            peer = identity(53)
            data = os.urandom(200 * KIB)
            async with raw_peer(server) as client:
                await client.authenticate(peer, peer, server.identity.peer_id)
                await asyncio.wait_for(client.frames.get(), 2)  # ACCEPT
                bad_digest = hashlib.sha256(b"something else").digest()
                for header in (
                    encode_blob_header(len(data), bad_digest),
                    encode_blob_header(len(data) + 10, hashlib.sha256(data).digest()),
                    encode_blob_header(len(data) - 10, hashlib.sha256(data).digest()),
                ):
                    stream_id = client._quic.get_next_available_stream_id(is_unidirectional=True)
                    client.write(stream_id, bytes([STREAM_BLOB]) + header + data, end_stream=True)
                good = client._quic.get_next_available_stream_id(is_unidirectional=True)
                header = encode_blob_header(len(data), hashlib.sha256(data).digest())
                client.write(good, bytes([STREAM_BLOB]) + header + data, end_stream=True)
                got = await receive_all(server, 1)
                assert got[0].payload == data  # only the honest blob is delivered
                assert await drain(server, 0.2) == []
            assert server.counters["blobs_rejected_digest"] == 1
            assert server.counters["blobs_rejected_size"] == 2
            assert server.counters["blobs_received"] == 1

    run(scenario)


def test_idle_connections_close_and_are_redialed_transparently() -> None:
    async def scenario() -> None:
        quick = replace(LIMITS, idle_timeout_ms=200)
        async with transports(quick, quick) as (a, b):
            b_id = await a.dial(b.local_address)
            await a.send(b_id, b"one")
            await receive_all(b, 1)
            await asyncio.sleep(0.6)
            assert a.connected_peers() == [] and b.connected_peers() == []
            assert (
                a.counters["connections_idle_closed"] + b.counters.get("connections_idle_closed", 0)
                >= 1
            )
            # b never dialed a: it re-dials a at the address a's connection came from.
            await b.send(a.identity.peer_id, b"two")
            assert [m.payload for m in await receive_all(a, 1)] == [b"two"]
            assert b.counters["connections_dialed"] == 1

    run(scenario)


def test_a_flooding_peer_is_limited_while_another_is_heard() -> None:
    async def scenario() -> None:
        guarded = replace(LIMITS, messages_per_s=50, message_burst=20, incoming_per_peer_max=40)
        async with transports(guarded, LIMITS, LIMITS) as (target, flooder, polite):
            target_id, address = target.identity.peer_id, target.local_address
            await polite.dial(address)
            flood = [flooder.send(target_id, b"F" * 100, address=address) for _ in range(2_000)]
            await asyncio.gather(*flood)
            for i in range(5):
                await polite.send(target_id, b"polite %d" % i)
                await asyncio.sleep(0.03)
            got = await drain(target)
            from_polite = [m.payload for m in got if m.peer_id == polite.identity.peer_id]
            from_flooder = [m for m in got if m.peer_id == flooder.identity.peer_id]
            assert from_polite == [b"polite %d" % i for i in range(5)]
            assert len(from_flooder) < 200
            counters = target.counters
            dropped = counters["frames_rate_limited"] + counters.get(
                "frames_dropped_peer_queue_full", 0
            )
            assert counters["frames_rate_limited"] > 1_000
            assert dropped + len(from_flooder) == 2_000

    run(scenario)


def test_oversized_frames_are_rejected_and_the_stream_goes_on() -> None:
    async def scenario() -> None:
        strict = replace(LIMITS, frame_bytes_max=1 * KIB)
        async with transports(LIMITS, strict) as (a, b):
            b_id = await a.dial(b.local_address)
            await a.send(b_id, b"x" * (64 * KIB))
            await a.send(b_id, b"small")
            assert [m.payload for m in await receive_all(b, 1)] == [b"small"]
            assert b.counters["frames_rejected_oversize"] == 1
            with pytest.raises(FrameTooLarge):
                await b.send(a.identity.peer_id, b"y" * (1 * KIB + 1))

    run(scenario)


def test_simultaneous_dials_settle_on_one_connection() -> None:
    async def scenario() -> None:
        async with transports(LIMITS, LIMITS) as (a, b):
            a_id, b_id = a.identity.peer_id, b.identity.peer_id
            await asyncio.gather(a.dial(b.local_address), b.dial(a.local_address))
            assert len(a._ready[b_id]) == len(b._ready[a_id]) == 2
            chosen_by_a, chosen_by_b = a._preferred(b_id), b._preferred(a_id)
            assert chosen_by_a is not None and chosen_by_b is not None
            # The same connection seen from its two ends: one is its client, one its server.
            assert chosen_by_a.is_client != chosen_by_b.is_client
            assert chosen_by_a.is_client == (a_id < b_id)
            await a.send(b_id, b"ab")
            await b.send(a_id, b"ba")
            assert [m.payload for m in await receive_all(b, 1)] == [b"ab"]
            assert [m.payload for m in await receive_all(a, 1)] == [b"ba"]

    run(scenario)


def test_api_misuse_raises_typed_errors() -> None:
    async def scenario() -> None:
        async with transports(LIMITS) as (a,):
            with pytest.raises(UnknownPeer):
                await a.send(identity(77).peer_id, b"nowhere to go")
            receiving = asyncio.ensure_future(a.receive())
            await asyncio.sleep(0)
            await a.close()
            with pytest.raises(TransportClosed):
                await receiving
            with pytest.raises(TransportClosed):
                await a.send(identity(77).peer_id, b"closed")

    run(scenario)


def test_close_during_a_pending_dial_raises_transport_closed() -> None:
    async def scenario() -> None:
        silent = await asyncio.get_running_loop().create_datagram_endpoint(
            asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
        )
        address = silent[0].get_extra_info("sockname")[:2]
        transport = QuicTransport(identity(40))
        await transport.start()
        dial = asyncio.ensure_future(transport.dial(address))
        await asyncio.sleep(0.2)  # the handshake is waiting on a peer that never answers
        await transport.close()
        with pytest.raises(TransportClosed):
            await dial
        silent[0].close()

    run(scenario)


def test_a_restarted_peer_is_reached_on_its_new_connection() -> None:
    # The peer with the smaller id dialed first; the other then dies without a
    # CONNECTION_CLOSE (kill -9) and comes back with the same identity and dials in.
    ids = sorted((identity(50), identity(51)), key=lambda i: i.peer_id)
    small, large = ids

    async def scenario() -> bytes:
        a = QuicTransport(small, "127.0.0.1", 0)
        b = QuicTransport(large, "127.0.0.1", 0)
        await a.start()
        await b.start()
        await a.send(large.peer_id, b"hello", address=b.local_address)
        assert (await b.receive()).payload == b"hello"
        assert b._udp is not None
        b._udp.close()  # the process vanishes: no CONNECTION_CLOSE reaches `a`
        await asyncio.sleep(2.2)  # longer than a simultaneous-dial window
        b2 = QuicTransport(large, "127.0.0.1", 0)
        await b2.start()
        try:
            await b2.send(small.peer_id, b"back again", address=a.local_address)
            assert (await a.receive()).payload == b"back again"
            await a.send(large.peer_id, b"welcome")
            reply = await asyncio.wait_for(b2.receive(), 3)
            assert a.counters.get("connections_lost_by_peer") == 1
            return reply.payload
        finally:
            await b2.close()
            await a.close()

    assert run(scenario) == b"welcome"


def test_a_peer_that_closed_is_dropped_at_once_not_after_draining() -> None:
    # The peer with the larger id restarts right after a clean close (CONNECTION_CLOSE
    # sent): the survivor must stop preferring its draining connection at once
    # (RFC 9000 §10.2.2), not 3 PTO later when aioquic reports the termination.
    ids = sorted((identity(52), identity(53)), key=lambda i: i.peer_id)
    small, large = ids

    async def scenario() -> bytes:
        a = QuicTransport(small, "127.0.0.1", 0)
        b = QuicTransport(large, "127.0.0.1", 0)
        await a.start()
        await b.start()
        port = b.local_address[1]
        await a.send(large.peer_id, b"hello", address=b.local_address)
        assert (await b.receive()).payload == b"hello"
        await b.close()
        for _ in range(100):
            if not a.connected_peers():
                break
            await asyncio.sleep(0.005)
        assert a.connected_peers() == []
        assert a.counters.get("connections_closed_by_peer") == 1
        b2 = QuicTransport(large, "127.0.0.1", port)
        await b2.start()
        try:
            await a.send(large.peer_id, b"after the restart")  # dials the remembered address
            reply = await asyncio.wait_for(b2.receive(), 3)
            return reply.payload
        finally:
            await b2.close()
            await a.close()

    assert run(scenario) == b"after the restart"
