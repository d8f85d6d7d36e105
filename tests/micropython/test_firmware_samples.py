"""The firmware sends labelled samples (type 6) from its samples file under the MicroPython
unix port at 64 KB heap; the gateway buffers exactly those samples, in order."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from agentmesh.edge._cmd_firmware import CONFIG_FILE_NAME, build_bundle
from agentmesh.gateway_peer.device_sim import samples_file_bytes
from agentmesh.gateway_peer.server import GatewayServer
from agentmesh.tools.data import load_digits

from ._mpy import FIRMWARE, env, micropython

pytestmark = [pytest.mark.micropython, pytest.mark.integration]
SAMPLES = 40


async def run_scenario(tmp_path: Path) -> None:
    server = GatewayServer(tmp_path / "gateway", ("127.0.0.1", 0))
    host, port = await server.start()
    features, labels = load_digits()
    out = tmp_path / "mcu-s"
    build_bundle("mcu-s", (host, port), out, tmp_path / "gateway", heartbeat_ms=1000)
    (out / "digits.bin").write_bytes(samples_file_bytes(features[:SAMPLES], labels[:SAMPLES]))
    config_path = out / CONFIG_FILE_NAME
    config = json.loads(config_path.read_text())
    config.update(samples_file="digits.bin", sample_ms=20)
    config_path.write_text(json.dumps(config))
    argv = [micropython(), "-X", "heapsize=64k", str(FIRMWARE / "main.py"), str(config_path)]
    process = subprocess.Popen(argv, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while not server.sample_sets(SAMPLES):
            assert process.poll() is None, "the firmware exited"
            assert time.monotonic() < deadline, f"samples: {server.devices_status()}"
            await asyncio.sleep(0.1)
        ((device_id, kept),) = server.sample_sets(SAMPLES)
        assert device_id == "mcu-s" and len(kept) == SAMPLES
        np.testing.assert_array_equal(np.stack([s.features for s in kept]), features[:SAMPLES])
        assert [s.label for s in kept] == labels[:SAMPLES].tolist()
        assert server.counters().get("rejected_bad_body", 0) == 0
    finally:
        process.terminate()
        output = process.communicate(timeout=10)[0].decode()
        await server.close()
    assert "Traceback" not in output and "MemoryError" not in output, output


def test_firmware_sends_its_labelled_samples_at_64k_heap(tmp_path: Path) -> None:
    asyncio.run(run_scenario(tmp_path))
