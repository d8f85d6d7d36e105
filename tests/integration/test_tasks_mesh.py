"""Tasks over real agent processes on loopback: capability-aware, load-balanced, exactly once,
with one agent killed (SIGKILL) midway."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentmesh.edge.tasks_client import Placement
from agentmesh.tools.bench.tasks import (
    FLEET,
    PLACEMENTS,
    TasksMesh,
    Workload,
    infer_inputs,
    latency_figures,
    run_workload,
)

pytestmark = pytest.mark.integration


def _meets(requirements: dict[str, Any], worker: dict[str, Any]) -> bool:
    return (
        worker["ram_total_mb"] >= requirements["ram_mb_min"]
        and (requirements["accelerator"] is None
             or requirements["accelerator"] in worker["accelerators"])
        and (requirements["runtime"] is None or requirements["runtime"] == worker["runtime"])
        and (not requirements["device_classes"]
             or worker["device_class"] in requirements["device_classes"])
    )  # fmt: skip


def _check(summary: dict[str, Any], replicas: int, killed_peer: str) -> dict[str, int]:
    """Every task done once with k results from k distinct capable workers; the spread."""
    workers = {w["peer_id"]: w for w in summary["workers"]}
    tasks = {t["task_id"]: t for t in summary["tasks"]}
    spread: Counter[str] = Counter()
    for task_id in summary["ids"]:
        task = tasks[task_id]
        assert task["status"] == "done", task
        results = [s["result"] for s in task["slots"] if s.get("result")]
        if task["verifiable"]:
            assert Counter(r["digest"] for r in results).most_common(1)[0][1] == replicas
        else:
            assert len(results) == replicas
        assert len({r["worker"] for r in results}) == len(results)
        for result in results:
            assert result["ok"] and _meets(task["requirements"], workers[result["worker"]])
            spread[result["worker"][-6:]] += 1
    assert not workers[killed_peer]["up"], "the killed agent must be marked down (decided)"
    return dict(spread)


def _run(
    agents: int,
    work: Workload,
    placements: tuple[Placement, ...],
    then: Callable[[TasksMesh], None] | None = None,
) -> dict[str, Any]:
    mesh = TasksMesh(FLEET[:agents])
    failed = True
    try:
        mesh.start()
        asyncio.run(mesh.wait_formed())
        before = asyncio.run(mesh.client(0).list(with_tasks=False))
        killed_peer = asyncio.run(mesh.client(work.kill or 0).list(with_tasks=False))["peer_id"]
        work.placements = placements
        summary = asyncio.run(run_workload(mesh, work))
        spread = _check(summary, work.replicas, killed_peer)
        print(f"{agents} agents, {work.tasks} tasks, k={work.replicas}: load spread {spread}; "
              f"{latency_figures(summary)}; committee {[p[-6:] for p in before['committee']]}, "
              f"killed {killed_peer[-6:]}")  # fmt: skip
        if then is not None:
            then(mesh)
        failed = False
        return summary
    finally:
        mesh.stop(keep=failed)


def _agent(state_dir: Path, *argv: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "agentmesh.edge", "task", *argv, "--state-dir", str(state_dir),
         "--json"], capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def _cli_round_trip(mesh: TasksMesh) -> None:
    """The CLI: infer on a .npy file (verifiable, k=2), train, status by prefix, list."""
    rows = np.frombuffer(infer_inputs(1, rows=8)[0], dtype="<f4").reshape(8, 64)
    path = mesh.root / "rows.npy"
    np.save(path, rows)
    state = mesh.dirs[0]
    infer = _agent(state, "submit", "--kind", "infer", "--input", str(path), "--replicas", "2",
                   "--verifiable", "--wait", "--timeout-s", "60")  # fmt: skip
    assert infer["status"] == "done" and infer["output_digest"] is not None
    labels = [s["result"]["output"] for s in infer["slots"] if s.get("result")]
    assert len(labels) == 2 and labels[0] == labels[1] and len(labels[0]) == 8
    assert all(0 <= label <= 9 for label in labels[0])
    train = _agent(state, "submit", "--kind", "train", "--wait", "--timeout-s", "60")
    assert train["status"] == "done"
    report = train["slots"][0]["result"]["output"]
    assert report["examples"] > 0 and 0 < report["loss"] < 10
    status = _agent(state, "status", infer["task_id"][:12])
    assert status["task_id"] == infer["task_id"]
    listing = _agent(state, "list")
    assert {infer["task_id"], train["task_id"]} <= {t["task_id"] for t in listing["tasks"]}
    refused = subprocess.run(
        [sys.executable, "-m", "agentmesh.edge", "task", "submit", "--kind", "infer", "--input",
         str(mesh.root / "agent0.log"), "--state-dir", str(state)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "float32" in refused.stderr


def test_four_agents_forty_tasks_one_killed_and_the_cli() -> None:
    # Agent 1 (the 16 GB laptop) dies: every requirement is still met by another agent.
    _run(4, Workload(40, kill=1), PLACEMENTS, then=_cli_round_trip)


@pytest.mark.slow
def test_six_agents_two_hundred_tasks_one_killed() -> None:
    _run(6, Workload(200, kill=1), PLACEMENTS)


@pytest.mark.slow
def test_six_agents_replicated_verifiable_tasks_one_killed() -> None:
    # k = 2 distinct workers: only requirements that three or more agents meet.
    shared = tuple(p for p in PLACEMENTS if p.accelerator is None)
    _run(6, Workload(100, replicas=2, verifiable=True, kill=1), shared)
