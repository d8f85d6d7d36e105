"""Task entries, the assignment rule and the decided board: pure functions, hostile input."""

from __future__ import annotations

import hashlib
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
    FAILED,
    REJECTED,
    AttemptTimeout,
    EntryError,
    Requirements,
    TaskBoard,
    TasksConfig,
    TasksError,
    TaskSpec,
    WorkerAdvert,
    WorkerDown,
    choose_worker,
    decode_entry,
    eligible,
    entry_validator,
    sign_result,
    sign_submit,
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


def board_with(workers: list[Capabilities], config: TasksConfig | None = None) -> TaskBoard:
    board = TaskBoard(config)
    for k, c in enumerate(workers):
        board.apply(advert(k, c))
    return board


def output_of(board: TaskBoard, task: bytes, slot: int, k: int, output: bytes = b"\x01"):
    attempt = board.tasks[task].slots[slot].attempt
    return sign_result(IDS[k], task, slot, attempt, True, output)


def holder(board: TaskBoard, task: bytes, slot: int = 0) -> int:
    peer = board.tasks[task].slots[slot].worker
    return next(k for k, i in enumerate(IDS) if i.peer_id == peer)


# -- entries --------------------------------------------------------------------------


def test_every_entry_round_trips_and_carries_a_checked_signature() -> None:
    task = spec(replicas=2, verifiable=True, requirements=Requirements(512, "npu", "litert",
                                                                       ("edge",)))  # fmt: skip
    entries = [task, advert(1, caps()), sign_result(IDS[2], task.task_id, 1, 3, True, b"out"),
               AttemptTimeout(task.task_id, 0, 1), WorkerDown(IDS[1].peer_id, 0, 1)]  # fmt: skip
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
    board.apply(AttemptTimeout(task.task_id, 0, 1))  # reassigned to someone else
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
