"""`agent task submit|status|list`: tasks through the local agent's control socket."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from agentmesh.core.membership.capabilities import DEVICE_CLASSES, TRAINER_RUNTIMES
from agentmesh.core.tasks import EXPIRED, INPUT_LOST, TASK_KINDS, UNSCHEDULABLE
from agentmesh.edge._cmd_agent import default_state_dir
from agentmesh.edge.tasks_client import Placement, TaskClient, TaskClientError

EXPIRED_STATUSES = (EXPIRED, UNSCHEDULABLE)  # ended by f + 1 committee votes, with a reason
ENDED_UNDONE = ("failed", "rejected", INPUT_LOST, *EXPIRED_STATUSES)  # exit 1, with a reason


def register(subparsers: Any) -> None:
    """Add `agent task` with its three subcommands."""
    task = subparsers.add_parser(
        "task",
        help="submit built-in tasks to the mesh and follow them",
        description="Tasks are decided entries: every agent applies them in one order and "
        "computes the same capability-aware, load-balanced assignment. Built-in kinds only: "
        "infer (the current global model on float32 digits rows -> labels) and train (one "
        "extra local epoch on the worker's data -> loss). Needs an agent started with "
        "`agent join --tasks N`.",
    )
    ops = task.add_subparsers(dest="task_op", required=True, metavar="{submit,status,list}")
    submit = ops.add_parser("submit", help="submit a task")
    submit.add_argument("--kind", choices=TASK_KINDS, required=True)
    submit.add_argument(
        "--input", type=Path, help="infer: .npy or raw little-endian float32 (N x 64); "
        "train: the float32 weights to start from (default: the current global model)"
    )  # fmt: skip
    submit.add_argument("--replicas", type=int, default=1, metavar="K", help="run K times")
    submit.add_argument(
        "--verifiable", action="store_true", help="done only when K results agree (digest)"
    )
    submit.add_argument("--ram-mb", type=int, default=0, help="required RAM (total, MB)")
    submit.add_argument("--accelerator", help="required accelerator name")
    submit.add_argument("--runtime", choices=TRAINER_RUNTIMES, help="required trainer runtime")
    submit.add_argument(
        "--device-class", action="append", choices=DEVICE_CLASSES, default=[],
        help="allowed device class (repeatable; default any)",
    )  # fmt: skip
    submit.add_argument("--deadline-ms", type=int, help="per attempt, then reassigned")
    submit.add_argument("--wait", action="store_true", help="wait for the result")
    submit.add_argument("--timeout-s", type=float, default=60.0, help="with --wait")
    status = ops.add_parser("status", help="one task: status, workers, results")
    status.add_argument("id", help="task id (a unique hex prefix will do)")
    status.add_argument("--wait", action="store_true", help="wait until it finished")
    status.add_argument("--timeout-s", type=float, default=60.0, help="with --wait")
    listing = ops.add_parser("list", help="all tasks, workers and the load spread")
    for parser in (submit, status, listing):
        parser.add_argument("--state-dir", type=Path, help="agent state directory")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
    task.set_defaults(func=_task)


def _task(args: argparse.Namespace) -> int:
    client = TaskClient(args.state_dir or default_state_dir())
    try:
        result = asyncio.run(_OPS[args.task_op](client, args))
    except (TaskClientError, OSError) as error:
        print(f"agent task {args.task_op}: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(_render(args.task_op, result))
    return 0 if result.get("status") not in ENDED_UNDONE else 1


async def _submit(client: TaskClient, args: argparse.Namespace) -> dict[str, Any]:
    placement = Placement(args.ram_mb, args.accelerator, args.runtime, tuple(args.device_class))
    task = await client.submit(args.kind, args.input, replicas=args.replicas,
                               verifiable=args.verifiable, placement=placement,
                               deadline_ms=args.deadline_ms)  # fmt: skip
    if args.wait:
        return await client.wait(task["task_id"], args.timeout_s)
    return task


async def _status(client: TaskClient, args: argparse.Namespace) -> dict[str, Any]:
    if args.wait:
        return await client.wait(args.id, args.timeout_s)
    return await client.status(args.id)


async def _list(client: TaskClient, args: argparse.Namespace) -> dict[str, Any]:
    del args
    return await client.list()


_OPS = {"submit": _submit, "status": _status, "list": _list}


def _render(op: str, result: dict[str, Any]) -> str:
    if op == "list":
        return render_list(result)
    lines = [f"task {result['task_id']}  {result['kind']}  {result.get('status', 'submitted')}"
             f"{'  (' + result['reason'] + ')' if result.get('reason') else ''}"]  # fmt: skip
    for slot in result.get("slots", []):
        answer = slot.get("result")
        shown = (
            "-"
            if answer is None
            else f"{'ok' if answer['ok'] else 'error'} " + (json.dumps(answer.get("output"))[:120])
        )
        lines.append(f"  slot {slot['slot']}  attempt {slot['attempt']}  "
                     f"worker {(slot['worker'] or (answer or {}).get('worker') or '-')[-8:]}  "
                     f"{shown}")  # fmt: skip
    if result.get("latency_ms") is not None:
        lines.append(f"  submitted to finished: {result['latency_ms']} ms")
    return "\n".join(lines)


def render_list(result: dict[str, Any]) -> str:
    """Tasks by status, then one line per worker with its queue and results (the spread)."""
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result["statuses"].items())) or "no tasks"
    lines = [f"tasks: {counts}; waiting slots {result['waiting']}",
             f"{'WORKER':<10} {'UP':<3} {'CLASS':<7} {'RAM_MB':>7} {'RUNTIME':<14} "
             f"{'ACC':<6} {'QUEUE':>5} {'RESULTS':>7}"]  # fmt: skip
    for w in result["workers"]:
        lines.append(f"{w['peer_id'][-8:]:<10} {'yes' if w['up'] else 'no':<3} "
                     f"{w['device_class']:<7} {w['ram_total_mb']:>7} {w['runtime']:<14} "
                     f"{','.join(w['accelerators']) or '-':<6} {w['queue']:>5} "
                     f"{w['results']:>7}")  # fmt: skip
    for task in result.get("tasks", [])[-20:]:
        lines.append(f"  {task['task_id'][:16]}  {task['kind']:<5} {task['status']:<8} "
                     f"k={task['replicas']}")  # fmt: skip
    return "\n".join(lines)
