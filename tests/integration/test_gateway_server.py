"""The UDP gateway for real: loopback sockets, SQLite registry, restart keeps replay counters."""

from __future__ import annotations

import asyncio
import os
import socket
from pathlib import Path

import numpy as np
import pytest

from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.server import GatewayServer

pytestmark = pytest.mark.integration


async def _wait(check, timeout_s: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    for _ in range(int(timeout_s / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("timed out")


async def scenario(state_dir: Path) -> None:
    server = GatewayServer(state_dir, ("127.0.0.1", 0))
    address = await server.start()
    key = server.registry.provision("mcu-r", 0)
    device = SimulatedDevice("mcu-r", key, os.urandom(8))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    sock.sendto(device.hello(), address)
    loop = asyncio.get_running_loop()
    device.handle(await asyncio.wait_for(loop.sock_recv(sock, 2048), 5))
    assert device.welcomed_by == server.peer_id
    readings = [device.reading("temp", i, np.array([20.0 + i])) for i in range(3)]
    for datagram in readings:
        sock.sendto(datagram, address)
    await _wait(lambda: server.counters().get("accepted", 0) == 4)
    await server.close()  # flushes the replay counters to the registry

    restarted = GatewayServer(state_dir, ("127.0.0.1", 0))
    address = await restarted.start()
    for datagram in readings:  # old messages replayed to a fresh gateway process state
        sock.sendto(datagram, address)
    await _wait(lambda: restarted.counters().get("rejected_replay", 0) == 3)
    sock.sendto(device.heartbeat(10), address)  # the device itself carries on
    await _wait(lambda: restarted.counters().get("accepted", 0) == 1)
    assert restarted.peer_id == server.peer_id  # same identity from the state dir
    sock.close()
    await restarted.close()


def test_replays_after_a_gateway_restart_are_rejected(tmp_path: Path) -> None:
    asyncio.run(scenario(tmp_path))
