"""Task entries, the assignment rule and the decided board: pure functions, hostile input."""

from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agentmesh.core.consensus import Entry
from agentmesh.core.identity import Identity, verify_from_peer_id
from agentmesh.core.membership.capabilities import Capabilities, sign_advert
from agentmesh.core.tasks import (
    DONE,
    ENTRY_KINDS,
    EXPIRED,
    FAILED,
    INPUT_LOST,
    INPUT_UNAVAILABLE,
    OPEN,
    REJECTED,
    UNSCHEDULABLE,
    WHY_DEADLINE,
    WHY_INPUT_LOST,
    WHY_UNSCHEDULABLE,
    AttemptTimeout,
    EntryError,
    Requirements,
    TaskBoard,
    TasksConfig,
    TasksError,
    TasksMachine,
    TaskSpec,
    WorkerAdvert,
    WorkerDown,
    choose_worker,
    decode_entry,
    eligible,
    entry_validator,
    sign_expire,
    sign_result,
    sign_submit,
    sign_timeout,
    tasks_genesis,
    verify_entry,
)

IDS = [Identity.from_seed(bytes([k + 1]) * 32) for k in range(8)]
MODEL = hashlib.sha256(b"model").digest()


def caps(
    device_class: str = "laptop",
    ram_mb: int = 8192,
    cores: int = 4,
    accelerators: tuple[str, ...] = (),
    runtime: str = "litert",
    load_permille: int = 0,
    roles: tuple[str, ...] = ("trainer", "aggregator", "validator"),
) -> Capabilities:
    return Capabilities(cores, load_permille, ram_mb, ram_mb // 2, None, accelerators, runtime,
                        100_000, device_class, roles)  # fmt: skip


def advert(k: int, capabilities: Capabilities, seq: int = 1, inc: int = 0) -> WorkerAdvert:
    return WorkerAdvert(sign_advert(IDS[k], inc, seq, capabilities))


def spec(
    nonce: int = 0,
    kind: str = "infer",
    replicas: int = 1,
    verifiable: bool = False,
    requirements: Requirements | None = None,
) -> TaskSpec:
    unsigned = TaskSpec(kind, hashlib.sha256(b"in%d" % nonce).digest(), 256, MODEL,
                        requirements or Requirements(), 1000, replicas, verifiable, "",
                        nonce.to_bytes(16, "big"))  # fmt: skip
    return sign_submit(IDS[0], unsigned)


COMMITTEE = tuple(i.peer_id for i in IDS[4:8])  # 3f + 1 = 4 members: f + 1 = 2 votes decide


def board_with(workers: list[Capabilities], config: TasksConfig | None = None) -> TaskBoard:
    board = TaskBoard(config, COMMITTEE)
    for k, c in enumerate(workers):
        board.apply(advert(k, c))
    return board


def output_of(board: TaskBoard, task: bytes, slot: int, k: int, output: bytes = b"\x01"):
    attempt = board.tasks[task].slots[slot].attempt
    return sign_result(IDS[k], task, slot, attempt, True, output)


def timeout(board: TaskBoard, task: bytes, slot: int, attempt: int, voters=(4, 5)) -> None:
    for k in voters:
        board.apply(sign_timeout(IDS[k], task, slot, attempt))


def holder(board: TaskBoard, task: bytes, slot: int = 0) -> int:
    peer = board.tasks[task].slots[slot].worker
    return next(k for k, i in enumerate(IDS) if i.peer_id == peer)


# -- entries --------------------------------------------------------------------------


def test_every_entry_round_trips_and_carries_a_checked_signature() -> None:
    task = spec(replicas=2, verifiable=True, requirements=Requirements(512, "npu", "litert",
                                                                       ("edge",)))  # fmt: skip
    entries = [task, advert(1, caps()), sign_result(IDS[2], task.task_id, 1, 3, True, b"out"),
               sign_timeout(IDS[4], task.task_id, 0, 1), WorkerDown(IDS[1].peer_id, 0, 1),
               sign_expire(IDS[5], task.task_id, WHY_DEADLINE)]  # fmt: skip
    validate = entry_validator(verify_from_peer_id)
    for decoded in entries:
        entry = decoded.entry()
        assert entry.kind in ENTRY_KINDS
        assert verify_entry(entry, verify_from_peer_id) == decoded
        assert validate(entry)
    assert decode_entry(task.entry()).task_id == task.task_id


def test_forged_or_altered_entries_are_refused() -> None:
    validate = entry_validator(verify_from_peer_id)
    task = spec()
    assert not validate(replace(task, replicas=2).entry())  # id changed, signature did not
    result = sign_result(IDS[2], task.task_id, 0, 1, True, b"out")
    assert not validate(replace(result, output=b"forged").entry())
    assert not validate(replace(result, worker=IDS[3].peer_id).entry())
    assert not validate(Entry("task_exec", b"\xa0"))
    vote = sign_timeout(IDS[4], task.task_id, 0, 1)
    assert not validate(replace(vote, voter=IDS[5].peer_id).entry())  # a vote in another's name
    assert not validate(replace(vote, attempt=2).entry())
    assert not validate(AttemptTimeout(task.task_id, 0, 1).entry())  # unsigned: no longer valid
    expire = sign_expire(IDS[4], task.task_id, WHY_DEADLINE)
    assert not validate(replace(expire, why=WHY_UNSCHEDULABLE).entry())


def test_only_built_in_kinds_and_sane_shapes_can_be_signed() -> None:
    with pytest.raises(TasksError):
        spec(kind="shell")
    with pytest.raises(TasksError):
        spec(kind="train", verifiable=True)  # training differs per agent: nothing to agree on
    with pytest.raises(TasksError):
        spec(replicas=0)
    with pytest.raises(TasksError):
        Requirements(device_classes=("toaster",))


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(sorted(ENTRY_KINDS)), st.binary(max_size=300))
def test_hostile_bodies_raise_only_the_typed_error(kind: str, body: bytes) -> None:
    try:
        decode_entry(Entry(kind, body))
    except EntryError:
        pass


# -- assignment -------------------------------------------------------------------------


def test_requirements_filter_ram_accelerator_runtime_and_class() -> None:
    pi = caps("edge", 2048, 4, runtime="numpy")
    jetson = caps("edge", 8192, 6, ("gpu",))
    mcu = caps("mcu", 1, 1, runtime="numpy")
    assert eligible("infer", Requirements(), pi) and not eligible("infer", Requirements(), mcu)
    assert not eligible("infer", Requirements(ram_mb_min=4096), pi)
    assert eligible("infer", Requirements(accelerator="gpu"), jetson)
    assert not eligible("infer", Requirements(accelerator="gpu"), pi)
    assert not eligible("infer", Requirements(runtime="litert"), pi)
    assert not eligible("infer", Requirements(device_classes=("server",)), jetson)
    assert not eligible("train", Requirements(), caps(roles=("validator",)))


def test_choice_is_deterministic_and_prefers_capacity_and_short_queues() -> None:
    workers = {IDS[0].peer_id: caps("server", 65536, 32), IDS[1].peer_id: caps("edge", 2048, 4)}
    task = hashlib.sha256(b"t").digest()
    args = (task, 0, "infer", Requirements(), workers)
    first = choose_worker(*args, {}, (), 32)
    assert first == choose_worker(*args, {}, (), 32) == IDS[0].peer_id
    assert choose_worker(*args, {IDS[0].peer_id: 20}, (), 32) == IDS[1].peer_id
    assert choose_worker(*args, {IDS[0].peer_id: 32}, (), 32) == IDS[1].peer_id
    assert choose_worker(*args, {}, {IDS[0].peer_id, IDS[1].peer_id}, 32) is None


def test_load_spreads_in_proportion_to_capacity() -> None:
    board = board_with([caps("server", 65536, 32), caps("laptop", 16384, 8), caps("edge", 2048, 4)])
    for n in range(60):
        board.apply(spec(n))
    queues = board.queue_lengths()
    counts = [queues.get(IDS[k].peer_id, 0) for k in range(3)]
    assert sum(counts) == 60 and counts[0] > counts[1] > counts[2] > 0, counts
    board.check_invariants()


# -- the board ------------------------------------------------------------------------------


def test_a_slot_completes_exactly_once_even_with_duplicate_and_late_results() -> None:
    board = board_with([caps(), caps(), caps()])
    task = spec()
    board.apply(task)
    first = holder(board, task.task_id)
    timeout(board, task.task_id, 0, 1)  # f + 1 votes: reassigned to someone else
    second = holder(board, task.task_id)
    assert second != first and board.tasks[task.task_id].slots[0].attempt == 2
    late = sign_result(IDS[first], task.task_id, 0, 1, True, b"late")
    changes = board.apply(late)  # the first worker answers after all: accepted, slot closes
    assert board.tasks[task.task_id].status == DONE
    assert [c.kind for c in changes].count("finished") == 1
    assert board.apply(output_of(board, task.task_id, 0, second)) == []  # duplicate: no change
    assert board.apply(late) == []
    assert sum(board.results_by_worker.values()) == 1
    board.check_invariants()


def test_a_down_worker_loses_its_slots_and_a_stale_down_is_ignored() -> None:
    board = board_with([caps("server", 65536, 32), caps()])
    tasks = [spec(n) for n in range(5)]
    for task in tasks:
        board.apply(task)
    busy = max(board.queue_lengths(), key=lambda p: board.queue_lengths()[p])
    k = next(i for i, ident in enumerate(IDS) if ident.peer_id == busy)
    board.apply(advert(k, caps("server", 65536, 32), seq=2))
    board.apply(WorkerDown(busy, 0, 1))  # names the replaced advert: stale
    assert board.workers[busy].up
    board.apply(WorkerDown(busy, 0, 2))
    assert not board.workers[busy].up and busy not in board.queue_lengths()
    assert all(board.tasks[t.task_id].slots[0].worker not in (None, busy) for t in tasks)
    board.check_invariants()


def test_replicated_tasks_use_distinct_workers_and_complete_k_times() -> None:
    board = board_with([caps(), caps(), caps()])
    task = spec(replicas=3)
    board.apply(task)
    holders = {holder(board, task.task_id, s) for s in range(3)}
    assert len(holders) == 3
    for s in range(3):
        board.apply(output_of(board, task.task_id, s, holder(board, task.task_id, s), bytes([s])))
    assert board.tasks[task.task_id].status == DONE
    assert sum(board.results_by_worker.values()) == 3


def test_verifiable_tasks_need_k_matching_digests_and_open_extra_slots() -> None:
    board = board_with([caps() for _ in range(5)], TasksConfig(extra_slots_max=1))
    task = spec(replicas=2, verifiable=True)
    board.apply(task)
    board.apply(output_of(board, task.task_id, 0, holder(board, task.task_id, 0), b"A"))
    board.apply(output_of(board, task.task_id, 1, holder(board, task.task_id, 1), b"B"))
    record = board.tasks[task.task_id]
    assert record.status == "open" and len(record.slots) == 3  # a tie-breaker slot
    board.apply(output_of(board, task.task_id, 2, holder(board, task.task_id, 2), b"A"))
    assert record.status == DONE and record.output_digest == hashlib.sha256(b"A").digest()

    liar = spec(1, replicas=2, verifiable=True)
    board.apply(liar)
    for s, out in enumerate((b"X", b"Y")):
        board.apply(output_of(board, liar.task_id, s, holder(board, liar.task_id, s), out))
    board.apply(output_of(board, liar.task_id, 2, holder(board, liar.task_id, 2), b"Z"))
    assert board.tasks[liar.task_id].status == FAILED
    board.check_invariants()


def test_errors_retry_then_fail_and_tasks_wait_for_a_capable_worker() -> None:
    board = board_with([caps(), caps()], TasksConfig(attempts_max=3))
    task = spec()
    board.apply(task)
    for _ in range(3):
        slot = board.tasks[task.task_id].slots[0]
        k = holder(board, task.task_id)
        board.apply(sign_result(IDS[k], task.task_id, 0, slot.attempt, False, b""))
    assert board.tasks[task.task_id].status == FAILED

    gpu_task = spec(2, requirements=Requirements(accelerator="gpu"))
    board.apply(gpu_task)
    assert board.tasks[gpu_task.task_id].slots[0].worker is None and board.waiting
    board.apply(advert(5, caps(accelerators=("gpu",))))
    assert board.tasks[gpu_task.task_id].slots[0].worker == IDS[5].peer_id
    board.check_invariants()


def same_input(nonce: int) -> TaskSpec:
    """A task of IDS[0] on the input of spec(0), told apart by its nonce."""
    unsigned = TaskSpec("infer", spec(0).input, 256, MODEL, Requirements(), 1000, 1, False, "",
                        nonce.to_bytes(16, "big"))  # fmt: skip
    return sign_submit(IDS[0], unsigned)


def miss(board: TaskBoard, task: bytes, output: bytes = INPUT_UNAVAILABLE) -> int:
    """The current holder answers that it found the input nowhere; returns who it was."""
    k = holder(board, task)
    board.apply(sign_result(IDS[k], task, 0, board.tasks[task].slots[0].attempt, False, output))
    return k


def lost_votes(board: TaskBoard, task: bytes, voters=(4, 5)) -> None:
    for k in voters:
        board.apply(sign_expire(IDS[k], task, WHY_INPUT_LOST))


def test_an_input_only_a_down_submitter_held_ends_input_lost_by_f_plus_1_votes() -> None:
    board = board_with([caps(), caps(), caps()])
    task = spec()
    board.apply(task)
    board.apply(WorkerDown(IDS[0].peer_id, 0, 1))  # the submitter (IDS[0]) is decided down
    miss(board, task.task_id)
    record = board.tasks[task.task_id]
    assert record.status == OPEN and record.slots[0].attempt == 2  # the miss moves it
    lost_votes(board, task.task_id, voters=(4,))
    assert record.status == OPEN  # one member's vote moves nothing
    lost_votes(board, task.task_id, voters=(5,))
    assert record.status == INPUT_LOST and "down" in record.reason, record.reason
    assert not board.queue_lengths()
    board.check_invariants()


def test_input_lost_votes_are_moot_while_a_reader_or_the_submitter_is_up() -> None:
    board = board_with([caps(), caps(), caps()])
    board.apply(WorkerDown(IDS[0].peer_id, 0, 1))  # the submitter is down from the start
    read = same_input(1)
    board.apply(read)
    reader = holder(board, read.task_id)
    board.apply(output_of(board, read.task_id, 0, reader))  # the reader closed a slot: has it
    task = same_input(2)
    board.apply(task)
    miss(board, task.task_id)
    record = board.tasks[task.task_id]
    assert board.input_lost(record) is None  # the reader is up: a retry may still get it
    lost_votes(board, task.task_id)
    assert record.status == OPEN and board.counters["expire_moot"] >= 1
    board.apply(WorkerDown(IDS[reader].peer_id, 0, 1))  # the last reader goes
    assert board.input_lost(record) is not None
    lost_votes(board, task.task_id)
    assert record.status == INPUT_LOST, (record.status, record.reason)
    board.check_invariants()


def test_a_falsely_dead_submitter_back_before_the_deadline_loses_nothing() -> None:
    machine = TasksMachine(IDS[4], verify_from_peer_id, random.Random(1), TasksConfig(),
                           watchdog=True, committee=COMMITTEE)  # fmt: skip
    board = machine.board
    machine.on_decided([advert(k, caps()).entry() for k in range(3)], 0)
    task = spec()
    machine.on_decided([task.entry(), WorkerDown(IDS[0].peer_id, 0, 1).entry()], 0)
    k = holder(board, task.task_id)
    attempt = board.tasks[task.task_id].slots[0].attempt
    miss_entry = sign_result(IDS[k], task.task_id, 0, attempt, False, INPUT_UNAVAILABLE)
    machine.on_decided([miss_entry.entry()], 0)
    machine.take_outbox()
    lost_vote = sign_expire(IDS[4], task.task_id, WHY_INPUT_LOST).entry()

    def proposed_until(now_ms: int) -> list[Entry]:
        machine.tick(now_ms)
        return [o.data["entry"] for o in machine.take_outbox() if o.kind == "propose"]

    assert lost_vote not in proposed_until(task.deadline_ms - 1)  # not yet a whole deadline
    machine.on_decided([advert(0, caps(), seq=2).entry()], task.deadline_ms)  # back, seq + 1
    assert lost_vote not in proposed_until(3 * task.deadline_ms)
    machine.on_decided([WorkerDown(IDS[0].peer_id, 0, 2).entry()], 3 * task.deadline_ms)
    # Down again, for longer than a deadline (sweeps every timeout_retry_ms): now it votes.
    later = [e for n in range(4, 9) for e in proposed_until(n * task.deadline_ms)]
    assert lost_vote in later


def test_attempts_run_out_with_the_missing_input_in_the_reason() -> None:
    board = board_with([caps(), caps(), caps()], TasksConfig(attempts_max=2))
    task = spec()
    board.apply(task)
    for _ in range(2):  # the submitter is up: misses retry, then the task fails, saying why
        miss(board, task.task_id)
    record = board.tasks[task.task_id]
    assert record.status == FAILED and "found no input" in record.reason, record.reason
    other = spec(1)
    board.apply(other)
    for _ in range(2):
        miss(board, other.task_id, b"trainer error")
    assert "input" not in board.tasks[other.task_id].reason
    board.check_invariants()


def test_tables_are_bounded() -> None:
    board = board_with([caps()], TasksConfig(open_tasks_max=3, finished_retained_max=2,
                                             worker_queue_max=2))  # fmt: skip
    for n in range(6):
        board.apply(spec(n))
    statuses = Counter(r.status for r in board.tasks.values())
    assert len(board.open) == 3 and statuses[REJECTED] == 2 and len(board.finished) == 2
    assert board.queue_lengths()[IDS[0].peer_id] == 2 and len(board.waiting) == 1
    board.check_invariants()


def test_genesis_committee_is_the_same_for_any_member_order() -> None:
    roles = {i.peer_id: ("trainer", "validator") for i in IDS[:6]}
    a = tasks_genesis("m", roles)
    b = tasks_genesis("m", dict(reversed(list(roles.items()))))
    assert a == b and len(a.committee) == 4 and a.genesis_id == b.genesis_id


# -- votes: timeouts and expiry need f + 1 committee members ---------------------------------


def test_a_byzantine_members_early_timeouts_move_nothing_until_f_plus_1_agree() -> None:
    board = board_with([caps(), caps(), caps()])
    task = spec()
    board.apply(task)
    slot = board.tasks[task.task_id].slots[0]
    first = slot.worker
    for _ in range(3):  # one faulty member, again and again: counts once
        board.apply(sign_timeout(IDS[4], task.task_id, 0, 1))
    board.apply(sign_timeout(IDS[0], task.task_id, 0, 1))  # a worker, not a member
    assert (slot.worker, slot.attempt) == (first, 1)
    assert board.counters["vote_not_member"] == 1
    board.apply(sign_timeout(IDS[5], task.task_id, 0, 1))  # a second member: f + 1 = 2
    assert slot.attempt == 2 and slot.worker not in (None, first)
    board.apply(sign_timeout(IDS[6], task.task_id, 0, 1))  # an older attempt's vote
    board.apply(sign_timeout(IDS[4], task.task_id, 0, 2))
    assert slot.attempt == 2 and board.counters["timeout_stale"] == 1
    board.check_invariants()


def test_a_watchdog_votes_once_its_deadline_passed_and_stops_when_counted() -> None:
    machine = TasksMachine(IDS[4], verify_from_peer_id, random.Random(1),
                           TasksConfig(timeout_retry_ms=100), watchdog=True,
                           committee=COMMITTEE)  # fmt: skip
    task = spec()
    machine.on_decided([advert(0, caps()).entry(), task.entry()], 0)
    machine.take_outbox()
    machine.tick(task.deadline_ms - 1)
    assert machine.take_outbox() == []
    machine.tick(task.deadline_ms)
    vote = sign_timeout(IDS[4], task.task_id, 0, 1).entry()
    assert [e.data["entry"] for e in machine.take_outbox()] == [vote]
    machine.tick(task.deadline_ms + 100)  # not decided yet: proposed again
    assert [e.data["entry"] for e in machine.take_outbox()] == [vote]
    machine.on_decided([vote], task.deadline_ms + 150)
    machine.tick(task.deadline_ms + 200)  # counted: no more proposals
    assert [e for e in machine.take_outbox() if e.data.get("entry") == vote] == []


def test_too_few_capable_workers_end_unschedulable_with_f_plus_1_votes() -> None:
    board = board_with([caps(), caps()])
    gpu = spec(1, requirements=Requirements(accelerator="gpu"))
    pair = spec(2, replicas=3)  # three distinct workers, two exist
    for task in (gpu, pair):
        board.apply(task)
        record = board.tasks[task.task_id]
        assert board.unschedulable(record) is not None
        board.apply(sign_expire(IDS[4], task.task_id, WHY_UNSCHEDULABLE))
        assert record.status == "open"
        board.apply(sign_expire(IDS[5], task.task_id, WHY_UNSCHEDULABLE))
        assert record.status == UNSCHEDULABLE and "capable" in record.reason
    assert not board.waiting and not board.queue_lengths()
    board.check_invariants()


def test_unschedulable_votes_are_moot_once_a_capable_worker_came() -> None:
    board = board_with([caps()])
    task = spec(3, requirements=Requirements(accelerator="gpu"))
    board.apply(task)
    board.apply(sign_expire(IDS[4], task.task_id, WHY_UNSCHEDULABLE))
    board.apply(advert(5, caps(accelerators=("gpu",))))
    board.apply(sign_expire(IDS[5], task.task_id, WHY_UNSCHEDULABLE))  # re-checked: schedulable
    record = board.tasks[task.task_id]
    assert record.status == "open" and record.slots[0].worker == IDS[5].peer_id
    assert board.counters["expire_moot"] == 1 and not record.expire_votes
    board.check_invariants()


def test_a_task_open_past_its_deadline_expires_and_late_votes_change_nothing() -> None:
    board = board_with([caps()])
    task = spec(4)
    board.apply(task)
    board.apply(sign_expire(IDS[6], task.task_id, WHY_DEADLINE))
    board.apply(sign_expire(IDS[6], task.task_id, WHY_DEADLINE))  # once per member
    assert board.tasks[task.task_id].status == "open"
    board.apply(sign_expire(IDS[7], task.task_id, WHY_DEADLINE))
    assert board.tasks[task.task_id].status == EXPIRED
    assert board.apply(output_of(board, task.task_id, 0, 0)) == []  # too late: no result
    board.apply(sign_expire(IDS[4], task.task_id, WHY_DEADLINE))
    assert board.counters["expire_stale"] == 1
    board.check_invariants()


def test_a_watchdog_votes_expiry_after_one_deadline_unschedulable_or_the_task_deadline() -> None:
    config = TasksConfig(timeout_retry_ms=100, task_open_ms_min=5_000)
    machine = TasksMachine(IDS[4], verify_from_peer_id, random.Random(1), config,
                           watchdog=True, committee=COMMITTEE)  # fmt: skip
    stuck = spec(5, requirements=Requirements(accelerator="gpu"))  # deadline_ms 1000
    slow = spec(6)
    machine.on_decided([advert(0, caps()).entry(), stuck.entry(), slow.entry()], 0)
    machine.take_outbox()
    proposed: list[Entry] = []
    for now in range(100, 6_000, 100):
        if machine.next_deadline() is not None and machine.next_deadline() <= now:
            machine.tick(now)
        proposed += [e.data["entry"] for e in machine.take_outbox() if e.kind == "propose"]
        if now == 900:
            assert sign_expire(IDS[4], stuck.task_id, WHY_UNSCHEDULABLE).entry() not in proposed
    assert sign_expire(IDS[4], stuck.task_id, WHY_UNSCHEDULABLE).entry() in proposed
    assert sign_expire(IDS[4], slow.task_id, WHY_DEADLINE).entry() in proposed
    machine.check_invariants()


def test_input_holders_come_in_a_deterministic_order() -> None:
    board = board_with([caps(), caps(), caps()])
    first = spec(7)
    board.apply(first)
    ran_first = holder(board, first.task_id)
    board.apply(output_of(board, first.task_id, 0, ran_first))
    again = sign_submit(IDS[1], replace(first, nonce=b"\x01" * 16))  # same input, other task
    board.apply(again)
    was = holder(board, again.task_id)
    timeout(board, again.task_id, 0, 1)
    now = holder(board, again.task_id)
    holders = board.input_holders(again.task_id)
    expected = [IDS[1].peer_id, IDS[was].peer_id, IDS[now].peer_id, IDS[ran_first].peer_id]
    assert holders == list(dict.fromkeys(expected))
    assert board.input_holders(b"x" * 32) == []


# -- restart: the board from the decided log ----------------------------------------------


def test_replay_rebuilds_the_board_and_reruns_only_unanswered_own_slots() -> None:
    worker = caps("server", 65536, 32)
    batches = [[advert(0, worker).entry(), advert(1, caps()).entry()]]
    tasks = [spec(10 + n) for n in range(4)]
    batches.append([t.entry() for t in tasks])
    live = TasksMachine(IDS[0], verify_from_peer_id, random.Random(2), committee=COMMITTEE)
    for batch in batches:
        live.on_decided(batch, 0)
    runs = [e.data for e in live.take_outbox() if e.kind == "run"]
    answered = [sign_result(IDS[0], r["task_id"], r["slot"], r["attempt"], True, b"\x07")
                for r in runs[:-1]]  # fmt: skip
    batches.append([r.entry() for r in answered])
    live.on_decided(batches[-1], 0)

    restarted = TasksMachine(IDS[0], verify_from_peer_id, random.Random(3), committee=COMMITTEE)
    assert restarted.replay(batches, 50_000) == sum(len(b) for b in batches)
    events = restarted.take_outbox()
    assert [e.kind for e in events] == ["run"]  # not re-run: the answered ones
    assert (events[0].data["task_id"], events[0].data["slot"]) == (runs[-1]["task_id"], 0)
    for task in tasks:
        a, b = live.board.tasks[task.task_id], restarted.board.tasks[task.task_id]
        assert (a.status, [s.worker for s in a.slots]) == (b.status, [s.worker for s in b.slots])
    assert restarted.board.results_by_worker == live.board.results_by_worker
    assert restarted.next_deadline() == 50_000 + tasks[0].deadline_ms
    restarted.check_invariants()
