"""Datagram economy of the transport, on real QUIC over 127.0.0.1.

A reply carries the ACK of the request it answers (one datagram each way per
request/reply), and loopback connections use large datagrams for blobs.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import replace

import pytest

from agentmesh.core.limits import MIB
from agentmesh.edge.transport import QuicTransport
from agentmesh.edge.transport.connection import is_loopback_host

from .test_transport import LIMITS, receive_all, run, transports

pytestmark = pytest.mark.integration

FAST = replace(LIMITS, messages_per_s=1e6, message_burst=10_000)


async def _echo(transport: QuicTransport) -> None:
    while True:
        incoming = await transport.receive()
        await transport.send(incoming.peer_id, incoming.payload)


def test_a_reply_carries_the_ack_of_its_request() -> None:
    rounds = 40

    async def scenario() -> None:
        async with transports(FAST, FAST) as (a, b):
            b_id = await a.dial(b.local_address)
            echo = asyncio.ensure_future(_echo(b))
            try:
                for _ in range(5):  # handshake leftovers settle
                    await a.send(b_id, b"warm-up")
                    await receive_all(a, 1)
                sent_a, sent_b = a.counters["datagrams_sent"], b.counters["datagrams_sent"]
                for i in range(rounds):
                    await a.send(b_id, b"request %d" % i + bytes(1_000))
                    (reply,) = await receive_all(a, 1)
                    assert reply.payload.startswith(b"request %d" % i)
                datagrams_a = a.counters["datagrams_sent"] - sent_a
                datagrams_b = b.counters["datagrams_sent"] - sent_b
            finally:
                echo.cancel()
            # One datagram per message; a separate ACK-only datagram for every
            # message (aioquic's 1 ms delayed ACK) would double these. Slack for a
            # loss-detection probe on a loaded machine.
            assert rounds <= datagrams_b <= rounds * 5 // 4
            assert rounds <= datagrams_a <= rounds * 5 // 4

    run(scenario)


def test_a_timer_meeting_a_due_ack_leaves_it_to_the_reply() -> None:
    """A stale timer handle that fires while the request's ACK waits for the reply
    sends nothing; the reply alone carries the ACK (one datagram, not two)."""

    async def scenario() -> None:
        async with transports(FAST, FAST) as (a, b):
            b_id = await a.dial(b.local_address)
            connection = b._preferred(a.identity.peer_id)
            assert connection is not None
            await a.send(b_id, b"request")
            incoming = await b.receive()  # one loop turn after the datagram: ACK due
            assert connection.quic.get_timer() <= asyncio.get_running_loop().time()
            sent = b.counters["datagrams_sent"]
            connection._on_timer()  # what a handle armed for an earlier deadline does
            assert b.counters["datagrams_sent"] == sent
            await b.send(incoming.peer_id, b"reply")
            assert b.counters["datagrams_sent"] == sent + 1
            (reply,) = await receive_all(a, 1)
            assert reply.payload == b"reply"

    run(scenario)


def test_forged_short_header_datagrams_are_dropped_and_the_connection_goes_on() -> None:
    """Short headers are routed by their connection id without a full parse; a forged
    one, with a live id or an unknown one or a cleared fixed bit, is dropped."""

    async def scenario() -> None:
        async with transports(FAST, FAST) as (a, b):
            b_id = await a.dial(b.local_address)
            connection = b._preferred(a.identity.peer_id)
            assert connection is not None
            live_cid = connection.quic.host_cid
            forged = [
                b"\x40" + live_cid + os.urandom(60),  # live id, undecryptable
                b"\x40" + live_cid,  # live id, nothing after it
                b"\x41" + os.urandom(8) + os.urandom(60),  # unknown id
                b"\x01" + live_cid + os.urandom(60),  # fixed bit cleared
                b"\x40",
            ]
            loop = asyncio.get_running_loop()
            udp, _ = await loop.create_datagram_endpoint(
                asyncio.DatagramProtocol, remote_addr=b.local_address
            )
            try:
                for datagram in forged * 20:
                    udp.sendto(datagram)
                await asyncio.sleep(0.2)
            finally:
                udp.close()
            counters = b.counters
            assert counters["datagrams_unroutable"] >= 20  # the unknown id
            assert counters["datagrams_malformed"] >= 40  # fixed bit cleared, lone byte
            await a.send(b_id, b"still here")
            (incoming,) = await receive_all(b, 1)
            assert incoming.payload == b"still here"
            assert b._preferred(a.identity.peer_id) is connection

    run(scenario)


def test_loopback_blobs_travel_in_large_datagrams() -> None:
    async def scenario() -> None:
        async with transports(LIMITS, LIMITS) as (a, b):
            b_id = await a.dial(("localhost", b.local_address[1]))  # a name is resolved
            assert b_id == b.identity.peer_id
            blob = os.urandom(1 * MIB)
            sent = a.counters["datagrams_sent"]
            digest = await a.send_blob(b_id, blob)
            (received,) = await receive_all(b, 1)
            assert received.payload == blob and received.digest == digest
            # 1,200-byte datagrams would need about 900 of them.
            assert a.counters["datagrams_sent"] - sent < MIB // 8_000

    run(scenario)


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.0.2", True),
        ("::1", True),
        ("10.0.0.7", False),
        ("192.168.1.20", False),
        ("localhost", False),  # a name could resolve anywhere: never assumed local
    ],
)
def test_only_loopback_literals_get_large_datagrams(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
