"""`agent bench gateway`: what one gateway sustains from 100 simulated microcontrollers.

The devices are CPython clients speaking the bridge protocol (gateway_peer.device_sim)
in a separate process; the gateway runs here on asyncio, as in an agent. Latency
is from the device's send (CLOCK_MONOTONIC, shared by the processes) to the
gateway having authenticated, parsed and handled the reading; the same clients
sending unauthenticated datagrams to a bare asyncio UDP endpoint are the
`raw_udp_loopback` baseline, so the difference is what bridging adds.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from agentmesh.core.node import Event
from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.limits import GatewayLimits
from agentmesh.gateway_peer.server import GatewayServer
from agentmesh.tools.bench._report import BenchReport, BenchResult

SAMPLES_MAX = 1_000_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--devices", type=int, default=100, help="simulated microcontrollers")
    parser.add_argument("--duration-s", type=float, default=3.0, help="per measured case")
    parser.add_argument(
        "--latency-rate",
        type=float,
        default=2000.0,
        help="offered messages/s (all devices together) for the latency cases",
    )


def _now_us() -> int:
    return time.monotonic_ns() // 1000


# ---------------------------------------------------------------------- client process


def _client(
    address: tuple[str, int],
    keys: list[tuple[str, bytes]],
    mode: str,
    rate_per_s: float,
    duration_s: float,
    result: Any,
) -> None:
    """Runs in its own process: hello from every device, then readings for duration_s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
    devices = [SimulatedDevice(d, k, os.urandom(8)) for d, k in keys]
    values = np.array([21.5], dtype=np.float32)
    if mode != "raw":
        for device in devices:
            sock.sendto(device.hello(hb=60_000), address)
        time.sleep(0.3)
    if mode == "flood":
        # Sealed ahead of time: the clients must not be what limits the gateway.
        per_device = max(1, int(60_000 * duration_s) // len(devices))
        packets = [
            device.reading("temp", 0, values) for _ in range(per_device) for device in devices
        ]
        sent, start = 0, time.monotonic()
        for packet in packets:
            sock.sendto(packet, address)
            sent += 1
            if sent % 256 == 0 and time.monotonic() - start > duration_s:
                break
        result.put(sent)
        return
    sent, start = 0, time.monotonic()
    index = 0
    while (elapsed := time.monotonic() - start) < duration_s:
        due = int(elapsed * rate_per_s) - sent
        for _ in range(due):
            device = devices[index % len(devices)]
            index += 1
            if mode == "raw":
                sock.sendto(_now_us().to_bytes(8, "little"), address)
            else:
                sock.sendto(device.reading("temp", _now_us(), values), address)
            sent += 1
        time.sleep(0.0005)
    result.put(sent)


def _run_client(
    address: tuple[str, int],
    keys: list[tuple[str, bytes]],
    mode: str,
    rate_per_s: float,
    duration_s: float,
) -> Any:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(
        target=_client, args=(address, keys, mode, rate_per_s, duration_s, queue), daemon=True
    )
    process.start()
    process.result_queue = queue  # type: ignore[attr-defined]
    return process


async def _wait_client(process: Any) -> int:
    while process.is_alive():
        await asyncio.sleep(0.05)
    sent: int = process.result_queue.get(timeout=5)
    return sent


# ---------------------------------------------------------------------- cases


class _Recorder:
    """Bounded latency samples and handled-message times."""

    def __init__(self) -> None:
        self.latencies_us: list[int] = []
        self.handled = 0
        self.first_s = 0.0
        self.last_s = 0.0

    def record(self, device_time_us: int | None) -> None:
        now = time.monotonic()
        if self.handled == 0:
            self.first_s = now
        self.last_s = now
        self.handled += 1
        if device_time_us and len(self.latencies_us) < SAMPLES_MAX:
            self.latencies_us.append(_now_us() - device_time_us)

    def on_event(self, event: Event) -> None:
        if event.kind == "reading":
            self.record(event.data["device_time_us"])


def _percentiles(latencies_us: list[int]) -> dict[str, float]:
    if not latencies_us:
        return {}
    values = np.array(latencies_us, dtype=np.float64) / 1000.0
    return {
        "p50_ms": round(float(np.percentile(values, 50)), 4),
        "p99_ms": round(float(np.percentile(values, 99)), 4),
    }


async def _gateway_case(args: argparse.Namespace, mode: str, rate: float) -> dict[str, Any]:
    limits = GatewayLimits(messages_per_s=1e6, message_burst=10**6, events_max=10**7)
    recorder = _Recorder()
    with tempfile.TemporaryDirectory() as state:
        server = GatewayServer(
            Path(state),
            ("127.0.0.1", 0),
            limits=limits,
            event_hook=recorder.on_event,
            receive_buffer_bytes=8 * 1024 * 1024,
        )
        keys = [
            (f"bench-{i:03d}", server.registry.provision(f"bench-{i:03d}", 0))
            for i in range(args.devices)
        ]
        address = await server.start()
        process = _run_client(address, keys, mode, rate, args.duration_s)
        sent = await _wait_client(process)
        await asyncio.sleep(0.3)  # let the queue drain
        counters = server.counters()
        devices = len(server.bridged_adverts())
        # drop the event queue: the hook already recorded everything
        while not server.events.empty():
            server.events.get_nowait()
        await server.close()
    handled_s = max(1e-9, recorder.last_s - recorder.first_s)
    metrics: dict[str, Any] = {
        "sent": sent,
        "handled": recorder.handled,
        "messages_per_s": round(recorder.handled / handled_s, 1),
        "loss_fraction": round(1 - recorder.handled / max(1, sent), 4),
        "devices_joined": devices,
        "rejected": sum(v for k, v in counters.items() if k.startswith("rejected_")),
    }
    if mode != "flood":
        metrics.update(_percentiles(recorder.latencies_us))
    return metrics


class _RawEndpoint(asyncio.DatagramProtocol):
    def __init__(self, recorder: _Recorder) -> None:
        self.recorder = recorder

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.recorder.record(int.from_bytes(data[:8], "little"))


async def _raw_case(args: argparse.Namespace, rate: float) -> dict[str, Any]:
    recorder = _Recorder()
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _RawEndpoint(recorder), local_addr=("127.0.0.1", 0)
    )
    address = transport.get_extra_info("sockname")[:2]
    process = _run_client(address, [("raw", bytes(32))], "raw", rate, args.duration_s)
    sent = await _wait_client(process)
    await asyncio.sleep(0.2)
    transport.close()
    return {"sent": sent, "handled": recorder.handled, **_percentiles(recorder.latencies_us)}


async def _measure(args: argparse.Namespace) -> BenchReport:
    report = BenchReport("gateway")
    load_1m = os.getloadavg()[0]
    params = {"devices": args.devices, "duration_s": args.duration_s}
    flood = await _gateway_case(args, "flood", 0.0)
    report.results.append(BenchResult("gateway_sustained", params, flood))
    latency_params = {**params, "offered_per_s": args.latency_rate}
    raw = await _raw_case(args, args.latency_rate)
    bridged = await _gateway_case(args, "paced", args.latency_rate)
    if raw.get("p50_ms") and bridged.get("p50_ms"):
        bridged["added_p50_ms"] = round(bridged["p50_ms"] - raw["p50_ms"], 4)
        bridged["added_p99_ms"] = round(bridged["p99_ms"] - raw["p99_ms"], 4)
        bridged["ratio_to_raw_udp_loopback"] = round(bridged["p50_ms"] / raw["p50_ms"], 2)
    report.results.append(BenchResult("gateway_latency", latency_params, bridged))
    report.results.append(BenchResult("raw_udp_loopback", latency_params, raw))
    report.notes += [
        "gateway_sustained: readings sealed ahead of time and sent as fast as one client "
        "process can; messages_per_s counts readings the gateway authenticated and handled.",
        "gateway_latency: device send (CLOCK_MONOTONIC) to reading handled at the gateway, "
        "at the offered rate; added_* subtract the raw_udp_loopback baseline.",
        "Simulated devices are CPython (gateway_peer.device_sim) in one separate process.",
        f"1-minute load average at start: {load_1m:.2f} on {os.cpu_count()} CPUs "
        "(other work on the box lowers these figures)",
    ]
    return report


def run(args: argparse.Namespace) -> BenchReport:
    return asyncio.run(_measure(args))
