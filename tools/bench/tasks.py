"""`agent bench tasks`: tasks through real agents on loopback, submission to result.

Starts N real `agent join --tasks N` processes (QUIC, mDNS on 127.0.0.1,
SQLite, LiteRT) with different advertised capabilities, submits `infer` tasks
(16 digits rows each) through agent 0's control socket as fast as it answers,
and reports tasks per second (first submission to last result) and the p50 /
p99 of submission -> finished as agent 0 saw them (its own clock). The same
`TasksMesh` drives the integration tests (tests/integration/test_tasks*.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from agentmesh.core.rounds.task import digits_split
from agentmesh.edge._cmd_demo import _die_with_parent, _remove_tree
from agentmesh.edge.tasks_client import Placement, TaskClient, TaskClientError
from agentmesh.tools.bench._report import BenchReport, BenchResult
from agentmesh.tools.data import load_digits

FORM_TIMEOUT_S = 120.0
POLL_S = 0.25


@dataclass(frozen=True)
class Device:
    """What one agent advertises (join flags)."""

    device_class: str
    ram_mb: int
    accelerators: tuple[str, ...] = ()
    runtime: str | None = None  # advertised runtime; default: what this host has

    def flags(self) -> list[str]:
        argv = ["--device-class", self.device_class, "--ram-mb", str(self.ram_mb)]
        for name in self.accelerators:
            argv += ["--accelerator", name]
        if self.runtime is not None:
            argv += ["--advertise-runtime", self.runtime]
        return argv


FLEET = (
    Device("server", 65536),
    Device("laptop", 16384),
    Device("edge", 8192, ("gpu",)),  # a Jetson
    Device("edge", 4096, runtime="numpy"),  # a Pi
    Device("laptop", 8192),
    Device("edge", 2048, runtime="numpy"),
)

PLACEMENTS = (
    Placement(),
    Placement(ram_mb=8192),
    Placement(accelerator="gpu"),
    Placement(runtime="numpy"),
    Placement(device_classes=("edge",)),
    Placement(device_classes=("server", "laptop")),
)


class MeshError(Exception):
    """The agents did not form, or tasks did not finish in time."""


@dataclass
class TasksMesh:
    """Child `agent join --tasks N` processes, each with its own state dir and log."""

    devices: tuple[Device, ...]
    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="agentmesh-tasks-")))
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def dirs(self) -> list[Path]:
        return [self.root / f"agent{k}" for k in range(len(self.devices))]

    def start(self) -> None:
        mesh = f"tasks-{secrets.token_hex(4)}"
        env = {**os.environ, "AGENTMESH_MESH_KEY": secrets.token_hex(16)}
        for k, device in enumerate(self.devices):
            argv = [sys.executable, "-m", "agentmesh.edge", "join", "--loopback", "--mesh", mesh,
                    "--state-dir", str(self.dirs[k]), "--tasks", str(len(self.devices)),
                    "--log-level", "warning", *device.flags()]  # fmt: skip
            log = (self.root / f"agent{k}.log").open("ab")
            self.processes.append(subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            ))  # fmt: skip

    def client(self, k: int) -> TaskClient:
        return TaskClient(self.dirs[k])

    def kill(self, k: int) -> None:
        """SIGKILL: no graceful leave; the others learn it from SWIM or the task deadline."""
        self.processes[k].send_signal(signal.SIGKILL)
        self.processes[k].wait()

    def check_alive(self, except_killed: set[int] | None = None) -> None:
        for k, process in enumerate(self.processes):
            if k in (except_killed or set()) or process.poll() is None:
                continue
            tail = (self.root / f"agent{k}.log").read_text(errors="replace")[-2000:]
            raise MeshError(f"agent {k} exited with {process.returncode}:\n{tail}")

    async def wait_formed(self) -> None:
        """Every agent formed the task committee and sees every worker's advert."""
        deadline = time.monotonic() + FORM_TIMEOUT_S
        while time.monotonic() < deadline:
            self.check_alive()
            ready = 0
            for k in range(len(self.devices)):
                with contextlib.suppress(TaskClientError, OSError):
                    summary = await self.client(k).list(with_tasks=False)
                    ready += len(summary["workers"]) == len(self.devices)
            if ready == len(self.devices):
                return
            await asyncio.sleep(POLL_S)
        raise MeshError(f"agents did not form within {FORM_TIMEOUT_S:.0f} s (logs in {self.root})")

    def stop(self, keep: bool = False) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if not keep:
            _remove_tree(self.root)


def infer_inputs(count: int, rows: int = 16) -> list[bytes]:
    """`count` distinct inputs of `rows` standardized digits rows (little-endian float32)."""
    features, labels = load_digits()
    test, _ = digits_split(features, labels, 8, 0.5)
    pool = np.ascontiguousarray(test.features, dtype="<f4")
    return [np.roll(pool, -k, axis=0)[:rows].tobytes() for k in range(count)]


@dataclass
class Workload:
    tasks: int
    replicas: int = 1
    verifiable: bool = False
    placements: tuple[Placement, ...] = (Placement(),)
    kill: int | None = None  # agent index killed (SIGKILL) after half the submissions
    timeout_s: float = 180.0
    concurrency: int = 8  # submissions in flight on agent 0's control socket
    closed_loop: bool = False  # wait for each task before submitting the next (latency)


async def run_workload(mesh: TasksMesh, work: Workload) -> dict[str, Any]:
    """Submit through agent 0, kill one agent midway, wait for every task; agent 0's view."""
    client = mesh.client(0)
    ids: list[str] = []
    started = time.monotonic()
    gate = asyncio.Semaphore(work.concurrency)

    async def submit(n: int, data: bytes) -> None:
        async with gate:
            placement = work.placements[n % len(work.placements)]
            task = await client.submit("infer", data, replicas=work.replicas,
                                       verifiable=work.verifiable, placement=placement)  # fmt: skip
            if work.closed_loop:
                await client.wait(task["task_id"], work.timeout_s)
        ids.append(task["task_id"])
        if work.kill is not None and len(ids) == work.tasks // 2:
            mesh.kill(work.kill)

    await asyncio.gather(*(submit(n, data) for n, data in enumerate(infer_inputs(work.tasks))))
    killed = set() if work.kill is None else {work.kill}
    deadline = time.monotonic() + work.timeout_s
    while True:
        mesh.check_alive(killed)
        summary = await client.list()
        mine = {t["task_id"]: t for t in summary["tasks"] if t["task_id"] in set(ids)}
        if len(mine) == len(ids) and all(t["status"] != "open" for t in mine.values()):
            break
        if time.monotonic() > deadline:
            open_count = sum(t["status"] == "open" for t in mine.values())
            raise MeshError(f"{open_count} of {len(ids)} tasks still open after "
                            f"{work.timeout_s:.0f} s (logs in {mesh.root})")  # fmt: skip
        await asyncio.sleep(POLL_S)
    summary["ids"] = ids
    summary["wall_s"] = time.monotonic() - started
    return summary


def latency_figures(summary: dict[str, Any]) -> dict[str, float]:
    tasks = [t for t in summary["tasks"] if t["task_id"] in set(summary["ids"])]
    latencies = sorted(t["latency_ms"] for t in tasks if t["latency_ms"] is not None)
    first = min(t["submitted_ms"] for t in tasks)
    last = max(t["finished_ms"] for t in tasks if t["finished_ms"] is not None)
    return {
        "tasks_per_s": round(len(tasks) / max((last - first) / 1000, 1e-3), 2),
        "p50_ms": float(latencies[len(latencies) // 2]),
        "p99_ms": float(latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]),
        "mean_ms": round(statistics.mean(latencies), 1),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=4, help="agents (default 4)")
    parser.add_argument("--tasks", type=int, default=200, help="tasks per case (default 200)")
    parser.add_argument("--latency-tasks", type=int, default=50,
                        help="tasks of the one-at-a-time latency case (default 50)")  # fmt: skip


def run(args: argparse.Namespace) -> BenchReport:
    report = BenchReport("tasks")
    devices = tuple(FLEET[k % len(FLEET)] for k in range(args.agents))
    mesh = TasksMesh(devices)
    failed = True
    try:
        mesh.start()
        asyncio.run(mesh.wait_formed())
        for case, work in (
            ("infer_16_rows_one_at_a_time", Workload(args.latency_tasks, concurrency=1,
                                                     closed_loop=True)),
            ("infer_16_rows_8_in_flight", Workload(args.tasks)),
            ("infer_16_rows_verifiable_k2_8_in_flight",
             Workload(args.tasks, replicas=2, verifiable=True)),
        ):  # fmt: skip
            before = asyncio.run(mesh.client(0).list(with_tasks=False))
            earlier = {w["peer_id"]: w["results"] for w in before["workers"]}
            summary = asyncio.run(run_workload(mesh, work))
            spread = sorted((w["results"] - earlier.get(w["peer_id"], 0)
                             for w in summary["workers"]), reverse=True)  # fmt: skip
            report.results.append(BenchResult(
                case=case,
                params={"agents": args.agents, "tasks": work.tasks, "replicas": work.replicas,
                        "in_flight": work.concurrency,
                        "transport": "quic-loopback", "submitted_via": "control socket"},
                metrics={**latency_figures(summary), "wall_s": round(summary["wall_s"], 3),
                         "results_per_worker_max": spread[0],
                         "results_per_worker_min": spread[-1]},
            ))  # fmt: skip
        failed = False
    finally:
        mesh.stop(keep=failed)
    report.notes.append(
        "latency: agent 0's clock from its submit call to applying the decided finish "
        "(two PBFT decisions, an input fetch and a LiteRT run). one_at_a_time: the next task "
        "is submitted when the last finished (latency); 8_in_flight saturates the mesh "
        "(tasks/s; its p50/p99 are mostly queueing)"
    )
    report.notes.append(f"load average during the run: {os.getloadavg()[0]:.2f}")
    if failed:
        report.notes.append(f"logs kept in {mesh.root}")
    return report
