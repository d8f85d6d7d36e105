"""20 firmware processes (MicroPython unix port, 64 KB heap) bridged by one gateway over UDP."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from agentmesh.core.node import Event
from agentmesh.edge._cmd_firmware import CONFIG_FILE_NAME, build_bundle
from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.limits import GatewayLimits
from agentmesh.gateway_peer.model import MlpModel
from agentmesh.gateway_peer.server import GatewayServer

from ._mpy import FIRMWARE, env, micropython

pytestmark = [pytest.mark.micropython, pytest.mark.integration]
DEVICES = 20


def digits_shaped_model(model_id: int) -> MlpModel:
    """64 -> 32 (ReLU) -> 10, 2,410 float32 parameters: the digits-8 model's shape."""
    g = np.random.default_rng(42)
    arrays = [
        g.normal(0, np.sqrt(2 / 64), (64, 32)).astype(np.float32),
        g.normal(0, 0.1, 32).astype(np.float32),
        g.normal(0, np.sqrt(2 / 32), (32, 10)).astype(np.float32),
        g.normal(0, 0.1, 10).astype(np.float32),
    ]
    return MlpModel.from_arrays(model_id, arrays, GatewayLimits())


async def wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def run_scenario(tmp_path: Path) -> None:
    state_dir = tmp_path / "gateway"
    captured: dict[str, bytes] = {}
    events: list[Event] = []
    server = GatewayServer(state_dir, ("127.0.0.1", 0), event_hook=events.append)
    host, port = await server.start()
    receive = server.on_datagram

    def spy(data: bytes, sender: str) -> None:  # keep one real datagram per sender to replay
        captured.setdefault(sender, data)
        receive(data, sender)

    server.on_datagram = spy  # type: ignore[method-assign]
    processes = []
    try:
        for index in range(DEVICES):
            out = tmp_path / f"mcu-{index:02d}"
            build_bundle(f"mcu-{index:02d}", (host, port), out, state_dir, heartbeat_ms=1000)
            processes.append(
                subprocess.Popen(
                    [
                        micropython(),
                        "-X",
                        "heapsize=64k",
                        str(FIRMWARE / "main.py"),
                        str(out / CONFIG_FILE_NAME),
                    ],
                    env=env(),
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                )
            )
        await wait_until(lambda: len(server.bridged_adverts()) == DEVICES, 20, "20 hellos")
        for status in server.devices_status():
            caps = status["capabilities"]
            assert caps["sensors"] == ["sim_temp"] and caps["model_slots"] == 1
            assert caps["ram_bytes"] <= 70_000 and caps["params_max"] >= 2410
        adverts = server.bridged_adverts()
        assert {a.bridged_via for a in adverts} == {server.peer_id}
        assert all(a.capabilities["class"] == "mcu" for a in adverts)

        model = digits_shaped_model(7)
        for advert in adverts:
            server.send_model(advert.device_id, model)

        def loaded() -> set[str]:
            return {e.data["device_id"] for e in events if e.kind == "model_loaded"}

        await wait_until(lambda: len(loaded()) == DEVICES, 30, "20 model loads")
        inputs = np.random.default_rng(5).normal(size=(DEVICES, 64)).astype(np.float32)
        for index, advert in enumerate(adverts):
            server.request_inference(advert.device_id, inputs[index])

        def results() -> list[Event]:
            return [e for e in events if e.kind == "infer_result"]

        await wait_until(lambda: len(results()) == DEVICES, 20, "20 inference results")
        for event in results():
            assert event.data["error"] is None, event.data
            expected = model.forward(event.data["inputs"])
            np.testing.assert_allclose(event.data["outputs"], expected, rtol=1e-5, atol=1e-5)

        # Replayed and forged packets: rejected and counted, the devices unaffected.
        before = server.counters()
        attacker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        replays = list(captured.values())[:5]
        for datagram in replays:
            attacker.sendto(datagram, (host, port))
            forged = bytearray(datagram)
            forged[-1] ^= 0xFF
            attacker.sendto(bytes(forged), (host, port))
        stranger = SimulatedDevice("mcu-00", bytes(32), bytes(8), 10**9)  # right id, wrong key
        attacker.sendto(stranger.hello(), (host, port))
        attacker.close()

        def rejected(name: str) -> int:
            return server.counters().get(name, 0) - before.get(name, 0)

        await wait_until(lambda: rejected("rejected_bad_mac") == 6, 5, "forgeries counted")
        assert rejected("rejected_replay") == 5
        await asyncio.sleep(1.2)  # a heartbeat period: every device still accepted
        assert all(s["state"] == "alive" for s in server.devices_status())
        assert all(p.poll() is None for p in processes), "a firmware process died"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            output = process.communicate(timeout=10)[0].decode()
            assert "Traceback" not in output, output
        await server.close()


def test_twenty_firmware_devices_join_load_a_model_and_infer(tmp_path: Path) -> None:
    asyncio.run(run_scenario(tmp_path))
