"""The Python API of tasks: ask the local agent (its control socket) to run and report tasks.

    client = TaskClient(Path("~/.agentmesh").expanduser())
    task = await client.submit("infer", Path("rows.npy"), replicas=2, verifiable=True)
    done = await client.wait(task["task_id"], timeout_s=30)
    print(done["status"], done["slots"][0]["result"]["output"])

Inputs travel to the agent inline (base64, small) or as a path the agent reads
(the control socket is the owner's only: same user, same machine).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agentmesh.edge.control import ControlError, request

INLINE_BYTES_MAX = 40 * 1024  # base64 of this fits the control socket's 64 KB request line


class TaskClientError(Exception):
    """The agent refused or could not serve a task request; the message says why."""


@dataclass(frozen=True)
class Placement:
    """Required capabilities of a task (all optional)."""

    ram_mb: int = 0
    accelerator: str | None = None
    runtime: str | None = None
    device_classes: tuple[str, ...] = ()


class TaskClient:
    """Talks to the agent running on `state_dir`."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)

    async def submit(
        self,
        kind: str,
        data: bytes | Path | None,
        *,
        replicas: int = 1,
        verifiable: bool = False,
        placement: Placement | None = None,
        deadline_ms: int | None = None,
    ) -> dict[str, Any]:
        """Submit a task; returns its description with `task_id` (hex)."""
        where = placement or Placement()
        args: dict[str, Any] = {
            "op": "submit", "kind": kind, "replicas": replicas, "verifiable": verifiable,
            "ram_mb": where.ram_mb, "accelerator": where.accelerator, "runtime": where.runtime,
            "device_classes": list(where.device_classes), "deadline_ms": deadline_ms,
        }  # fmt: skip
        if isinstance(data, Path):
            args["input_path"] = str(data.resolve())
        elif data is not None:
            if len(data) > INLINE_BYTES_MAX:
                raise TaskClientError(
                    f"inputs over {INLINE_BYTES_MAX} bytes go by file: pass a Path"
                )
            args["input_b64"] = base64.b64encode(data).decode()
        return await self._ask(args)

    async def status(self, task_id: str) -> dict[str, Any]:
        return await self._ask({"op": "status", "id": task_id})

    async def wait(self, task_id: str, timeout_s: float = 60.0) -> dict[str, Any]:
        """The task's status once it finished, or after `timeout_s` (check `status`)."""
        return await self._ask({"op": "wait", "id": task_id, "timeout_s": timeout_s})

    async def list(self, with_tasks: bool = True) -> dict[str, Any]:
        """Tasks, workers (capabilities, queue, results: the load spread) and counters."""
        return await self._ask({"op": "list", "all": with_tasks})

    async def _ask(self, args: dict[str, Any]) -> dict[str, Any]:
        try:
            result = await request(self.state_dir, "task", **args)
        except ControlError as error:
            if "unknown command 'task'" in str(error):
                raise TaskClientError(
                    "the agent runs without tasks: start it with agent join --tasks N"
                ) from error
            raise TaskClientError(str(error)) from error
        if not isinstance(result, dict):
            raise TaskClientError("the agent sent an answer that is not an object")
        if "error" in result:
            raise TaskClientError(str(result["error"]))
        return result
