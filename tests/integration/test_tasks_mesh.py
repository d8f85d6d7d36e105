"""Tasks over real agent processes on loopback: capability-aware, load-balanced, exactly once,
with one agent killed (SIGKILL) midway; an unschedulable task, a restart from the state dir
and a submitter that dies before its input was fetched."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agentmesh.edge._cmd_demo import _die_with_parent
from agentmesh.edge.tasks_client import Placement, TaskClientError
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


# -- faults: an unschedulable task, a restart from the state dir, a dead submitter -----------


@dataclass
class FaultMesh(TasksMesh):
    """TasksMesh that keeps each agent's command line, so one can be restarted or frozen."""

    argv: list[list[str]] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        mesh = f"tasks-{secrets.token_hex(4)}"
        self.env = {**os.environ, "AGENTMESH_MESH_KEY": secrets.token_hex(16)}
        for k, device in enumerate(self.devices):
            self.argv.append([sys.executable, "-m", "agentmesh.edge", "join", "--loopback",
                              "--mesh", mesh, "--state-dir", str(self.dirs[k]), "--tasks",
                              str(len(self.devices)), "--log-level", "info",
                              *device.flags()])  # fmt: skip
            self.processes.append(self._spawn(k))

    def _spawn(self, k: int) -> subprocess.Popen[bytes]:
        log = (self.root / f"agent{k}.log").open("ab")
        return subprocess.Popen(self.argv[k], env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                preexec_fn=_die_with_parent)  # fmt: skip

    def restart(self, k: int) -> None:
        """Stop agent k (SIGTERM, as a reboot would) and start it again on its state dir."""
        self.processes[k].send_signal(signal.SIGTERM)
        self.processes[k].wait(timeout=30)
        self.processes[k] = self._spawn(k)

    def freeze(self, k: int, frozen: bool) -> None:
        self.processes[k].send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)


async def _until(check: Callable[[], Any], timeout_s: float = 90.0) -> Any:
    """Poll an async check until it returns a truthy value (control errors count as not yet)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        with contextlib.suppress(TaskClientError, OSError, KeyError):
            found = await check()
            if found:
                return found
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.25)


async def _unschedulable_task(mesh: FaultMesh) -> None:
    """Nobody has a TPU: the committee ends the task, decided, and the CLI shows why."""
    task = await mesh.client(1).submit("infer", infer_inputs(1, rows=4)[0], deadline_ms=1500,
                                       placement=Placement(accelerator="tpu"))  # fmt: skip
    done = await mesh.client(1).wait(task["task_id"], timeout_s=60)
    assert done["status"] == "unschedulable" and "capable" in done["reason"], done
    shown = subprocess.run(
        [sys.executable, "-m", "agentmesh.edge", "task", "status", task["task_id"][:12],
         "--state-dir", str(mesh.dirs[2])], capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert shown.returncode == 1 and "unschedulable" in shown.stdout, shown


async def _restart_keeps_the_board(mesh: FaultMesh) -> None:
    """Agent 1 restarts: it answers for old tasks from its replayed log and re-runs nothing."""
    laptop = Placement(device_classes=("laptop",))  # agent 1 only
    inputs = infer_inputs(7, rows=4)
    ids = [(await mesh.client(0).submit("infer", data, placement=where))["task_id"]
           for data, where in zip(inputs, (*PLACEMENTS, laptop), strict=True)]  # fmt: skip
    before = {t: await mesh.client(0).wait(t, timeout_s=60) for t in ids}
    assert all(t["status"] == "done" for t in before.values()), before
    ran = (await mesh.client(1).list(with_tasks=False))["counters"].get("runs_started", 0)
    mesh.restart(1)
    listing = await _until(lambda: mesh.client(1).list())
    assert listing["counters"]["replayed_entries"] > 0
    for task_id, seen in before.items():
        again = await mesh.client(1).status(task_id[:16])
        assert again["status"] == "done" and again["slots"] == seen["slots"]
    counters = (await mesh.client(1).list(with_tasks=False))["counters"]
    assert counters.get("runs_started", 0) == 0 and ran > 0, (ran, counters)
    # Still a worker: a task only the laptop (agent 1) may run completes after the restart.
    task = await mesh.client(0).submit("infer", inputs[0], placement=laptop)
    done = await mesh.client(0).wait(task["task_id"], timeout_s=90)
    assert done["status"] == "done" and done["slots"][0]["result"]["worker"] == listing["peer_id"]


async def _submitter_killed(mesh: FaultMesh) -> None:
    """Agent 0 submits and dies before the only capable worker (frozen) fetched the input:
    the worker gets it from agent 1, which ran another task on the same input."""
    data = infer_inputs(1, rows=8)[0]
    mesh.freeze(3, True)  # the numpy Pi: the only worker task B may go to
    try:
        first = await mesh.client(0).submit("infer", data, placement=Placement(
            device_classes=("laptop",)))  # fmt: skip
        assert (await mesh.client(0).wait(first["task_id"], timeout_s=60))["status"] == "done"
        task = await mesh.client(0).submit("infer", data, deadline_ms=60_000,
                                           placement=Placement(runtime="numpy"))  # fmt: skip
        await _until(lambda: _decided(mesh, 1, task["task_id"]))
        mesh.kill(0)
    finally:
        mesh.freeze(3, False)
    done = await mesh.client(1).wait(task["task_id"], timeout_s=120)
    worker = await mesh.client(3).list(with_tasks=False)
    assert done["status"] == "done", done
    assert done["slots"][0]["result"]["worker"] == worker["peer_id"]
    assert worker["counters"].get("fetch_from_other_holder", 0) >= 1, worker["counters"]


async def _decided(mesh: FaultMesh, k: int, task_id: str) -> bool:
    return (await mesh.client(k).status(task_id))["status"] != "submitted"


def test_expiry_restart_and_a_dead_submitter() -> None:
    mesh = FaultMesh(FLEET[:4])
    failed = True
    try:
        mesh.start()
        asyncio.run(mesh.wait_formed())
        asyncio.run(_unschedulable_task(mesh))
        asyncio.run(_restart_keeps_the_board(mesh))
        asyncio.run(_submitter_killed(mesh))
        failed = False
    finally:
        mesh.stop(keep=failed)
