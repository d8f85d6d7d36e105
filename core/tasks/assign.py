"""Who runs a task slot: a pure, deterministic function of decided state.

Every agent applies the same decided entries in the same order, so it holds the
same worker adverts (capabilities, CPU load) and the same queue lengths, and
this function gives every agent the same answer with no extra messages.

Rule: among the workers that are up, meet the task's requirements, may run its
kind, hold no other live slot of the task and have room in their queue, pick
the least `(queue + 1) / weight`, where the weight is the roles' capability
score (cores, RAM, bandwidth, CPU headroom, accelerators, mains power). Capable
devices take proportionally more work; an idle Pi still beats a busy server.
Ties break by a rendezvous hash of (task, slot, worker), so no id is favoured.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Collection, Mapping

from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.roles.capability import capability_score, may_train

from .config import KIND_TRAIN
from .entries import Requirements

COST_SCALE = 1 << 32
_DOMAIN_RANK = b"agentmesh/task-rank/1\x00"


def meets(requirements: Requirements, caps: Capabilities) -> bool:
    """The worker offers the RAM, accelerator, runtime and device class the task needs."""
    return (
        caps.ram_total_mb >= requirements.ram_mb_min
        and (requirements.accelerator is None or requirements.accelerator in caps.accelerators)
        and (requirements.runtime is None or requirements.runtime == caps.trainer_runtime)
        and (not requirements.device_classes or caps.device_class in requirements.device_classes)
    )


def may_run(kind: str, caps: Capabilities) -> bool:
    """Built-in kinds need a model runtime; `train` also needs the trainer role allowed."""
    if capability_score(caps) <= 0 or caps.trainer_runtime == "none":
        return False  # microcontrollers run no tasks; they join through gateways
    return may_train(caps) if kind == KIND_TRAIN else True


def eligible(kind: str, requirements: Requirements, caps: Capabilities) -> bool:
    return may_run(kind, caps) and meets(requirements, caps)


def rank(task_id: bytes, slot: int, peer: str) -> bytes:
    return hashlib.sha256(_DOMAIN_RANK + task_id + struct.pack(">I", slot) + peer.encode()).digest()


def choose_worker(
    task_id: bytes,
    slot: int,
    kind: str,
    requirements: Requirements,
    workers: Mapping[str, Capabilities],
    queue: Mapping[str, int],
    exclude: Collection[str],
    queue_max: int,
) -> str | None:
    """The worker for `slot` of the task, or None if no eligible worker has room."""
    best: tuple[int, bytes, str] | None = None
    for peer, caps in workers.items():
        load = queue.get(peer, 0)
        if peer in exclude or load >= queue_max or not eligible(kind, requirements, caps):
            continue
        key = ((load + 1) * COST_SCALE // capability_score(caps), rank(task_id, slot, peer), peer)
        if best is None or key < best:
            best = key
    return None if best is None else best[2]
