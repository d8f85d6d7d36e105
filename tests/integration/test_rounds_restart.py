"""Restart with real processes: in a mesh that grew past its genesis (a fifth agent
joined), a genesis committee member, or the joiner, is killed with SIGKILL and restarted
from the same state dir; it rebuilds its replica and rounds from its SQLite log, trains
again and holds the same committed models as the others (docs/federated-rounds.md,
"Restart and rejoin")."""

from __future__ import annotations

import asyncio
import json
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

from agentmesh.edge.control import ControlError, request

# 32-51 s each on a shared 2-core box (five processes, one of them started twice): slow.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESH_KEY = "integration-rounds-restart-key-01234"
ORIGINALS = 4
ROUNDS = 60  # more than the test needs: the mesh must still be running rounds at the end
WINDOW_MS = 1500


class RoundsAgent:
    """One `agent join --expect 4` child process on loopback (restartable)."""

    def __init__(self, state_dir: Path, mesh: str, partition: int) -> None:
        self.state_dir = state_dir
        self.mesh = mesh
        self.partition = partition
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.with_suffix(".log")
        self.started_s = 0.0

    def start(self) -> None:
        env = {**os.environ, "AGENTMESH_MESH_KEY": MESH_KEY}
        argv = [sys.executable, "-m", "agentmesh.edge", "join", "--loopback",
                "--mesh", self.mesh, "--state-dir", str(self.state_dir),
                "--expect", str(ORIGINALS), "--partition", str(self.partition),
                "--partitions", str(ORIGINALS + 1), "--rounds", str(ROUNDS),
                "--window-ms", str(WINDOW_MS), "--epoch-stable-ms", "1000",
                "--log-level", "info"]  # fmt: skip
        self.started_s = time.monotonic()
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)

    def rounds(self) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = asyncio.run(request(self.state_dir, "rounds"))
        except (ControlError, OSError):
            return None
        return result

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

    def log_tail(self) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-3000:]


def wait_until(condition: Callable[[], bool], timeout_s: float, what: str) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if condition():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout_s} s")


def committed(status: dict[str, Any] | None) -> dict[int, dict[str, Any]]:
    if status is None:
        return {}
    return {r["round"]: r for r in status["rounds"] if r["status"] == "committed"}


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[RoundsAgent]]:
    mesh = f"restart-{uuid.uuid4().hex[:8]}"
    group = [RoundsAgent(tmp_path / f"agent{k}", mesh, k) for k in range(ORIGINALS + 1)]
    try:
        yield group
    finally:
        for agent in group:
            agent.stop()


@pytest.mark.parametrize("victim_index", [1, ORIGINALS], ids=["genesis-member", "joiner"])
def test_a_killed_member_restarts_from_its_state_dir_and_trains_again(
    agents: list[RoundsAgent], victim_index: int
) -> None:
    originals, joiner = agents[:ORIGINALS], agents[ORIGINALS]
    watcher, victim = originals[0], agents[victim_index]
    for agent in originals:
        agent.start()
    try:
        wait_until(lambda: all(committed(a.rounds()) for a in originals), 60,
                   "round 1 committed everywhere")  # fmt: skip
        # A fifth agent joins: the mesh no longer has `--expect` members, so a restarted
        # agent cannot form a fresh genesis, and its epoch keeps it in the committed view.
        joiner.start()
        joiner_id = wait_peer_id(joiner)
        victim_id = wait_peer_id(victim)

        def contributed_after(number: int, peer: str) -> Callable[[], bool]:
            return lambda: any(
                peer in r["contributor_ids"] and n > number
                for n, r in committed(watcher.rounds()).items()
            )

        wait_until(contributed_after(0, joiner_id), 45, "the joiner's update counted")
        wait_until(contributed_after(0, victim_id), 20, "the victim's update counted")

        victim.kill9()
        last_before = max(committed(watcher.rounds()))
        victim.start()  # the same state dir: identity, membership and the PBFT log
        restarted_s = time.monotonic()
        wait_until(contributed_after(last_before + 1, victim_id), 45,
                   "the restarted agent's update counted again")  # fmt: skip
        counted_s = time.monotonic() - restarted_s
        counted_wall_s = time.time()
        last_counted = max(committed(watcher.rounds()))

        def caught_up() -> bool:
            return last_counted in committed(victim.rounds())

        wait_until(caught_up, 20, "the restarted agent holds the same latest round")
    except AssertionError:
        for k, agent in enumerate(agents):
            print(f"--- agent{k} log tail ---\n{agent.log_tail()}")
        raise

    mine, theirs = victim.rounds(), watcher.rounds()
    assert mine is not None and theirs is not None
    restored = mine["restored"]
    assert restored is not None and restored["batches"] > 0 and restored["gaps"] == 0, restored
    assert mine["joined_ms"] is None, "it rejoined from its own log, not as a late joiner"
    ours, others = committed(mine), committed(theirs)
    common = sorted(set(ours) & set(others))
    assert last_counted in common
    assert all(ours[n]["model"] == others[n]["model"] for n in common), "same committed models"
    assert len(others) > last_before + 1, "rounds went on after the restart"
    # It contradicted nothing it signed before the crash (no vote, offer or result).
    for agent in agents:
        lines = agent.log_path.read_text(errors="replace").splitlines()
        blamed = [line for line in lines if "evidence" in line and victim_id in line]
        assert not blamed, blamed[:3]
    print(json.dumps({
        "rounds_before_kill": last_before, "restored": mine["restored"],
        "restart_to_first_update_counted_s": round(counted_s, 1),
        "resumed_to_first_update_counted_s": round(counted_wall_s - restored["at_ms"] / 1000, 1),
        "common_committed_rounds": len(common), "epoch": (mine["epoch"] or {}).get("epoch"),
    }))  # fmt: skip


def wait_peer_id(agent: RoundsAgent) -> str:
    found: dict[str, str] = {}

    def known() -> bool:
        status = agent.rounds()
        if status is not None and status.get("formed"):
            found["id"] = status["peer_id"]
        return "id" in found

    wait_until(known, 45, "the agent formed or adopted the genesis")
    return found["id"]
