"""The `task` control command of an agent: submit, status, wait and list, as JSON.

Served on the agent's control socket (edge/control.py) for `agent task ...` and
`TaskClient` (edge/tasks_client.py); it reads the task host's decided board and
the submission times this agent measured itself.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agentmesh.core.tasks import KIND_INFER, KIND_TRAIN, Requirements, TasksError, TasksMachine
from agentmesh.core.tasks.board import OPEN, TaskRecord
from agentmesh.edge.waiting import wait_within

if TYPE_CHECKING:
    from agentmesh.edge.tasks_host import TasksHost

FEATURES = 64  # digits rows: 64 float32 features each
_WAIT_S_MAX = 600.0


class TasksHostError(ValueError):
    """A task request this agent cannot serve; the message says why."""


class TasksControl:
    """Answers `{"cmd": "task", "op": ...}` for one task host."""

    def __init__(self, host: TasksHost) -> None:
        self.host = host

    async def command(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """`agent task ...` through the control socket: submit, status, wait, list."""
        op = request.get("op")
        try:
            if op == "submit":
                return self._submit(request)
            if op == "status":
                return self._status(self._task_id(request))
            if op == "wait":
                task_id = self._task_id(request)
                await self._wait(task_id, float(request.get("timeout_s", 60.0)))
                return self._status(task_id)
            if op == "list":
                return self.summary(bool(request.get("all", True)))
        except (TasksHostError, TasksError, OSError, ValueError, TypeError) as error:
            # a malformed request from the local owner: answer why, never a traceback
            return {"error": str(error)}
        return {"error": f"unknown task op {op!r}: submit, status, wait or list"}

    def _ready(self) -> TasksMachine:
        if self.host.machine is None:
            raise TasksHostError(
                f"the task committee has not formed yet (waiting for {self.host.settings.expect} "
                "alive members)"
            )
        return self.host.machine

    def _submit(self, request: Mapping[str, Any]) -> dict[str, Any]:
        machine = self._ready()
        kind = request.get("kind")
        if kind not in (KIND_INFER, KIND_TRAIN):
            raise TasksHostError("kind must be infer or train (built-in kinds only)")
        data = self._input_of(request)
        model = self.current_model()
        if data is None:
            if kind != KIND_TRAIN:
                raise TasksHostError("infer needs an input: a float32 tensor of digits rows")
            data = self.host.store.get_blob(model) or b""
        if len(data) > self.host.config.input_bytes_max:
            raise TasksHostError(f"input exceeds {self.host.config.input_bytes_max} bytes")
        if kind == KIND_INFER:
            rows_from_bytes(data)  # refuse a malformed input here, not on every worker
        digest = self.host.store.put_blob(data)
        requirements = Requirements(
            int(request.get("ram_mb", 0)), request.get("accelerator") or None,
            request.get("runtime") or None, tuple(request.get("device_classes") or ()),
        )  # fmt: skip
        now = self.host.agent.clock.now_ms()
        spec = machine.submit(kind, digest, len(data), model, now, requirements=requirements,
                              replicas=int(request.get("replicas", 1)),
                              verifiable=bool(request.get("verifiable", False)),
                              deadline_ms=_optional_int(request.get("deadline_ms")))  # fmt: skip
        self.host.submitted_ms[spec.task_id] = now
        if len(self.host.unordered) < self.host.config.open_tasks_max:
            self.host.unordered[spec.task_id] = spec
        self.host.drain()
        return {"task_id": spec.task_id.hex(), **spec.to_json()}

    def _input_of(self, request: Mapping[str, Any]) -> bytes | None:
        if request.get("input_b64"):
            return base64.b64decode(request["input_b64"], validate=True)
        if request.get("input_path"):
            path = Path(request["input_path"])
            if path.stat().st_size > self.host.config.input_bytes_max:
                raise TasksHostError(f"input exceeds {self.host.config.input_bytes_max} bytes")
            return read_input(path)
        return None

    def current_model(self) -> bytes:
        """The latest committed global model of the rounds, else the initial model."""
        rounds = getattr(self.host.agent, "rounds", None)
        if rounds is not None:
            committed = [r for r in rounds.records.values() if r.status == "committed" and r.model]
            if committed:
                latest = max(committed, key=lambda r: r.round)
                digest = bytes.fromhex(latest.model)
                if self.host.store.has_blob(digest):
                    return digest
        return self.host.initial_model

    def _task_id(self, request: Mapping[str, Any]) -> bytes:
        machine = self._ready()
        prefix = str(request.get("id", ""))
        if not prefix or len(prefix) > 64 or any(c not in "0123456789abcdef" for c in prefix):
            raise TasksHostError("a task id is 1..64 lowercase hex characters (a prefix will do)")
        found = machine.task_ids_by_prefix(prefix)
        found += [t for t in self.host.unordered if t.hex().startswith(prefix)][:2]
        if len(found) != 1:
            raise TasksHostError(f"{'no' if not found else 'more than one'} task matches {prefix}")
        return found[0]

    async def _wait(self, task_id: bytes, timeout_s: float) -> None:
        machine = self._ready()
        record = machine.board.tasks.get(task_id)
        if record is None and task_id not in self.host.unordered:
            return
        if record is not None and record.status != OPEN:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiting = self.host.waiters.setdefault(task_id, [])
        waiting.append(waiter)
        try:
            await wait_within(waiter, min(max(timeout_s, 0.0), _WAIT_S_MAX))
        except TimeoutError:
            with contextlib.suppress(ValueError):
                waiting.remove(waiter)

    def _status(self, task_id: bytes) -> dict[str, Any]:
        machine = self._ready()
        record = machine.board.tasks.get(task_id)
        if record is None:  # submitted here, not decided yet
            spec = self.host.unordered[task_id]
            return {"task_id": task_id.hex(), "status": "submitted", "reason": "", **spec.to_json(),
                    "slots": [], "submitted_ms": self.host.submitted_ms.get(task_id)}  # fmt: skip
        return self._record_json(record, full=True)

    def _record_json(self, record: TaskRecord, full: bool) -> dict[str, Any]:
        submitted = self.host.submitted_ms.get(record.task_id)
        finished = self.host.finished_ms.get(record.task_id)
        slots = []
        for slot in record.slots:
            result = slot.result
            shown: dict[str, Any] = {
                "slot": slot.index, "worker": slot.worker, "attempt": slot.attempt,
                "tried": list(slot.tried),
            }  # fmt: skip
            if result is not None:
                shown["result"] = {"worker": result.worker, "ok": result.ok,
                                   "digest": result.digest.hex()}  # fmt: skip
                if full:
                    shown["result"]["output"] = decode_output(record.spec.kind, result.output)
            slots.append(shown)
        return {
            "task_id": record.task_id.hex(),
            "order": record.order,
            "status": record.status,
            "reason": record.reason,
            **record.spec.to_json(),
            "slots": slots,
            "output_digest": record.output_digest.hex() if record.output_digest else None,
            "submitted_ms": submitted,
            "ordered_ms": self.host.ordered_ms.get(record.task_id),
            "finished_ms": finished,
            "latency_ms": None if submitted is None or finished is None else finished - submitted,
        }

    def summary(self, with_tasks: bool = True) -> dict[str, Any]:
        """`agent task list`: every task this agent knows, workers, queues and the load spread."""
        machine = self._ready()
        board = machine.board
        statuses: dict[str, int] = {}
        for record in board.tasks.values():
            statuses[record.status] = statuses.get(record.status, 0) + 1
        queues = board.queue_lengths()
        workers = [
            {"peer_id": peer, "up": worker.up, "device_class": caps.device_class,
             "ram_total_mb": caps.ram_total_mb, "accelerators": list(caps.accelerators),
             "runtime": caps.trainer_runtime, "cpu_load_permille": caps.cpu_load_permille,
             "queue": queues.get(peer, 0), "results": board.results_by_worker.get(peer, 0)}
            for peer, worker in sorted(board.workers.items())
            for caps in (worker.caps,)
        ]  # fmt: skip
        genesis = self.host.genesis
        return {
            "peer_id": self.host.peer_id,
            "committee": list(genesis.committee) if genesis else [],
            "statuses": statuses,
            "workers": workers,
            "waiting": len(board.waiting),
            "tasks": [self._record_json(r, full=False) for r in board.tasks.values()]
            if with_tasks
            else [],
            "replica": self._replica_json(),
            "counters": {**self.host.counters, **machine.counters, **dict(board.counters),
                         **{f"pbft.{k}": v for k, v in (self.host.replica.counters
                                                         if self.host.replica else {}).items()}},
        }  # fmt: skip

    def _replica_json(self) -> dict[str, Any]:
        """Where this agent's task replica stands (a stalled log shows here first)."""
        replica = self.host.replica
        if replica is None:
            return {}
        return {
            "view": replica.view, "view_changing": replica.view_changing,
            "last_executed": replica.last_executed, "next_seq": replica.next_seq,
            "stable_seq": replica.stable.seq, "pending": len(replica.pending),
            "queue": len(replica.queue), "primary": replica.committee.primary(replica.view),
        }  # fmt: skip


def rows_from_bytes(data: bytes) -> np.ndarray:
    """A float32 (N, 64) array from raw little-endian bytes; ValueError if it is not one."""
    if not data or len(data) % (4 * FEATURES):
        raise ValueError(f"an infer input is N rows of {FEATURES} little-endian float32")
    rows = np.frombuffer(data, dtype="<f4").reshape(-1, FEATURES)
    if not np.isfinite(rows).all():
        raise ValueError("an infer input must be finite")
    return rows


def read_input(path: Path) -> bytes:
    """A task input file: a .npy array (converted to little-endian float32) or raw bytes."""
    if path.suffix == ".npy":
        array = np.load(path, allow_pickle=False)
        return np.ascontiguousarray(array, dtype="<f4").tobytes()
    return path.read_bytes()


def decode_output(kind: str, output: bytes) -> Any:
    """A result's output for people: labels for infer, loss and examples for train."""
    if kind == KIND_INFER:
        return list(output)
    if len(output) == struct.calcsize("<dI"):
        loss, examples = struct.unpack("<dI", output)
        return {"loss": loss, "examples": examples}
    return output.hex()


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)
