"""Structural checks of untrusted messages: types, sizes and bounds, before any logic.

Each check returns False instead of raising, so a malformed message from a peer
is dropped and counted, never a traceback (docs/node-contract.md).
"""

from __future__ import annotations

from typing import Any

from .messages import (
    DIGEST_SIZE_BYTES,
    KIND_COMMIT,
    KIND_PREPARE,
    KIND_SIZE_MAX,
    PEER_ID_SIZE_MAX,
    POSITION_MAX,
    SIGNATURE_SIZE_BYTES_MAX,
    Checkpoint,
    CheckpointProof,
    CommitCertificate,
    Entry,
    NewView,
    PreparedProof,
    PrePrepare,
    Snapshot,
    ViewChange,
    Vote,
)


def position(value: Any) -> bool:
    return type(value) is int and 0 <= value <= POSITION_MAX


def digest(value: Any) -> bool:
    return type(value) is bytes and len(value) == DIGEST_SIZE_BYTES


def peer(value: Any) -> bool:
    return type(value) is str and 0 < len(value) <= PEER_ID_SIZE_MAX


def signature(value: Any) -> bool:
    return type(value) is bytes and 0 < len(value) <= SIGNATURE_SIZE_BYTES_MAX


def entry(value: Any, body_bytes_max: int) -> bool:
    return (
        type(value) is Entry
        and type(value.kind) is str
        and 0 < len(value.kind) <= KIND_SIZE_MAX
        and type(value.body) is bytes
        and len(value.body) <= body_bytes_max
    )


def batch(value: Any, entries_max: int, body_bytes_max: int) -> bool:
    return (
        type(value) is tuple
        and len(value) <= entries_max
        and all(entry(item, body_bytes_max) for item in value)
    )


def vote(value: Any) -> bool:
    return (
        type(value) is Vote
        and value.kind in (KIND_PREPARE, KIND_COMMIT)
        and position(value.epoch)
        and position(value.view)
        and position(value.seq)
        and digest(value.digest)
        and peer(value.sender)
        and signature(value.signature)
    )


def pre_prepare(value: Any, entries_max: int, body_bytes_max: int) -> bool:
    return (
        type(value) is PrePrepare
        and position(value.epoch)
        and position(value.view)
        and position(value.seq)
        and digest(value.digest)
        and batch(value.batch, entries_max, body_bytes_max)
        and peer(value.sender)
        and signature(value.signature)
    )


def checkpoint(value: Any) -> bool:
    return (
        type(value) is Checkpoint
        and position(value.epoch)
        and position(value.seq)
        and digest(value.state_digest)
        and peer(value.sender)
        and signature(value.signature)
    )


def checkpoint_proof(value: Any, committee_size: int) -> bool:
    return (
        type(value) is CheckpointProof
        and position(value.epoch)
        and position(value.seq)
        and digest(value.state_digest)
        and type(value.checkpoints) is tuple
        and len(value.checkpoints) <= committee_size
        and all(checkpoint(item) for item in value.checkpoints)
    )


def prepared_proof(value: Any, committee_size: int, entries_max: int, body_max: int) -> bool:
    return (
        type(value) is PreparedProof
        and pre_prepare(value.pre_prepare, entries_max, body_max)
        and type(value.prepares) is tuple
        and len(value.prepares) <= committee_size
        and all(vote(item) for item in value.prepares)
    )


def view_change(
    value: Any, committee_size: int, window: int, entries_max: int, body_max: int
) -> bool:
    return (
        type(value) is ViewChange
        and position(value.epoch)
        and position(value.new_view)
        and checkpoint_proof(value.checkpoint, committee_size)
        and type(value.prepared) is tuple
        and len(value.prepared) <= window
        and all(prepared_proof(p, committee_size, entries_max, body_max) for p in value.prepared)
        and peer(value.sender)
        and signature(value.signature)
    )


def new_view(value: Any, committee_size: int, window: int, entries_max: int, body_max: int) -> bool:
    return (
        type(value) is NewView
        and position(value.epoch)
        and position(value.view)
        and type(value.view_changes) is tuple
        and len(value.view_changes) <= committee_size
        and all(
            view_change(vc, committee_size, window, entries_max, body_max)
            for vc in value.view_changes
        )
        and type(value.pre_prepares) is tuple
        and len(value.pre_prepares) <= window
        and all(pre_prepare(pp, entries_max, body_max) for pp in value.pre_prepares)
        and peer(value.sender)
        and signature(value.signature)
    )


def certificate(value: Any, committee_size: int) -> bool:
    return (
        type(value) is CommitCertificate
        and position(value.epoch)
        and position(value.view)
        and position(value.seq)
        and digest(value.digest)
        and type(value.signatures) is tuple
        and len(value.signatures) <= committee_size
        and all(
            type(item) is tuple and len(item) == 2 and peer(item[0]) and signature(item[1])
            for item in value.signatures
        )
    )


def snapshot(value: Any, committee_size_max: int) -> bool:
    return (
        type(value) is Snapshot
        and position(value.epoch)
        and position(value.seq)
        and position(value.epoch_start_seq)
        and digest(value.chain_hash)
        and type(value.members) is tuple
        and 0 < len(value.members) <= committee_size_max
        and all(peer(member) for member in value.members)
    )
