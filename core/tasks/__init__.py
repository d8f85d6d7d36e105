"""Capability-aware task distribution over decided entries (docs/tasks.md)."""

from agentmesh.core.tasks.assign import choose_worker, eligible, may_run, meets
from agentmesh.core.tasks.board import DONE, FAILED, OPEN, REJECTED, Change, TaskBoard, TaskRecord
from agentmesh.core.tasks.config import (
    KIND_INFER,
    KIND_TRAIN,
    TASK_KINDS,
    TasksConfig,
    TasksError,
)
from agentmesh.core.tasks.entries import (
    ENTRY_KINDS,
    AttemptTimeout,
    EntryError,
    Requirements,
    TaskResult,
    TaskSpec,
    WorkerAdvert,
    WorkerDown,
    decode_entry,
    entry_validator,
    sign_result,
    sign_submit,
    verify_entry,
)
from agentmesh.core.tasks.genesis import TasksGenesis, tasks_genesis
from agentmesh.core.tasks.machine import TasksMachine

__all__ = [
    "DONE",
    "ENTRY_KINDS",
    "FAILED",
    "KIND_INFER",
    "KIND_TRAIN",
    "OPEN",
    "REJECTED",
    "TASK_KINDS",
    "AttemptTimeout",
    "Change",
    "EntryError",
    "Requirements",
    "TaskBoard",
    "TaskRecord",
    "TaskResult",
    "TaskSpec",
    "TasksConfig",
    "TasksError",
    "TasksGenesis",
    "TasksMachine",
    "WorkerAdvert",
    "WorkerDown",
    "choose_worker",
    "decode_entry",
    "eligible",
    "entry_validator",
    "may_run",
    "meets",
    "sign_result",
    "sign_submit",
    "tasks_genesis",
    "verify_entry",
]
