"""Task entries (decided through PBFT), with their signed bytes.

Entries are opaque `Entry(kind, body)` to consensus; the body is deterministic
CBOR (cbor_pure) of a small map. Signed parts use domain-separated byte layouts.

    task_submit  {kind, input, input_bytes, model, req, deadline_ms, replicas,
                  verifiable, submitter, nonce, sig}      signed by the submitter
    task_worker  {advert}                                 the worker's signed capability advert
    task_result  {task, slot, attempt, worker, ok, output, sig}   signed by the worker
    task_timeout {task, slot, attempt, voter, sig}        one committee member's vote
    task_expire  {task, why, voter, sig}                  one committee member's vote
    task_down    {worker, inc, seq}                       deterministic: unsigned

A task's id is the sha-256 of its submit payload (everything but the signature),
so the same submission proposed twice is one task, and a result names exactly
the task, slot and attempt it answers. Timeout and expiry votes are signed by
the committee member that casts them: the board acts only on f + 1 distinct
members' votes, so one faulty member cannot move or end work on its own.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from agentmesh.core.consensus import Entry
from agentmesh.core.consensus.messages import VerifyFn
from agentmesh.core.entry_fields import DIGEST_BYTES
from agentmesh.core.entry_fields import EntryError as EntryError
from agentmesh.core.entry_fields import digest as _digest
from agentmesh.core.entry_fields import items as _items
from agentmesh.core.entry_fields import peer as _peer
from agentmesh.core.entry_fields import sha256 as sha256
from agentmesh.core.entry_fields import signature as _signature
from agentmesh.core.entry_fields import uint as _uint
from agentmesh.core.membership.capabilities import (
    DEVICE_CLASSES,
    TRAINER_RUNTIMES,
    AdvertError,
    CapabilityAdvert,
)
from agentmesh.core.node import Signer
from agentmesh.core.wire import cbor_pure

from .config import TASK_KINDS, TasksError

KIND_SUBMIT = "task_submit"
KIND_WORKER = "task_worker"
KIND_RESULT = "task_result"
KIND_TIMEOUT = "task_timeout"
KIND_DOWN = "task_down"
KIND_EXPIRE = "task_expire"
ENTRY_KINDS = frozenset(
    (KIND_SUBMIT, KIND_WORKER, KIND_RESULT, KIND_TIMEOUT, KIND_DOWN, KIND_EXPIRE)
)
WHY_UNSCHEDULABLE = "unschedulable"  # fewer capable workers than the task needs
WHY_DEADLINE = "deadline"  # open past its whole-task deadline
WHY_INPUT_LOST = "input_lost"  # a worker found no input; every agent that read it is down
EXPIRE_REASONS = (WHY_UNSCHEDULABLE, WHY_DEADLINE, WHY_INPUT_LOST)
# An error result's output when the worker asked every holder of the input and got
# nothing; with the submitter and every other known reader down, the task is lost.
INPUT_UNAVAILABLE = b"input unavailable"

NONCE_BYTES = 16
NAME_CHARS_MAX = 24
UINT32_MAX = 2**32 - 1
UINT63_MAX = 2**63 - 1
SLOTS_MAX = 64
OUTPUT_BYTES_MAX = 64 * 1024  # wire bound; TasksConfig.output_bytes_max is the policy

_DOMAIN_SUBMIT = b"agentmesh/task-submit/1\x00"
_DOMAIN_RESULT = b"agentmesh/task-result/1\x00"
_DOMAIN_TIMEOUT = b"agentmesh/task-timeout/1\x00"
_DOMAIN_EXPIRE = b"agentmesh/task-expire/1\x00"


@dataclass(frozen=True, slots=True)
class Requirements:
    """What a worker must offer: RAM (total, MB), an accelerator, a runtime, a device class."""

    ram_mb_min: int = 0
    accelerator: str | None = None
    runtime: str | None = None
    device_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if type(self.ram_mb_min) is not int or not 0 <= self.ram_mb_min <= UINT32_MAX:
            raise TasksError("ram_mb_min must be an integer in 0..2**32-1")
        if self.accelerator is not None and not 0 < len(self.accelerator) <= NAME_CHARS_MAX:
            raise TasksError("accelerator names have 1..24 characters")
        if self.runtime is not None and self.runtime not in TRAINER_RUNTIMES:
            raise TasksError(f"runtime must be one of {TRAINER_RUNTIMES}")
        classes = self.device_classes
        if len(set(classes)) != len(classes) or not set(classes) <= set(DEVICE_CLASSES):
            raise TasksError(f"device classes must be distinct names from {DEVICE_CLASSES}")

    def to_wire(self) -> dict[str, Any]:
        return {"ram_mb": self.ram_mb_min, "acc": self.accelerator or "",
                "rt": self.runtime or "", "classes": list(self.device_classes)}  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {"ram_mb_min": self.ram_mb_min, "accelerator": self.accelerator,
                "runtime": self.runtime, "device_classes": list(self.device_classes)}  # fmt: skip

    @classmethod
    def from_wire(cls, value: Any) -> Requirements:
        body = _map(value, {"ram_mb", "acc", "rt", "classes"})
        classes = tuple(_text(c, NAME_CHARS_MAX) for c in _items(body["classes"], 4))
        try:
            return cls(_uint(body["ram_mb"], UINT32_MAX),
                       _text(body["acc"], NAME_CHARS_MAX) or None,
                       _text(body["rt"], NAME_CHARS_MAX) or None, classes)  # fmt: skip
        except TasksError as error:
            raise EntryError(str(error)) from None


@dataclass(frozen=True, slots=True)
class TaskSpec:
    """One submitted task: a built-in kind run on an input blob named by its sha-256."""

    kind: str
    input: bytes  # sha-256 of the input blob
    input_bytes: int
    model: bytes  # sha-256 of the global model the task runs with (pinned at submission)
    requirements: Requirements
    deadline_ms: int  # per attempt, from the assignment being decided
    replicas: int
    verifiable: bool  # done only when `replicas` results carry one output digest
    submitter: str
    nonce: bytes
    signature: bytes = b""

    def fields(self) -> dict[str, Any]:
        return {"kind": self.kind, "input": self.input, "input_bytes": self.input_bytes,
                "model": self.model, "req": self.requirements.to_wire(),
                "deadline_ms": self.deadline_ms, "replicas": self.replicas,
                "verifiable": self.verifiable, "submitter": self.submitter,
                "nonce": self.nonce}  # fmt: skip

    def payload(self) -> bytes:
        return _DOMAIN_SUBMIT + cbor_pure.encode(self.fields())

    @property
    def task_id(self) -> bytes:
        return sha256(self.payload())

    def entry(self) -> Entry:
        return Entry(KIND_SUBMIT, cbor_pure.encode({**self.fields(), "sig": self.signature}))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "input": self.input.hex(), "input_bytes": self.input_bytes,
                "model": self.model.hex(), "requirements": self.requirements.to_json(),
                "deadline_ms": self.deadline_ms, "replicas": self.replicas,
                "verifiable": self.verifiable, "submitter": self.submitter}  # fmt: skip


def sign_submit(signer: Signer, spec: TaskSpec) -> TaskSpec:
    """`spec` from `signer` (its submitter field becomes the signer's id), signed."""
    unsigned = replace(spec, submitter=signer.peer_id, signature=b"")
    _check_spec(unsigned)
    return replace(unsigned, signature=signer.sign(unsigned.task_id))


def _check_spec(spec: TaskSpec) -> None:
    if spec.kind not in TASK_KINDS:
        raise TasksError(f"task kind must be one of {TASK_KINDS} (no arbitrary commands)")
    if len(spec.input) != DIGEST_BYTES or len(spec.model) != DIGEST_BYTES:
        raise TasksError("input and model are 32-byte sha-256 digests")
    if not 1 <= spec.replicas <= SLOTS_MAX or not 1 <= spec.deadline_ms <= UINT32_MAX:
        raise TasksError("replicas in 1..64 and deadline_ms in 1..2**32-1")
    if spec.verifiable and spec.kind != "infer":
        raise TasksError("only infer tasks are deterministic enough to be verifiable")
    if len(spec.nonce) != NONCE_BYTES or not 0 <= spec.input_bytes <= UINT32_MAX:
        raise TasksError("nonce of 16 bytes and input_bytes in 0..2**32-1")


@dataclass(frozen=True, slots=True)
class TaskResult:
    """A worker's signed answer for one slot and attempt of a task."""

    task: bytes
    slot: int
    attempt: int
    worker: str
    ok: bool
    output: bytes  # infer: one uint8 label per row; train: <f8 loss, <u4 examples
    signature: bytes = b""

    @property
    def digest(self) -> bytes:
        return sha256(self.output)

    def payload(self) -> bytes:
        return result_payload(self.task, self.slot, self.attempt, self.worker, self.ok,
                              self.digest)  # fmt: skip

    def entry(self) -> Entry:
        body = {"task": self.task, "slot": self.slot, "attempt": self.attempt,
                "worker": self.worker, "ok": self.ok, "output": self.output,
                "sig": self.signature}  # fmt: skip
        return Entry(KIND_RESULT, cbor_pure.encode(body))


def result_payload(
    task: bytes, slot: int, attempt: int, worker: str, ok: bool, digest: bytes
) -> bytes:
    return (_DOMAIN_RESULT + task + struct.pack(">IIB", slot, attempt, int(ok)) + digest
            + worker.encode())  # fmt: skip


def sign_result(
    signer: Signer, task: bytes, slot: int, attempt: int, ok: bool, output: bytes
) -> TaskResult:
    unsigned = TaskResult(task, slot, attempt, signer.peer_id, ok, output)
    return TaskResult(task, slot, attempt, signer.peer_id, ok, output,
                      signer.sign(unsigned.payload()))  # fmt: skip


@dataclass(frozen=True, slots=True)
class WorkerAdvert:
    """A worker offering itself for tasks, with its signed capability advert."""

    advert: CapabilityAdvert

    def entry(self) -> Entry:
        return Entry(KIND_WORKER, cbor_pure.encode({"advert": self.advert.to_wire()}))


@dataclass(frozen=True, slots=True)
class AttemptTimeout:
    """`voter` saw attempt `attempt` of `slot` get no result in time (a vote to reassign it)."""

    task: bytes
    slot: int
    attempt: int
    voter: str = ""
    signature: bytes = b""

    def payload(self) -> bytes:
        return (_DOMAIN_TIMEOUT + self.task + struct.pack(">II", self.slot, self.attempt)
                + self.voter.encode())  # fmt: skip

    def entry(self) -> Entry:
        body = {"task": self.task, "slot": self.slot, "attempt": self.attempt,
                "voter": self.voter, "sig": self.signature}  # fmt: skip
        return Entry(KIND_TIMEOUT, cbor_pure.encode(body))


def sign_timeout(signer: Signer, task: bytes, slot: int, attempt: int) -> AttemptTimeout:
    unsigned = AttemptTimeout(task, slot, attempt, signer.peer_id)
    return replace(unsigned, signature=signer.sign(unsigned.payload()))


@dataclass(frozen=True, slots=True)
class TaskExpire:
    """`voter` votes to end an open task: `why` is "unschedulable" or "deadline"."""

    task: bytes
    why: str
    voter: str = ""
    signature: bytes = b""

    def payload(self) -> bytes:
        return _DOMAIN_EXPIRE + self.task + self.why.encode() + b"\x00" + self.voter.encode()

    def entry(self) -> Entry:
        body = {"task": self.task, "why": self.why, "voter": self.voter, "sig": self.signature}
        return Entry(KIND_EXPIRE, cbor_pure.encode(body))


def sign_expire(signer: Signer, task: bytes, why: str) -> TaskExpire:
    if why not in EXPIRE_REASONS:
        raise TasksError(f"an expiry vote says one of {EXPIRE_REASONS}")
    unsigned = TaskExpire(task, why, signer.peer_id)
    return replace(unsigned, signature=signer.sign(unsigned.payload()))


@dataclass(frozen=True, slots=True)
class WorkerDown:
    """The worker whose current advert is (inc, seq) left or died: take its slots back."""

    worker: str
    incarnation: int
    seq: int

    def entry(self) -> Entry:
        body = {"worker": self.worker, "inc": self.incarnation, "seq": self.seq}
        return Entry(KIND_DOWN, cbor_pure.encode(body))


TaskEntry = TaskSpec | WorkerAdvert | TaskResult | AttemptTimeout | WorkerDown | TaskExpire


# -- decoding (untrusted: a faulty replica may order any well-sized bytes) -------------


def decode_entry(entry: Entry) -> TaskEntry:
    """The task entry in `entry`; EntryError if its kind or body is malformed."""
    if entry.kind not in ENTRY_KINDS:
        raise EntryError(f"not a task entry: {entry.kind!r:.40}")
    try:
        body = cbor_pure.decode(entry.body)
    except cbor_pure.CBORError as error:
        raise EntryError(f"{entry.kind} body is not deterministic CBOR: {error}") from error
    return _DECODERS[entry.kind](body)


def _decode_submit(value: Any) -> TaskSpec:
    keys = {"kind", "input", "input_bytes", "model", "req", "deadline_ms", "replicas",
            "verifiable", "submitter", "nonce", "sig"}  # fmt: skip
    body = _map(value, keys)
    if type(body["verifiable"]) is not bool or type(body["nonce"]) is not bytes:
        raise EntryError("verifiable is a bool and nonce bytes")
    spec = TaskSpec(_text(body["kind"], NAME_CHARS_MAX), _digest(body["input"]),
                    _uint(body["input_bytes"], UINT32_MAX), _digest(body["model"]),
                    Requirements.from_wire(body["req"]), _uint(body["deadline_ms"], UINT32_MAX),
                    _uint(body["replicas"], SLOTS_MAX), body["verifiable"],
                    _peer(body["submitter"]), body["nonce"], _signature(body["sig"]))  # fmt: skip
    try:
        _check_spec(spec)
    except TasksError as error:
        raise EntryError(str(error)) from None
    return spec


def _decode_worker(value: Any) -> WorkerAdvert:
    body = _map(value, {"advert"})
    try:
        return WorkerAdvert(CapabilityAdvert.from_wire(body["advert"]))
    except (AdvertError, TypeError) as error:
        raise EntryError(f"bad advert: {error}") from None


def _decode_result(value: Any) -> TaskResult:
    body = _map(value, {"task", "slot", "attempt", "worker", "ok", "output", "sig"})
    output = body["output"]
    if type(body["ok"]) is not bool or type(output) is not bytes:
        raise EntryError("ok is a bool and output bytes")
    if len(output) > OUTPUT_BYTES_MAX:
        raise EntryError("output too large")
    return TaskResult(_digest(body["task"]), _uint(body["slot"], SLOTS_MAX),
                      _uint(body["attempt"], UINT32_MAX), _peer(body["worker"]), body["ok"],
                      output, _signature(body["sig"]))  # fmt: skip


def _decode_timeout(value: Any) -> AttemptTimeout:
    body = _map(value, {"task", "slot", "attempt", "voter", "sig"})
    return AttemptTimeout(_digest(body["task"]), _uint(body["slot"], SLOTS_MAX),
                          _uint(body["attempt"], UINT32_MAX), _peer(body["voter"]),
                          _signature(body["sig"]))  # fmt: skip


def _decode_expire(value: Any) -> TaskExpire:
    body = _map(value, {"task", "why", "voter", "sig"})
    if body["why"] not in EXPIRE_REASONS:
        raise EntryError(f"an expiry vote says one of {EXPIRE_REASONS}")
    return TaskExpire(_digest(body["task"]), body["why"], _peer(body["voter"]),
                      _signature(body["sig"]))  # fmt: skip


def _decode_down(value: Any) -> WorkerDown:
    body = _map(value, {"worker", "inc", "seq"})
    return WorkerDown(_peer(body["worker"]), _uint(body["inc"], UINT63_MAX),
                      _uint(body["seq"], UINT63_MAX))  # fmt: skip


_DECODERS: dict[str, Callable[[Any], TaskEntry]] = {
    KIND_SUBMIT: _decode_submit,
    KIND_WORKER: _decode_worker,
    KIND_RESULT: _decode_result,
    KIND_TIMEOUT: _decode_timeout,
    KIND_DOWN: _decode_down,
    KIND_EXPIRE: _decode_expire,
}


def verify_entry(entry: Entry, verify: VerifyFn) -> TaskEntry:
    """Decode and check the signature a task entry carries; EntryError otherwise."""
    decoded = decode_entry(entry)
    if isinstance(decoded, TaskSpec):
        ok = verify(decoded.submitter, decoded.task_id, decoded.signature)
    elif isinstance(decoded, TaskResult):
        ok = verify(decoded.worker, decoded.payload(), decoded.signature)
    elif isinstance(decoded, WorkerAdvert):
        advert = decoded.advert
        ok = verify(advert.peer_id, advert.signed_bytes(), advert.signature)
    elif isinstance(decoded, AttemptTimeout | TaskExpire):
        ok = verify(decoded.voter, decoded.payload(), decoded.signature)
    else:
        ok = True
    if not ok:
        raise EntryError(f"{entry.kind}: bad signature")
    return decoded


def entry_validator(verify: VerifyFn) -> Any:
    """`validate_entry` for the tasks Replica: only well-formed, well-signed task entries."""

    def validate(entry: Entry) -> bool:
        try:
            verify_entry(entry, verify)
        except EntryError:
            return False
        return True

    return validate


def _map(value: Any, expected: set[str]) -> dict[str, Any]:
    if type(value) is not dict or set(value) != expected:
        raise EntryError(f"expected a map with fields {sorted(expected)}")
    return value


def _text(value: Any, chars_max: int) -> str:
    if type(value) is not str or len(value) > chars_max:
        raise EntryError("expected a short text")
    return value
