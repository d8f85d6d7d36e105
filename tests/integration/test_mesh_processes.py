"""Five real `agent join` processes on loopback: discovery, failure detection, rejoin, admission."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmesh.core.membership import MembershipConfig
from agentmesh.core.membership.config import suspicion_timeout_bounds_ms
from agentmesh.edge.control import ControlError, request

pytestmark = pytest.mark.integration

MESH_KEY = "integration-mesh-key-0123456789"
AGENTS = 5
DISCOVERY_BOUND_S = 5.0


class AgentProcess:
    """One `agent join` child process with its own state directory."""

    def __init__(self, state_dir: Path, mesh: str, key: str) -> None:
        self.state_dir = state_dir
        self.mesh = mesh
        self.key = key
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.with_suffix(".log")

    def start(self) -> None:
        env = {**os.environ, "AGENTMESH_MESH_KEY": self.key}
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "agentmesh.edge", "join", "--loopback", "--mesh", self.mesh,
             "--state-dir", str(self.state_dir)],
            env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def status(self) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = asyncio.run(request(self.state_dir, "status"))
        except (ControlError, OSError):
            return None
        return result

    def members(self) -> dict[str, str]:
        status = self.status()
        if status is None:
            return {}
        return {m["peer_id"]: m["state"] for m in status["members"]}

    def peer_id(self) -> str:
        status = self.status()
        assert status is not None, self.log()
        return str(status["self"]["peer_id"])

    def kill9(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def wait_until(condition: Callable[[], bool], timeout_s: float, step_s: float = 0.1) -> float:
    """Seconds until `condition()` held; raises AssertionError on timeout."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(step_s)
    raise AssertionError(f"condition not met within {timeout_s} s")


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[tuple[str, list[AgentProcess]]]:
    name = f"itest-{uuid.uuid4().hex[:8]}"  # never collide with other meshes on this host
    agents = [AgentProcess(tmp_path / f"agent{i}", name, MESH_KEY) for i in range(AGENTS)]
    try:
        yield name, agents
    finally:
        for agent in agents:
            agent.stop()


def failure_detection_bound_s(members: int) -> float:
    """Worst case: a full probe round-robin, the longest suspicion, then gossip."""
    config = MembershipConfig()
    _, suspicion_max_ms = suspicion_timeout_bounds_ms(config, members)
    return (members * config.probe_interval_ms + suspicion_max_ms) / 1000 + 3.0


def test_mesh_of_five_processes(mesh: tuple[str, list[AgentProcess]], tmp_path: Path) -> None:
    name, agents = mesh
    for agent in agents:
        agent.start()
    wait_until(lambda: all(a.status() is not None for a in agents), timeout_s=30)
    ids = [agent.peer_id() for agent in agents]

    # 1. mDNS alone (no --peer): everyone knows everyone, alive.
    def all_alive() -> bool:
        return all(a.members() == dict.fromkeys(ids, "alive") for a in agents)

    took_s = wait_until(all_alive, timeout_s=DISCOVERY_BOUND_S)
    print(f"5 agents converged {took_s:.2f} s after all were serving")

    # 2. kill -9 one: every other agent declares it dead within the bound.
    victim = agents[4]
    victim_id = ids[4]
    victim.kill9()
    bound_s = failure_detection_bound_s(AGENTS)
    survivors = agents[:4]
    took_s = wait_until(
        lambda: all(a.members().get(victim_id) == "dead" for a in survivors), timeout_s=bound_s
    )
    print(f"kill -9 detected by all survivors in {took_s:.2f} s (bound {bound_s:.1f} s)")

    # 3. restart with the same state dir: same identity, alive again everywhere.
    victim.start()
    wait_until(lambda: victim.status() is not None, timeout_s=30)
    assert victim.peer_id() == victim_id
    wait_until(lambda: all(a.members().get(victim_id) == "alive" for a in survivors), 30)
    incarnations = {
        m["incarnation"]
        for a in survivors
        for m in (a.status() or {"members": []})["members"]
        if m["peer_id"] == victim_id
    }
    assert min(incarnations) >= 1, "a restarted agent rejoins above its old incarnation"

    # 4. an agent with the wrong mesh key is refused and never gossiped.
    intruder = AgentProcess(tmp_path / "intruder", name, "a-wrong-key-of-enough-length")
    intruder.start()
    try:
        wait_until(lambda: intruder.status() is not None, timeout_s=30)
        intruder_id = intruder.peer_id()
        wait_until(lambda: "rejected" in intruder.log(), timeout_s=10)
        time.sleep(2.0)  # give gossip time to spread it, were it (wrongly) admitted
        for agent in agents:
            assert intruder_id not in agent.members()
        assert set(intruder.members()) == {intruder_id}
    finally:
        intruder.stop()
