"""`agent bench transport`: one-hop latency of a signed 1 KB message over QUIC on loopback.

The echo peer runs in a separate process (`python -m agentmesh.tools.bench.transport
echo-peer`) so the two ends do not share an event loop. Each round trip is: this side
seals a 1 KB `gossip` envelope (core/wire, Ed25519-signed), sends it over
QuicTransport; the peer opens (verifies) it, seals its own reply and sends it back;
this side opens the reply. One hop = half that round trip = seal + send + receive +
open. A plain asyncio UDP echo of the same bytes, against the same peer process and
in the same run, is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, cast

import numpy as np
from aioquic.asyncio import (  # type: ignore[attr-defined]  # re-exported names
    QuicConnectionProtocol,
    connect,
    serve,
)
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration

from agentmesh.core.identity import Identity
from agentmesh.core.limits import MIB, TransportLimits
from agentmesh.core.wire.envelope import open_envelope, seal
from agentmesh.edge.transport import QuicTransport, TransportClosed
from agentmesh.edge.transport.cert import certificate_for, private_key_for
from agentmesh.tools.bench._report import BenchReport, BenchResult

_MESH = "bench"
_RAW_PREFIX = b"RAW!"  # an unsigned frame; envelopes are CBOR maps and never start so
_PEER_SEED = bytes([0xB1]) * 32
_RUN_TIMEOUT_S = 600.0
_LIMITS = replace(TransportLimits(), messages_per_s=1e6, message_burst=100_000)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=2_000, help="measured round trips per case")
    parser.add_argument("--warmup", type=int, default=200, help="round trips before measuring")
    parser.add_argument("--payload-bytes", type=int, default=1_024, help="wire size of a message")
    parser.add_argument("--connections", type=int, default=30, help="new connections to time")
    parser.add_argument("--blob-mib", type=int, default=8, help="blob size for throughput")


def run(args: argparse.Namespace) -> BenchReport:
    return asyncio.run(_run(args))


# -- messages ---------------------------------------------------------------------


def _sealer(identity: Identity, wire_bytes: int) -> Any:
    """A function seq -> sealed envelope of exactly `wire_bytes` bytes (padding solved once)."""

    def make(seq: int, payload_size: int) -> bytes:
        body = {"topic": "bench", "payload": b"\x5a" * payload_size, "hops": 0}
        sealed: bytes = seal(identity, "gossip", _MESH, (seq,), body)
        return sealed

    probe = len(make(1 << 40, 0))
    padding = max(0, wire_bytes - probe)
    # CBOR length prefixes grow at 24 and 256 bytes; settle on the exact size.
    while padding and len(make(1 << 40, padding)) > wire_bytes:
        padding -= 1
    return lambda seq: make((1 << 40) + seq, padding)


# -- the echo peer (separate process) ------------------------------------------------


class _UdpEcho(asyncio.DatagramProtocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector loop's UDP transport is not a DatagramTransport subclass.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.transport.sendto(data, addr)


class _RawEchoServer(QuicConnectionProtocol):
    """Bare aioquic: echo stream data back on the same stream (the control case)."""

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived) and event.data:
            self._quic.send_stream_data(event.stream_id, event.data)
            self.transmit()


class _RawEchoClient(QuicConnectionProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.reply: asyncio.Future[bytes] | None = None

    def quic_event_received(self, event: events.QuicEvent) -> None:
        if isinstance(event, events.StreamDataReceived) and self.reply is not None:
            if not self.reply.done():
                self.reply.set_result(event.data)


async def _echo_peer(wire_bytes: int) -> None:
    loop = asyncio.get_running_loop()
    identity = Identity.from_seed(_PEER_SEED)
    quic = QuicTransport(identity, "127.0.0.1", 0, _LIMITS)
    await quic.start()
    udp, _ = await loop.create_datagram_endpoint(_UdpEcho, local_addr=("127.0.0.1", 0))
    raw_config = QuicConfiguration(is_client=False, alpn_protocols=["bench-raw"])
    raw_config.certificate = certificate_for(identity)
    raw_config.private_key = private_key_for(identity)
    raw = await serve("127.0.0.1", 0, configuration=raw_config, create_protocol=_RawEchoServer)
    raw_port = raw._transport.get_extra_info("sockname")[1] if raw._transport else 0
    make = _sealer(identity, wire_bytes)
    udp_port = udp.get_extra_info("sockname")[1]
    print("READY", quic.local_address[1], udp_port, raw_port, flush=True)

    closing: list[asyncio.Future[None]] = []

    def on_stdin() -> None:
        # The parent closes our stdin when it is done: stop serving.
        if not os.read(sys.stdin.fileno(), 4096):
            loop.remove_reader(sys.stdin.fileno())
            closing.append(asyncio.ensure_future(quic.close()))

    loop.add_reader(sys.stdin.fileno(), on_stdin)
    seq = 0
    while True:
        try:
            incoming = await quic.receive()
        except TransportClosed:
            break
        if incoming.kind == "blob":
            await quic.send(incoming.peer_id, incoming.digest)
        elif incoming.payload.startswith(_RAW_PREFIX):
            await quic.send(incoming.peer_id, incoming.payload)
        else:
            open_envelope(incoming.payload, mesh=_MESH)
            seq += 1
            await quic.send(incoming.peer_id, make(seq))
    udp.close()
    raw.close()


# -- measurements ------------------------------------------------------------------------


class _UdpClient(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(data)


_BLOCK_ROUNDS = 50  # cases take turns in blocks this long, so load changes hit all alike

RoundTrip = Callable[[int], Awaitable[None]]


@dataclass
class _CaseTimes:
    """What one echo case measured: round trips, and this process's share of them."""

    rtts_s: list[float] = field(default_factory=list)
    cpu_s: float = 0.0  # this process's CPU time over the measured round trips
    datagrams: int = 0  # QUIC datagrams this side sent and received (QuicTransport cases)


async def _interleaved(
    cases: dict[str, RoundTrip], rounds: int, warmup: int, datagrams: Callable[[], int]
) -> dict[str, _CaseTimes]:
    """Round-trip times of every case, the cases taking turns block by block."""
    times = {name: _CaseTimes() for name in cases}
    done = -warmup
    while done < rounds:
        # The warmup ends on a block boundary, so a block is measured whole or not at all.
        block = min(_BLOCK_ROUNDS, rounds - done if done >= 0 else -done)
        for name, round_trip in cases.items():
            measured = times[name]
            cpu_start, datagrams_start = time.process_time(), datagrams()
            for i in range(block):
                start = time.perf_counter()
                await round_trip(done + i + warmup)
                if done + i >= 0:
                    measured.rtts_s.append(time.perf_counter() - start)
            if done >= 0:
                measured.cpu_s += time.process_time() - cpu_start
                measured.datagrams += datagrams() - datagrams_start
        done += block
    return times


def _udp_case(
    transport: asyncio.DatagramTransport, client: _UdpClient, payload: bytes
) -> RoundTrip:
    loop = asyncio.get_running_loop()

    async def round_trip(_: int) -> None:
        client.reply = loop.create_future()
        transport.sendto(payload)
        await asyncio.wait_for(client.reply, 2)

    return round_trip


class _EnvelopeTimes:
    """Seal and open times of this side, as they ran inside the round trips."""

    def __init__(self) -> None:
        self.seal_s: list[float] = []
        self.open_s: list[float] = []


def _quic_case(
    quic: QuicTransport, peer_id: str, make: Any, signed: _EnvelopeTimes | None
) -> RoundTrip:
    raw = _RAW_PREFIX + make(0)[len(_RAW_PREFIX) :]  # built once: nothing signed in the loop
    clock = time.perf_counter

    async def round_trip(i: int) -> None:
        if signed is None:
            await quic.send(peer_id, raw)
            await quic.receive()  # the whole run is bounded by _RUN_TIMEOUT_S
            return
        start = clock()
        frame = make(i)
        signed.seal_s.append(clock() - start)
        await quic.send(peer_id, frame)
        reply = await quic.receive()
        start = clock()
        open_envelope(reply.payload, mesh=_MESH)
        signed.open_s.append(clock() - start)

    return round_trip


def _raw_aioquic_case(client: _RawEchoClient, payload: bytes) -> RoundTrip:
    loop = asyncio.get_running_loop()
    stream_id = client._quic.get_next_available_stream_id()

    async def round_trip(_: int) -> None:
        client.reply = loop.create_future()
        client._quic.send_stream_data(stream_id, payload)
        client.transmit()
        received = len(await asyncio.wait_for(client.reply, 2))
        while received < len(payload):  # an echo may come back in two pieces
            client.reply = loop.create_future()
            received += len(await asyncio.wait_for(client.reply, 2))

    return round_trip


async def _new_connection_ms(address: tuple[str, int], peer_id: str, count: int) -> list[float]:
    times: list[float] = []
    for i in range(count):
        client = QuicTransport(Identity.from_seed(hashlib.sha256(b"c%d" % i).digest()))
        await client.start()
        start = time.perf_counter()
        await client.dial(address, expected_peer_id=peer_id)
        times.append(time.perf_counter() - start)
        await client.close()
    return times


async def _blob_throughput(
    quic: QuicTransport, peer_id: str, size_bytes: int
) -> tuple[float, bool]:
    data = os.urandom(size_bytes)
    start = time.perf_counter()
    digest = await quic.send_blob(peer_id, data)
    reply = await asyncio.wait_for(quic.receive(), 60)
    return time.perf_counter() - start, reply.payload == digest


def _latency(one_hop_s: list[float]) -> dict[str, float]:
    values_ms = np.array(one_hop_s) * 1000
    return {
        "p50_ms": round(float(np.percentile(values_ms, 50)), 4),
        "p99_ms": round(float(np.percentile(values_ms, 99)), 4),
    }


async def _run(args: argparse.Namespace) -> BenchReport:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "agentmesh.tools.bench.transport", "echo-peer",
        str(args.payload_bytes),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 30)
        _, quic_port, udp_port, raw_port = line.decode().split()
        measuring = _measure(args, int(quic_port), int(udp_port), int(raw_port))
        return await asyncio.wait_for(measuring, _RUN_TIMEOUT_S)
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()


async def _measure(
    args: argparse.Namespace, quic_port: int, udp_port: int, raw_port: int
) -> BenchReport:
    identity = Identity.from_seed(bytes([0xA1]) * 32)
    peer_id = Identity.from_seed(_PEER_SEED).peer_id
    address = ("127.0.0.1", quic_port)
    make = _sealer(identity, args.payload_bytes)
    quic = QuicTransport(identity, "127.0.0.1", 0, _LIMITS)
    await quic.start()
    loop = asyncio.get_running_loop()
    udp, udp_client = await loop.create_datagram_endpoint(
        _UdpClient, remote_addr=("127.0.0.1", udp_port)
    )
    raw_config = QuicConfiguration(
        is_client=True, alpn_protocols=["bench-raw"], verify_mode=ssl.CERT_NONE
    )
    load_before = os.getloadavg()
    try:
        await quic.dial(address, expected_peer_id=peer_id)
        async with connect(
            "127.0.0.1", raw_port, configuration=raw_config, create_protocol=_RawEchoClient
        ) as raw_client:
            assert isinstance(raw_client, _RawEchoClient)
            envelope_times = _EnvelopeTimes()
            cases = {
                "signed": _quic_case(quic, peer_id, make, envelope_times),
                "unsigned": _quic_case(quic, peer_id, make, None),
                "raw": _raw_aioquic_case(raw_client, make(0)),
                "udp": _udp_case(udp, udp_client, make(0)),
            }
            times = await _interleaved(cases, args.rounds, args.warmup, lambda: _datagrams(quic))
        blob_s, blob_ok = await _blob_throughput(quic, peer_id, args.blob_mib * MIB)
    finally:
        udp.close()
        await quic.close()
    connects = await _new_connection_ms(address, peer_id, args.connections)
    load = (load_before, os.getloadavg())
    rounds = args.rounds  # the warmup's seal/open times are left out below
    envelope_times.seal_s = envelope_times.seal_s[-rounds:]
    envelope_times.open_s = envelope_times.open_s[-rounds:]
    return _report(args, times, envelope_times, connects, blob_s, blob_ok, len(make(0)), load)


def _datagrams(quic: QuicTransport) -> int:
    counters = quic.counters
    return counters.get("datagrams_sent", 0) + counters.get("datagrams_received", 0)


def _report(
    args: argparse.Namespace,
    times: dict[str, _CaseTimes],
    envelope_times: _EnvelopeTimes,
    connects: list[float],
    blob_s: float,
    blob_ok: bool,
    wire_bytes: int,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> BenchReport:
    udp = times["udp"].rtts_s
    udp_hop = _latency([rtt / 2 for rtt in udp])
    params = {"wire_bytes": wire_bytes, "rounds": args.rounds, "warmup": args.warmup}

    def hop_result(case: str, measured: _CaseTimes) -> BenchResult:
        rtts = measured.rtts_s
        metrics: dict[str, float | int] = dict(_latency([rtt / 2 for rtt in rtts]))
        metrics["round_trip_p50_ms"] = round(float(np.percentile(rtts, 50)) * 1000, 4)
        metrics["ratio_to_udp_echo"] = round(metrics["p50_ms"] / udp_hop["p50_ms"], 2)
        metrics["client_cpu_per_round_trip_ms"] = round(measured.cpu_s / len(rtts) * 1000, 4)
        if case.startswith("quic_"):  # the other cases do not go through QuicTransport
            metrics["datagrams_per_round_trip"] = round(measured.datagrams / len(rtts), 3)
        return BenchResult(case, dict(params), metrics)

    signed = hop_result("quic_signed_envelope", times["signed"])
    # In place, between packets, seal and open run slower than in a hot loop (cold caches).
    signed.metrics["seal_p50_ms"] = round(float(np.median(envelope_times.seal_s)) * 1000, 4)
    signed.metrics["open_p50_ms"] = round(float(np.median(envelope_times.open_s)) * 1000, 4)
    udp_metrics = hop_result("udp_echo", times["udp"]).metrics
    del udp_metrics["ratio_to_udp_echo"]
    blob_bytes = args.blob_mib * MIB
    return BenchReport(
        bench="transport",
        results=[
            signed,
            hop_result("quic_unsigned_frame", times["unsigned"]),
            hop_result("aioquic_bare_stream_echo", times["raw"]),
            BenchResult("udp_echo", dict(params), udp_metrics),
            BenchResult(
                "quic_new_connection",
                {"connections": len(connects)},
                {f"{k}": v for k, v in _latency(connects).items()},
            ),
            BenchResult(
                "quic_blob",
                {"blob_bytes": blob_bytes, "chunk_bytes": _LIMITS.blob_chunk_bytes},
                {
                    "throughput_mb_per_s": round(blob_bytes / MIB / blob_s, 2),
                    "wall_s": round(blob_s, 3),
                    "digest_ok": int(blob_ok),
                },
            ),
        ],
        notes=[
            "one hop = half a round trip: seal (Ed25519 sign) + QUIC send + receive + open "
            "(verify); the echo peer is a separate process and seals its own reply",
            "envelope: core/wire/envelope.py seal/open_envelope, type gossip, padded to "
            f"{wire_bytes} wire bytes",
            "quic_unsigned_frame: the same bytes, neither signed nor verified (transport only)",
            "aioquic_bare_stream_echo: aioquic's own asyncio client/server echoing the same "
            "bytes on one stream (no transport, no signing): what aioquic costs by itself here",
            "udp_echo: plain asyncio UDP echo of the same bytes by the same peer process; "
            "ratio_to_udp_echo = p50 one-hop / udp_echo p50 one-hop",
            "quic_new_connection: dial() from a fresh transport until the peer ids are proven "
            "both ways (TLS 1.3 handshake + nonce signature)",
            "quic_blob: send_blob until acknowledged plus the peer's reply with the digest; "
            "both ends verify sha-256",
            "seal_p50_ms / open_p50_ms: this side's seal and open as timed inside the signed "
            "round trips (each hop pays one of each); client_cpu_per_round_trip_ms: this "
            "process's CPU time per round trip (the echo peer's is not included); "
            "datagrams_per_round_trip: QUIC datagrams this side sent and received",
            "figures are medians (p50) or 99th percentiles over the measured rounds; the four "
            f"echo cases take turns in blocks of {_BLOCK_ROUNDS} round trips (interleaved), so "
            "a change of machine load hits them alike",
            "load average (1, 5, 15 min) before the echo cases: "
            f"{' '.join(f'{x:.2f}' for x in load[0])}; after the new connections: "
            f"{' '.join(f'{x:.2f}' for x in load[1])} (on {os.cpu_count()} CPUs); figures "
            "measured under load are not comparable with an idle machine's",
        ],
    )


if __name__ == "__main__" and sys.argv[1:2] == ["echo-peer"]:
    asyncio.run(_echo_peer(int(sys.argv[2])))
