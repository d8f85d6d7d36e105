"""The decided task table: every agent applies the same entries in order and agrees.

`TaskBoard.apply(entry)` is a pure state transition (no clock, no randomness):
tasks, their replica slots, the worker table and the per-worker queues all
follow from the decided log alone, so "who runs what" and "is it done" are the
same answer on every agent (docs/tasks.md).

Rules, per slot: a slot is assigned (attempt 1, 2, ...) to a worker chosen by
`assign.choose_worker`; it closes on the first decided ok result from a worker
that held it at any attempt (later results are duplicates and change nothing:
exactly once). Timeout votes of f + 1 distinct committee members for the
current attempt, an error result for it, or the worker going down reassign it;
after `attempts_max` the task fails. f + 1 expiry votes end an open task as
"expired" (past its deadline), "unschedulable" (fewer capable workers than it
needs) or "input_lost" (a worker reported the input unavailable and the submitter
and every worker known to have read it are down); the last two are re-checked
here on decided state when the deciding vote is applied.
A task is done when all its slots closed, or, when verifiable, when `replicas`
closed slots agree on the output digest; disagreement opens extra slots up to
`extra_slots_max`, then the task fails.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from typing import NamedTuple

from agentmesh.core.membership.capabilities import Capabilities, CapabilityAdvert
from agentmesh.core.node import InvariantViolation

from .assign import choose_worker, eligible
from .config import TasksConfig
from .entries import (
    INPUT_UNAVAILABLE,
    WHY_DEADLINE,
    WHY_INPUT_LOST,
    WHY_UNSCHEDULABLE,
    AttemptTimeout,
    TaskEntry,
    TaskExpire,
    TaskResult,
    TaskSpec,
    WorkerAdvert,
    WorkerDown,
)

OPEN, DONE, FAILED, REJECTED = "open", "done", "failed", "rejected"
EXPIRED, UNSCHEDULABLE, INPUT_LOST = "expired", "unschedulable", "input_lost"
TERMINAL = (DONE, FAILED, REJECTED, EXPIRED, UNSCHEDULABLE, INPUT_LOST)
_ENDED_BY = {WHY_UNSCHEDULABLE: UNSCHEDULABLE, WHY_DEADLINE: EXPIRED, WHY_INPUT_LOST: INPUT_LOST}


class Change(NamedTuple):
    """What applying an entry did, for the machine and the host."""

    kind: str  # assigned | released | finished
    task: bytes
    slot: int = 0
    attempt: int = 0
    worker: str = ""


@dataclass(slots=True)
class Slot:
    index: int
    worker: str | None = None  # holder of the current attempt; None when waiting or closed
    attempt: int = 0
    tried: list[str] = field(default_factory=list)  # earlier holders (attempts that failed)
    result: TaskResult | None = None
    timeout_votes: dict[str, None] = field(default_factory=dict)  # members, current attempt

    @property
    def closed(self) -> bool:
        return self.result is not None


@dataclass(slots=True)
class TaskRecord:
    spec: TaskSpec
    task_id: bytes
    order: int  # position among decided submits
    status: str = OPEN
    reason: str = ""
    slots: list[Slot] = field(default_factory=list)
    output_digest: bytes | None = None  # the agreed digest of a finished verifiable task
    expire_votes: dict[str, dict[str, None]] = field(default_factory=dict)  # why -> members
    input_misses: dict[str, None] = field(default_factory=dict)  # workers that found no input


@dataclass(slots=True)
class Worker:
    advert: CapabilityAdvert
    up: bool = True

    @property
    def caps(self) -> Capabilities:
        return self.advert.capabilities


class TaskBoard:
    """Tasks, slots, workers and queues as decided; bounded by `TasksConfig`."""

    def __init__(self, config: TasksConfig | None = None, committee: Collection[str] = ()) -> None:
        self.config = config or TasksConfig()
        # Votes count only from the task committee; f + 1 of them include an honest one.
        self.committee = frozenset(committee)
        self.votes_needed = (len(self.committee) - 1) // 3 + 1
        self.tasks: dict[bytes, TaskRecord] = {}
        self.open: dict[bytes, None] = {}  # decided order
        self.finished: dict[bytes, None] = {}  # oldest first, evicted past the bound
        self.workers: dict[str, Worker] = {}
        self.assigned: dict[str, dict[tuple[bytes, int], None]] = {}  # worker -> live slots
        self.waiting: dict[tuple[bytes, int], None] = {}  # FIFO of slots with no worker
        self.results_by_worker: Counter[str] = Counter()
        self.counters: Counter[str] = Counter()
        self.submitted = 0
        self._changes: list[Change] = []

    # -- applying decided entries ------------------------------------------------------

    def apply(self, entry: TaskEntry) -> list[Change]:
        self._changes = []
        if isinstance(entry, TaskSpec):
            self._submit(entry)
        elif isinstance(entry, TaskResult):
            self._result(entry)
        elif isinstance(entry, AttemptTimeout):
            self._timeout(entry)
        elif isinstance(entry, WorkerAdvert):
            self._advert(entry.advert)
        elif isinstance(entry, WorkerDown):
            self._down(entry)
        elif isinstance(entry, TaskExpire):
            self._expire(entry)
        changes, self._changes = self._changes, []
        return changes

    def _submit(self, spec: TaskSpec) -> None:
        task_id = spec.task_id
        if task_id in self.tasks:
            self.counters["duplicate_submit"] += 1
            return
        self.submitted += 1
        record = TaskRecord(spec, task_id, self.submitted)
        self.tasks[task_id] = record
        config = self.config
        if len(self.open) >= config.open_tasks_max:
            self._finish(record, REJECTED, "too many open tasks")
            return
        if spec.replicas > config.replicas_max or spec.deadline_ms > config.deadline_ms_max:
            self._finish(record, REJECTED, "replicas or deadline beyond this mesh's bounds")
            return
        if spec.input_bytes > config.input_bytes_max:
            self._finish(record, REJECTED, "input larger than this mesh accepts")
            return
        self.open[task_id] = None
        record.slots = [Slot(k) for k in range(spec.replicas)]
        for slot in record.slots:
            self._assign(record, slot)

    def _result(self, result: TaskResult) -> None:
        record = self.tasks.get(result.task)
        if record is None or record.status != OPEN or result.slot >= len(record.slots):
            self.counters["result_not_open"] += 1
            return
        slot = record.slots[result.slot]
        current = result.worker == slot.worker and result.attempt == slot.attempt
        if slot.closed or not (current or result.worker in slot.tried):
            self.counters["result_duplicate_or_unassigned"] += 1
            return
        if not result.ok:
            if current and result.output == INPUT_UNAVAILABLE:
                record.input_misses[result.worker] = None  # current holders only: bounded
            if current:
                self._fail_attempt(record, slot)
            else:
                self.counters["late_error_ignored"] += 1
            return
        if len(result.output) > self.config.output_bytes_max:
            self.counters["result_output_too_large"] += 1
            if current:
                self._fail_attempt(record, slot)
            return
        self._release(record, slot)
        slot.result = result
        self.results_by_worker[result.worker] += 1
        self._settle(record)
        self._retry_waiting()

    def _timeout(self, vote: AttemptTimeout) -> None:
        record = self.tasks.get(vote.task)
        if record is None or record.status != OPEN or vote.slot >= len(record.slots):
            return
        slot = record.slots[vote.slot]
        if slot.closed or slot.worker is None or slot.attempt != vote.attempt:
            self.counters["timeout_stale"] += 1  # an older attempt's vote: moot
            return
        if vote.voter not in self.committee:
            self.counters["vote_not_member"] += 1
            return
        slot.timeout_votes[vote.voter] = None  # a member's repeated vote counts once
        if len(slot.timeout_votes) < self.votes_needed:
            self.counters["timeout_votes_pending"] += 1
            return
        self.counters["timeouts"] += 1
        self._fail_attempt(record, slot)

    def _expire(self, vote: TaskExpire) -> None:
        record = self.tasks.get(vote.task)
        if record is None or record.status != OPEN:
            self.counters["expire_stale"] += 1
            return
        if vote.voter not in self.committee:
            self.counters["vote_not_member"] += 1
            return
        voters = record.expire_votes.setdefault(vote.why, {})
        voters[vote.voter] = None
        if vote.why in (WHY_UNSCHEDULABLE, WHY_INPUT_LOST):
            check = self.unschedulable if vote.why == WHY_UNSCHEDULABLE else self.input_lost
            reason = check(record)
            if reason is None:  # a worker or reader came (back) since: those votes are moot
                del record.expire_votes[vote.why]
                self.counters["expire_moot"] += 1
                return
        else:
            reason = "open past its deadline"
        if len(voters) >= self.votes_needed:
            self._finish(record, _ENDED_BY[vote.why], reason)

    def _advert(self, advert: CapabilityAdvert) -> None:
        known = self.workers.get(advert.peer_id)
        if known is None and len(self.workers) >= self.config.workers_max:
            self.counters["workers_full"] += 1
            return
        if known is not None and advert.order_key <= known.advert.order_key:
            self.counters["advert_stale"] += 1
            return
        self.workers[advert.peer_id] = Worker(advert)
        self._retry_waiting()

    def _down(self, down: WorkerDown) -> None:
        worker = self.workers.get(down.worker)
        if worker is None or not worker.up:
            return
        if worker.advert.order_key != (down.incarnation, down.seq):
            self.counters["down_stale"] += 1
            return
        worker.up = False
        for task_id, index in list(self.assigned.get(down.worker, {})):
            record = self.tasks[task_id]
            if record.status == OPEN:
                self._fail_attempt(record, record.slots[index])

    # -- slots ------------------------------------------------------------------------

    def _assign(self, record: TaskRecord, slot: Slot) -> None:
        spec = record.spec
        up = {peer: w.caps for peer, w in self.workers.items() if w.up}
        queue = {peer: len(live) for peer, live in self.assigned.items()}
        others = {s.worker for s in record.slots if s.worker is not None}
        others |= {s.result.worker for s in record.slots if s.result is not None}
        worker = None
        for exclude in (others | set(slot.tried), others):
            worker = choose_worker(record.task_id, slot.index, spec.kind, spec.requirements,
                                   up, queue, exclude, self.config.worker_queue_max)  # fmt: skip
            if worker is not None:
                break
        key = (record.task_id, slot.index)
        if worker is None:
            self.waiting[key] = None
            return
        self.waiting.pop(key, None)
        slot.worker = worker
        slot.attempt += 1
        slot.timeout_votes = {}
        self.assigned.setdefault(worker, {})[key] = None
        self._changes.append(Change("assigned", record.task_id, slot.index, slot.attempt, worker))

    def _release(self, record: TaskRecord, slot: Slot) -> None:
        worker = slot.worker
        if worker is None:
            self.waiting.pop((record.task_id, slot.index), None)
            return
        live = self.assigned.get(worker, {})
        live.pop((record.task_id, slot.index), None)
        if not live:
            self.assigned.pop(worker, None)
        slot.worker = None
        slot.timeout_votes = {}
        self._changes.append(Change("released", record.task_id, slot.index, slot.attempt, worker))

    def _fail_attempt(self, record: TaskRecord, slot: Slot) -> None:
        failed = slot.worker
        self._release(record, slot)
        if failed is not None:
            slot.tried.append(failed)
        if slot.attempt >= self.config.attempts_max:
            missed = f" ({len(record.input_misses)} worker(s) found no input)"
            self._finish(record, FAILED, f"slot {slot.index}: {slot.attempt} attempts failed"
                         + (missed if record.input_misses else ""))  # fmt: skip
        else:
            self._assign(record, slot)
        self._retry_waiting()

    def _settle(self, record: TaskRecord) -> None:
        """Done, failed, or more slots: after a slot closed."""
        spec = record.spec
        closed = [s for s in record.slots if s.closed]
        if not spec.verifiable:
            if len(closed) == len(record.slots):
                self._finish(record, DONE, "")
            return
        digests = Counter(s.result.digest for s in closed if s.result is not None)
        digest, agreeing = digests.most_common(1)[0]
        if agreeing >= spec.replicas:
            record.output_digest = digest
            self._finish(record, DONE, "")
            return
        if len(closed) < len(record.slots):
            return  # results still to come may agree
        room = spec.replicas + self.config.extra_slots_max - len(record.slots)
        if room <= 0:
            self._finish(record, FAILED, "replicas disagree on the output")
            return
        self.counters["extra_slots"] += 1
        for _ in range(min(room, spec.replicas - agreeing)):
            slot = Slot(len(record.slots))
            record.slots.append(slot)
            self._assign(record, slot)

    def _finish(self, record: TaskRecord, status: str, reason: str) -> None:
        for slot in record.slots:
            if not slot.closed:
                self._release(record, slot)
        record.status, record.reason = status, reason
        self.open.pop(record.task_id, None)
        self.finished[record.task_id] = None
        self.counters[f"tasks_{status}"] += 1
        self._changes.append(Change("finished", record.task_id))
        while len(self.finished) > self.config.finished_retained_max:
            oldest = next(iter(self.finished))
            del self.finished[oldest]
            del self.tasks[oldest]

    def _retry_waiting(self) -> None:
        for key in list(self.waiting):
            task_id, index = key
            record = self.tasks.get(task_id)
            if record is None or record.status != OPEN:
                self.waiting.pop(key, None)
                continue
            self._assign(record, record.slots[index])

    # -- queries ----------------------------------------------------------------------

    def unschedulable(self, record: TaskRecord) -> str | None:
        """Why a slot of the task waits for good (too few capable workers), else None.

        Its slots need distinct workers: the capable ones that are up, plus those
        whose results already closed a slot. Fewer than the slots means waiting
        until a capable worker joins (the committee's expiry votes end that).
        """
        if not any(s.worker is None and not s.closed for s in record.slots):
            return None
        spec = record.spec
        capable = {s.result.worker for s in record.slots if s.result is not None}
        capable |= {
            peer
            for peer, worker in self.workers.items()
            if worker.up and eligible(spec.kind, spec.requirements, worker.caps)
        }
        if len(capable) >= len(record.slots):
            return None
        return f"{len(capable)} capable worker(s) for {len(record.slots)} slot(s)"

    def input_lost(self, record: TaskRecord) -> str | None:
        """Why nobody can serve the task's input any more, else None (decided state only).

        Some worker reported it could not fetch the input, and the submitter and
        every worker that closed a slot of a retained task with that input (they
        read it) are decided down. An agent that is not a known worker may be
        alive: then nothing is concluded and the attempts run out as usual.
        """
        if not record.input_misses:
            return None
        readers = {record.spec.submitter}
        digest = record.spec.input
        for other in self.tasks.values():
            if other.spec.input == digest:
                readers |= {s.result.worker for s in other.slots if s.result is not None}
        for peer in readers:
            worker = self.workers.get(peer)
            if worker is None or worker.up:
                return None
        return (f"input held only by agents that are down ({len(readers)}); "
                f"{len(record.input_misses)} worker(s) could not fetch it")  # fmt: skip

    def task_deadline_ms(self, spec: TaskSpec) -> int:
        """How long a task may stay open: every attempt may use its whole deadline."""
        return max(self.config.task_open_ms_min, spec.deadline_ms * self.config.attempts_max)

    def has_voted(self, vote: AttemptTimeout | TaskExpire) -> bool:
        """Whether this member's vote is already counted (no need to propose it again)."""
        record = self.tasks.get(vote.task)
        if record is None or record.status != OPEN:
            return True
        if isinstance(vote, TaskExpire):
            return vote.voter in record.expire_votes.get(vote.why, {})
        if vote.slot >= len(record.slots):
            return True
        slot = record.slots[vote.slot]
        return slot.attempt != vote.attempt or vote.voter in slot.timeout_votes

    def input_holders(self, task_id: bytes) -> list[str]:
        """Who may hold the task's input, most likely first (a deterministic order).

        The submitter; the workers whose results closed a slot (they read it);
        the task's other holders, current and earlier; then workers that closed
        a slot of any other retained task with the same input.
        """
        record = self.tasks.get(task_id)
        if record is None:
            return []
        found = [record.spec.submitter]
        found += [s.result.worker for s in record.slots if s.result is not None]
        for slot in record.slots:
            found += slot.tried + ([slot.worker] if slot.worker is not None else [])
        digest = record.spec.input
        for other in self.tasks.values():
            if other.spec.input == digest and other is not record:
                found += [s.result.worker for s in other.slots if s.result is not None]
        return list(dict.fromkeys(found))

    def queue_lengths(self) -> dict[str, int]:
        return {peer: len(live) for peer, live in self.assigned.items()}

    def holds(self, task_id: bytes, slot: int, attempt: int, worker: str) -> bool:
        """Whether `worker` still holds that attempt (a run not yet answered)."""
        record = self.tasks.get(task_id)
        if record is None or record.status != OPEN or slot >= len(record.slots):
            return False
        current = record.slots[slot]
        return current.worker == worker and current.attempt == attempt

    def check_invariants(self) -> None:
        live = 0
        for task_id in self.open:
            record = self.tasks[task_id]
            for slot in record.slots:
                key = (task_id, slot.index)
                if slot.worker is not None:
                    live += 1
                    if key not in self.assigned.get(slot.worker, {}) or slot.closed:
                        raise InvariantViolation(f"slot {key} is not in its worker's queue")
                elif not slot.closed and key not in self.waiting:
                    raise InvariantViolation(f"slot {key} has no worker and is not waiting")
            holders = [s.worker for s in record.slots if s.worker is not None]
            if len(holders) != len(set(holders)):
                raise InvariantViolation("two live slots of one task on one worker")
        if live != sum(len(v) for v in self.assigned.values()):
            raise InvariantViolation("queue lengths disagree with the live slots")
        if any(len(v) > self.config.worker_queue_max for v in self.assigned.values()):
            raise InvariantViolation("a worker's queue exceeds worker_queue_max")
        for task_id in self.open:
            record = self.tasks[task_id]
            votes = [s.timeout_votes for s in record.slots] + list(record.expire_votes.values())
            if any(len(v) >= self.votes_needed or not v.keys() <= self.committee for v in votes):
                raise InvariantViolation("an open task holds a decisive or foreign vote")
        config = self.config
        if len(self.open) > config.open_tasks_max or len(self.workers) > config.workers_max:
            raise InvariantViolation("task or worker table beyond its bound")
