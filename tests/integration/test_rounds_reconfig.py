"""Roles on demand with real processes: a fifth agent joins a running mesh and trains in a
later epoch; a committee member is killed, another leaves gracefully, and rounds keep
committing through every reconfiguration (docs/federated-rounds.md, "Epochs")."""

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

# 40 s on a quiet 2-core box, 75-95 s when it is shared (a cold fifth process beside
# four training ones then takes 15-20 s to start): above the per-test budget, so slow.
pytestmark = [pytest.mark.integration, pytest.mark.slow]

MESH_KEY = "integration-rounds-reconfig-key-0123"
ORIGINALS = 4
ROUNDS = 30
WINDOW_MS = 1500


class RoundsAgent:
    """One `agent join --expect 4` child process on loopback."""

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

    def alive_members(self) -> int:
        try:
            status: dict[str, Any] = asyncio.run(request(self.state_dir, "status"))
        except (ControlError, OSError):
            return 0
        return sum(1 for m in status["members"] if m["state"] == "alive")

    def send_counters(self) -> dict[str, int]:
        """The agent's send/drop counters (diagnostics when a test fails)."""
        try:
            status: dict[str, Any] = asyncio.run(request(self.state_dir, "status"))
        except (ControlError, OSError):
            return {}
        counters: dict[str, int] = status["self"]["counters"]
        return {k: v for k, v in counters.items() if "send" in k or "drop" in k}

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


def committed(status: dict[str, Any] | None) -> list[dict[str, Any]]:
    if status is None:
        return []
    return [r for r in status["rounds"] if r["status"] == "committed"]


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[list[RoundsAgent]]:
    mesh = f"reconf-{uuid.uuid4().hex[:8]}"
    group = [RoundsAgent(tmp_path / f"agent{k}", mesh, k) for k in range(ORIGINALS + 1)]
    try:
        yield group
    finally:
        for agent in group:
            agent.stop()


def test_a_joiner_trains_in_a_later_epoch_and_a_killed_member_is_replaced(
    agents: list[RoundsAgent],
) -> None:
    originals, joiner = agents[:ORIGINALS], agents[ORIGINALS]
    for agent in originals:
        agent.start()
    try:
        wait_until(lambda: all(len(committed(a.rounds())) >= 1 for a in originals), 90,
                   "round 1 committed everywhere")  # fmt: skip

        joiner.start()
        watcher = originals[0]
        wait_until(lambda: watcher.alive_members() == ORIGINALS + 1, 60, "joiner alive")
        joined_s = time.monotonic()  # the mesh sees the joiner (its cold start excluded)
        startup_s = joined_s - joiner.started_s
        wait_until(lambda: (joiner.rounds() or {}).get("formed", False), 30, "joiner adopted")
        adopted_s = time.monotonic() - joined_s
        joiner_id = (joiner.rounds() or {})["peer_id"]

        def contributed() -> bool:
            return any(joiner_id in r["contributor_ids"] for r in committed(watcher.rounds()))

        wait_until(contributed, 45, "the joiner's update counted in a committed round")
        first_contribution_s = time.monotonic() - joined_s
        status = watcher.rounds()
        assert status is not None
        rounds_at_kill = len(committed(status))

        # Kill a committee member of the current epoch that is not the watcher or joiner.
        committee = status["committee"]
        victims = [a for a in originals[1:] if (a.rounds() or {})["peer_id"] in committee]
        victim = victims[0] if victims else originals[1]
        victim_id = (victim.rounds() or {})["peer_id"]
        victim.kill9()
        killed_s = time.monotonic()
        survivors = [a for a in agents if a is not victim]

        def removed() -> bool:
            epochs = (watcher.rounds() or {}).get("epoch") or {}
            return victim_id not in epochs.get("members", [victim_id])

        wait_until(removed, 45, "an epoch without the killed member")
        removed_s = time.monotonic() - killed_s
        wait_until(lambda: len(committed(watcher.rounds())) >= rounds_at_kill + 2, 45,
                   "two more rounds after the kill")  # fmt: skip

        # A graceful leave (SIGTERM: the agent gossips `left`): the next epoch drops it.
        leaver = next(a for a in originals[1:] if a is not victim)
        leaver_id = (leaver.rounds() or {})["peer_id"]
        rounds_at_leave = len(committed(watcher.rounds()))
        left_s = time.monotonic()
        leaver.stop()  # returns once the process exited (it lingers to gossip `left`)
        survivors.remove(leaver)

        def left() -> bool:
            epochs = (watcher.rounds() or {}).get("epoch") or {}
            return leaver_id not in epochs.get("members", [leaver_id])

        wait_until(left, 45, "an epoch without the agent that left")
        left_epoch_s = time.monotonic() - left_s
        wait_until(lambda: len(committed(watcher.rounds())) >= rounds_at_leave + 2, 45,
                   "two more rounds after the leave")  # fmt: skip
        wait_until(lambda: all((a.rounds() or {}).get("finished") for a in survivors), 90,
                   "every survivor closed all rounds")  # fmt: skip
    except AssertionError:
        for k, agent in enumerate(agents):
            print(f"--- agent{k} log tail ---\n{agent.log_tail()}")
            print(f"agent{k} counters: {agent.send_counters()}")
        raise

    final = [a.rounds() for a in survivors]
    assert all(s is not None for s in final)
    records = [{r["round"]: r for r in s["rounds"]} for s in final if s is not None]
    aborted = sorted({n for rec in records for n, r in rec.items() if r["status"] == "aborted"})
    committed_numbers = sorted(n for n, r in records[0].items() if r["status"] == "committed")
    models = {tuple(rec[n]["model"] for n in committed_numbers) for rec in records}
    assert len(models) == 1, "every survivor holds the same committed models"
    assert len(committed_numbers) + len(aborted) == ROUNDS
    joiner_rounds = [n for n in committed_numbers if joiner_id in records[0][n]["contributor_ids"]]
    assert joiner_rounds, "the joiner's updates count"
    assert all(records[0][n]["epoch"] >= 1 for n in joiner_rounds)
    epochs = (final[0] or {})["epochs"]
    assert len(epochs) >= 3, epochs
    for agent in (agents[0], joiner):
        lines = agent.log_path.read_text(errors="replace").splitlines()
        print("\n".join(line[11:140] for line in lines if "agentmesh.rounds" in line))
    print(json.dumps({
        "rounds_committed": len(committed_numbers), "rounds_aborted": len(aborted),
        "aborted": aborted, "rounds_before_join": 1,
        "joiner_start_s": round(startup_s, 1), "genesis_adopted_after_join_s": round(adopted_s, 1),
        "first_contribution_after_join_s": round(first_contribution_s, 1),
        "joiner_rounds": joiner_rounds, "epoch_without_killed_s": round(removed_s, 1),
        "rounds_after_kill": len(committed_numbers) - rounds_at_kill,
        "epoch_without_leaver_s": round(left_epoch_s, 1),
        "rounds_after_leave": len(committed_numbers) - rounds_at_leave,
        "epochs": [{k: e[k] for k in ("epoch", "members", "trainers")} for e in epochs],
    }))  # fmt: skip
