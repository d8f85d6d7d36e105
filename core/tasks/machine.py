"""The task machine of one agent: the decided board plus local timers and proposals.

Sans-I/O (core/node.py). The host feeds it decided batches from its PBFT
replica (`on_decided`), the membership view (`on_members`), its own capability
measurements (`advertise`) and the outputs of runs it was asked to do
(`on_output`). The machine answers with events:

    propose  {entry}                 order this entry (the host's replica.propose)
    run      {task_id, spec, slot, attempt}   this agent holds a slot: run it
    finished {task_id, status}       a task reached done / failed / rejected

Only agents with `watchdog=True` (the committee members) propose downs and
signed votes: a timeout vote when an attempt's deadline passed on their clock,
an expiry vote when a task stayed unschedulable for one attempt deadline or
stayed open past its whole-task deadline. The board acts on f + 1 distinct
members' votes; a member re-proposes its vote until it is counted.

`replay` rebuilds the board from the decided batches a restarted agent kept
(its persisted PBFT log) without re-running finished work.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.messages import VerifyFn
from agentmesh.core.membership.capabilities import Capabilities, sign_advert
from agentmesh.core.node import ContractError, InvariantViolation, MachineBase, Signer
from agentmesh.core.roles.capability import change_reason
from agentmesh.core.roles.config import RolesConfig

from .board import OPEN, Change, TaskBoard
from .config import TasksConfig
from .entries import (
    NONCE_BYTES,
    WHY_DEADLINE,
    WHY_INPUT_LOST,
    WHY_UNSCHEDULABLE,
    AttemptTimeout,
    EntryError,
    Requirements,
    TaskExpire,
    TaskSpec,
    WorkerAdvert,
    WorkerDown,
    decode_entry,
    sign_result,
    sign_submit,
)

_RUNS_MAX = 4_096  # runs handed to the host and not yet answered


class TasksMachine(MachineBase):
    """Applies decided task entries; proposes submits, results, adverts, timeouts, downs."""

    def __init__(
        self,
        signer: Signer,
        verify: VerifyFn,
        rng: random.Random,
        config: TasksConfig | None = None,
        watchdog: bool = False,
        roles_config: RolesConfig | None = None,
        committee: Collection[str] = (),
    ) -> None:
        super().__init__(signer.peer_id, rng)
        self.signer = signer
        self.verify = verify
        self.config = config or TasksConfig()
        self.watchdog = watchdog
        self.roles_config = roles_config or RolesConfig()
        self.board = TaskBoard(self.config, committee)
        self.now_ms = 0
        self.timers: list[tuple[int, bytes, int, int]] = []  # (due, task, slot, attempt)
        self.runs: dict[tuple[bytes, int, int], None] = {}
        self.gone: dict[str, None] = {}  # members the view says are dead or left
        self.downs_due: dict[str, int] = {}  # worker -> when to (re)propose its down
        self.advert_seq = 0
        self.advert_due: int | None = None
        self.last_advert_ms: int | None = None
        self.wanted_caps: tuple[Capabilities, int] | None = None
        # watchdog: when each open task was first seen open / unschedulable (own clock)
        self.opened_ms: dict[bytes, int] = {}
        self.stuck_ms: dict[bytes, int] = {}
        self.lost_ms: dict[bytes, int] = {}
        self.sweep_due: int | None = None

    # -- commands ----------------------------------------------------------------------

    def submit(
        self,
        kind: str,
        input_digest: bytes,
        input_bytes: int,
        model: bytes,
        now_ms: int,
        *,
        requirements: Requirements | None = None,
        replicas: int = 1,
        verifiable: bool = False,
        deadline_ms: int | None = None,
    ) -> TaskSpec:
        """Sign a task and ask for it to be ordered; TasksError if it cannot be expressed."""
        self.now_ms = now_ms
        spec = TaskSpec(kind, input_digest, input_bytes, model, requirements or Requirements(),
                        deadline_ms or self.config.deadline_ms_default, replicas, verifiable,
                        self.node_id, self.rng.randbytes(NONCE_BYTES))  # fmt: skip
        signed = sign_submit(self.signer, spec)
        self._propose(signed.entry())
        return signed

    def advertise(self, caps: Capabilities, incarnation: int, now_ms: int) -> None:
        """Offer this agent as a worker; re-advertise only past the roles' change threshold."""
        self.now_ms = now_ms
        self.wanted_caps = (caps, incarnation)
        decided = self.board.workers.get(self.node_id)
        if decided is not None and decided.up:
            old = decided.advert
            if old.incarnation == incarnation and not change_reason(
                old.capabilities, caps, self.roles_config
            ):
                return
        self._advert_now(now_ms)

    def on_output(
        self, task_id: bytes, slot: int, attempt: int, ok: bool, output: bytes, now_ms: int
    ) -> bool:
        """A run finished; propose its signed result. False if the slot moved on meanwhile."""
        self.now_ms = now_ms
        self.runs.pop((task_id, slot, attempt), None)
        record = self.board.tasks.get(task_id)
        if record is None or record.status != OPEN or slot >= len(record.slots):
            self.count("output_for_finished_task")
            return False
        if record.slots[slot].closed:
            self.count("output_for_closed_slot")
            return False
        self._propose(sign_result(self.signer, task_id, slot, attempt, ok, output).entry())
        return True

    def on_members(self, gone: Iterable[str], now_ms: int) -> None:
        """The membership view's dead or departed peers (the host polls its view)."""
        self.now_ms = now_ms
        self.gone = dict.fromkeys(gone)
        if self.watchdog:
            for peer in self.gone:
                worker = self.board.workers.get(peer)
                if worker is not None and worker.up and peer not in self.downs_due:
                    self.downs_due[peer] = now_ms

    # -- decided entries ----------------------------------------------------------------

    def on_decided(self, entries: Iterable[Entry], now_ms: int) -> None:
        self.now_ms = now_ms
        for entry in entries:
            try:
                decoded = decode_entry(entry)
            except EntryError:
                self.count("decided_malformed")  # validated before ordering: a faulty primary
                continue
            for change in self.board.apply(decoded):
                self._on_change(change, now_ms)
            if isinstance(decoded, WorkerAdvert | WorkerDown):
                self._after_worker_change(now_ms)
            elif isinstance(decoded, TaskSpec) and self.watchdog:
                self._watch(decoded.task_id, now_ms)

    def replay(self, batches: Iterable[Iterable[Entry]], now_ms: int) -> int:
        """Rebuild the board from decided batches kept before a restart; entries applied.

        Nothing is re-run or reported for tasks that finished; slots still held
        by this agent are run again (their attempt is unanswered) and every live
        attempt gets a fresh deadline on this clock.
        """
        self.now_ms = now_ms
        applied = 0
        for entries in batches:
            for entry in entries:
                try:
                    self.board.apply(decode_entry(entry))
                except EntryError:
                    self.count("replayed_malformed")
                    continue
                applied += 1
        for task_id in self.board.open:
            record = self.board.tasks[task_id]
            if self.watchdog:
                self._watch(task_id, now_ms)
            for slot in record.slots:
                if slot.worker is None:
                    continue
                change = Change("assigned", task_id, slot.index, slot.attempt, slot.worker)
                self._on_change(change, now_ms)
        self.count("replayed_entries", applied)
        return applied

    def _watch(self, task_id: bytes, now_ms: int) -> None:
        if task_id in self.board.open and len(self.opened_ms) < self.config.open_tasks_max:
            self.opened_ms.setdefault(task_id, now_ms)
            if self.sweep_due is None:
                self.sweep_due = now_ms + self.config.timeout_retry_ms

    def _on_change(self, change: Change, now_ms: int) -> None:
        if change.kind == "assigned":
            record = self.board.tasks[change.task]
            if len(self.timers) < self.config.timers_max:
                due = now_ms + record.spec.deadline_ms
                heapq.heappush(self.timers, (due, change.task, change.slot, change.attempt))
            else:
                self.count("dropped_timer")
            if change.worker == self.node_id:
                self._run(record.spec, change)
        elif change.kind == "finished":
            self.opened_ms.pop(change.task, None)
            self.stuck_ms.pop(change.task, None)
            self.lost_ms.pop(change.task, None)
            finished = self.board.tasks.get(change.task)
            status = finished.status if finished is not None else "evicted"
            self.emit("finished", task_id=change.task, status=status)

    def _run(self, spec: TaskSpec, change: Change) -> None:
        if len(self.runs) >= _RUNS_MAX:
            self.count("dropped_run")  # the attempt times out and moves elsewhere
            return
        self.runs[(change.task, change.slot, change.attempt)] = None
        self.emit("run", task_id=change.task, spec=spec, slot=change.slot, attempt=change.attempt)

    def _after_worker_change(self, now_ms: int) -> None:
        for peer in list(self.downs_due):
            worker = self.board.workers.get(peer)
            if worker is None or not worker.up:
                del self.downs_due[peer]
        me = self.board.workers.get(self.node_id)
        if me is not None and not me.up and self.wanted_caps is not None:
            self.advert_due = now_ms  # marked down while alive (a false suspicion): come back

    # -- timers ------------------------------------------------------------------------

    def next_deadline(self) -> int | None:
        due = [self.timers[0][0]] if self.timers else []
        if self.watchdog and self.downs_due:
            due.append(min(self.downs_due.values()))
        if self.advert_due is not None:
            due.append(self.advert_due)
        if self.watchdog and self.sweep_due is not None:
            due.append(self.sweep_due)
        return min(due, default=None)

    def tick(self, now_ms: int) -> None:
        self.now_ms = now_ms
        while self.timers and self.timers[0][0] <= now_ms:
            _, task_id, slot, attempt = heapq.heappop(self.timers)
            record = self.board.tasks.get(task_id)
            if record is None or record.status != OPEN or slot >= len(record.slots):
                continue
            current = record.slots[slot]
            if current.worker is None or current.attempt != attempt or current.closed:
                continue
            if self.watchdog:
                self._vote(AttemptTimeout(task_id, slot, attempt, self.node_id))
            retry = now_ms + self.config.timeout_retry_ms
            heapq.heappush(self.timers, (retry, task_id, slot, attempt))
        if self.watchdog:
            for peer, due in list(self.downs_due.items()):
                worker = self.board.workers.get(peer)
                if worker is None or not worker.up or peer not in self.gone:
                    del self.downs_due[peer]
                elif due <= now_ms:
                    inc, seq = worker.advert.order_key
                    self._propose(WorkerDown(peer, inc, seq).entry())
                    self.downs_due[peer] = now_ms + self.config.timeout_retry_ms
        if self.advert_due is not None and self.advert_due <= now_ms:
            self._advert_now(now_ms)
        if self.watchdog and self.sweep_due is not None and self.sweep_due <= now_ms:
            self._sweep(now_ms)

    def _sweep(self, now_ms: int) -> None:
        """Expiry votes for tasks open too long or unschedulable for one attempt deadline."""
        board = self.board
        for task_id in list(self.opened_ms):
            record = board.tasks.get(task_id)
            if record is None or record.status != OPEN:
                self.opened_ms.pop(task_id, None)
                self.stuck_ms.pop(task_id, None)
                self.lost_ms.pop(task_id, None)
                continue
            if now_ms - self.opened_ms[task_id] >= board.task_deadline_ms(record.spec):
                self._vote(TaskExpire(task_id, WHY_DEADLINE, self.node_id))
            self._sweep_lost(task_id, record.spec.deadline_ms, now_ms)
            if board.unschedulable(record) is None:
                self.stuck_ms.pop(task_id, None)
                continue
            since = self.stuck_ms.setdefault(task_id, now_ms)
            if now_ms - since >= record.spec.deadline_ms:
                self._vote(TaskExpire(task_id, WHY_UNSCHEDULABLE, self.node_id))
        self.sweep_due = now_ms + self.config.timeout_retry_ms if self.opened_ms else None

    def _sweep_lost(self, task_id: bytes, deadline_ms: int, now_ms: int) -> None:
        """Vote input_lost once that held for one attempt deadline (a falsely dead
        submitter re-advertises well within it, and the board re-checks when deciding)."""
        if self.board.input_lost(self.board.tasks[task_id]) is None:
            self.lost_ms.pop(task_id, None)
            return
        since = self.lost_ms.setdefault(task_id, now_ms)
        if now_ms - since >= deadline_ms:
            self._vote(TaskExpire(task_id, WHY_INPUT_LOST, self.node_id))

    def _vote(self, vote: AttemptTimeout | TaskExpire) -> None:
        """Sign and propose this member's vote unless the board counts it already."""
        if self.board.has_voted(vote):
            return  # re-proposing would only load the log
        self.count("votes_proposed")
        self._propose(replace(vote, signature=self.signer.sign(vote.payload())).entry())

    def _advert_now(self, now_ms: int) -> None:
        if self.wanted_caps is None:
            return
        last = self.last_advert_ms
        if last is not None and now_ms - last < self.config.readvertise_interval_ms:
            self.advert_due = last + self.config.readvertise_interval_ms
            return
        caps, incarnation = self.wanted_caps
        decided = self.board.workers.get(self.node_id)
        if decided is not None:
            self.advert_seq = max(self.advert_seq, decided.advert.seq)
        self.advert_seq += 1
        advert = sign_advert(self.signer, incarnation, self.advert_seq, caps)
        self._propose(WorkerAdvert(advert).entry())
        self.last_advert_ms = now_ms
        self.advert_due = None

    def _propose(self, entry: Entry) -> None:
        self.emit("propose", entry=entry)

    # -- queries ------------------------------------------------------------------------

    def task_ids_by_prefix(self, prefix: str) -> list[bytes]:
        """Task ids whose hex starts with `prefix` (the CLI accepts a unique prefix)."""
        if not prefix or len(prefix) > 64:
            raise ContractError("a task id prefix has 1..64 hex characters")
        return [t for t in self.board.tasks if t.hex().startswith(prefix.lower())][:2]

    def input_holders(self, task_id: bytes) -> list[str]:
        """Agents that may hold the task's input, in the order to ask them."""
        return self.board.input_holders(task_id)

    def workers(self) -> Mapping[str, Capabilities]:
        return {peer: w.caps for peer, w in self.board.workers.items() if w.up}

    def check_invariants(self) -> None:
        self.board.check_invariants()
        if len(self.opened_ms) > self.config.open_tasks_max:
            raise InvariantViolation("more watched tasks than open tasks")
