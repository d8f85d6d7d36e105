"""PBFT messages, their digests and the exact bytes each one signs.

Messages are small frozen objects (the host turns them into signed CBOR
envelopes on the wire). Every field of a message that arrives from a peer is
untrusted: `well_formed` checks types and bounds before any other code looks
at it. Signed payloads are domain-separated and fixed-layout (struct), so the
same bytes come out on every interpreter (Castro & Liskov TOCS 2002 §4.1: all
messages are signed by their sender; we use signatures throughout, the OSDI'99
variant, so certificates are transferable).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable
from dataclasses import dataclass

DIGEST_SIZE_BYTES = 32
SIGNATURE_SIZE_BYTES_MAX = 128
POSITION_MAX = 2**63 - 1  # view, seq and epoch all fit an int64
KIND_SIZE_MAX = 32
PEER_ID_SIZE_MAX = 64

_DOMAIN = b"agentmesh/pbft/1\x00"
_POSITION = struct.Struct(">QQQ")

# Kinds of signed payloads (one byte string each, never reused).
KIND_PRE_PREPARE = b"PP"
KIND_PREPARE = b"PR"
KIND_COMMIT = b"CM"
KIND_CHECKPOINT = b"CP"
KIND_VIEW_CHANGE = b"VC"
KIND_NEW_VIEW = b"NV"

VerifyFn = Callable[[str, bytes, bytes], bool]


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def signed_payload(kind: bytes, epoch: int, view: int, seq: int, digest: bytes) -> bytes:
    """The bytes a replica signs for one vote-like message."""
    return _DOMAIN + kind + _POSITION.pack(epoch, view, seq) + digest


@dataclass(frozen=True, slots=True)
class Entry:
    """One opaque, typed log entry (a round result, a membership change, a task)."""

    kind: str
    body: bytes

    def entry_id(self) -> bytes:
        kind = self.kind.encode()
        return sha256(len(kind).to_bytes(2, "big") + kind + self.body)


def batch_digest(batch: tuple[Entry, ...]) -> bytes:
    """Digest of an ordered batch; the empty batch is the null request (TOCS §4.4)."""
    hasher = hashlib.sha256(b"batch")
    for entry in batch:
        hasher.update(entry.entry_id())
    return hasher.digest()


NULL_DIGEST = batch_digest(())


@dataclass(frozen=True, slots=True)
class Request:
    """A client entry forwarded to the replicas (unsigned: entries carry their own proof)."""

    entry: Entry


@dataclass(frozen=True, slots=True)
class Vote:
    """PREPARE or COMMIT for (epoch, view, seq, digest), signed by `sender` (TOCS §4.2)."""

    kind: bytes
    epoch: int
    view: int
    seq: int
    digest: bytes
    sender: str
    signature: bytes

    def payload(self) -> bytes:
        return signed_payload(self.kind, self.epoch, self.view, self.seq, self.digest)


@dataclass(frozen=True, slots=True)
class PrePrepare:
    """The primary's assignment of `seq` to a batch in `view` (TOCS §4.2)."""

    epoch: int
    view: int
    seq: int
    digest: bytes
    batch: tuple[Entry, ...]
    sender: str
    signature: bytes

    def payload(self) -> bytes:
        return signed_payload(KIND_PRE_PREPARE, self.epoch, self.view, self.seq, self.digest)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A replica's claim of its state digest after executing `seq` (TOCS §4.3)."""

    epoch: int
    seq: int
    state_digest: bytes
    sender: str
    signature: bytes

    def payload(self) -> bytes:
        return signed_payload(KIND_CHECKPOINT, self.epoch, 0, self.seq, self.state_digest)


@dataclass(frozen=True, slots=True)
class PreparedProof:
    """A prepared certificate: the pre-prepare and quorum-1 matching prepares (TOCS §4.2)."""

    pre_prepare: PrePrepare
    prepares: tuple[Vote, ...]


@dataclass(frozen=True, slots=True)
class CheckpointProof:
    """A stable checkpoint: quorum matching CHECKPOINT messages (empty at an epoch start)."""

    epoch: int
    seq: int
    state_digest: bytes
    checkpoints: tuple[Checkpoint, ...]


@dataclass(frozen=True, slots=True)
class ViewChange:
    """VIEW-CHANGE to `new_view` with the stable checkpoint C and prepared set P (TOCS §4.4)."""

    epoch: int
    new_view: int
    checkpoint: CheckpointProof
    prepared: tuple[PreparedProof, ...]
    sender: str
    signature: bytes

    def content_digest(self) -> bytes:
        hasher = hashlib.sha256(b"vc")
        hasher.update(_POSITION.pack(self.epoch, self.new_view, self.checkpoint.seq))
        hasher.update(self.checkpoint.state_digest)
        for proof in self.prepared:
            pp = proof.pre_prepare
            hasher.update(_POSITION.pack(pp.epoch, pp.view, pp.seq) + pp.digest)
        return hasher.digest()

    def payload(self) -> bytes:
        return signed_payload(KIND_VIEW_CHANGE, self.epoch, self.new_view, 0, self.content_digest())


@dataclass(frozen=True, slots=True)
class NewView:
    """NEW-VIEW: the quorum of view-changes V and the pre-prepares O (TOCS §4.4)."""

    epoch: int
    view: int
    view_changes: tuple[ViewChange, ...]
    pre_prepares: tuple[PrePrepare, ...]
    sender: str
    signature: bytes

    def content_digest(self) -> bytes:
        hasher = hashlib.sha256(b"nv")
        for vc in self.view_changes:
            hasher.update(sha256(vc.sender.encode()) + vc.content_digest())
        for pp in self.pre_prepares:
            hasher.update(_POSITION.pack(pp.epoch, pp.view, pp.seq) + pp.digest)
        return hasher.digest()

    def payload(self) -> bytes:
        return signed_payload(KIND_NEW_VIEW, self.epoch, self.view, 0, self.content_digest())


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """quorum signed COMMITs for one (epoch, view, seq, digest): proof a batch is decided."""

    epoch: int
    view: int
    seq: int
    digest: bytes
    signatures: tuple[tuple[str, bytes], ...]  # (signer peer id, signature), distinct signers


@dataclass(frozen=True, slots=True)
class CertifiedBatch:
    """A decided batch with the certificate that proves it (state transfer, observers)."""

    batch: tuple[Entry, ...]
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The consensus-level state at a stable checkpoint (the host snapshots its own state)."""

    epoch: int
    seq: int
    chain_hash: bytes
    members: tuple[str, ...]
    epoch_start_seq: int


@dataclass(frozen=True, slots=True)
class FetchState:
    """Ask a replica for certified batches from `from_seq` on (state transfer, TOCS §5.3)."""

    epoch: int
    from_seq: int


@dataclass(frozen=True, slots=True)
class StateReply:
    """Certified batches, and a checkpoint + snapshot when the gap reaches past them."""

    batches: tuple[CertifiedBatch, ...]
    checkpoint: CheckpointProof | None
    snapshot: Snapshot | None
    new_view: NewView | None


def state_digest(snapshot: Snapshot) -> bytes:
    """The digest replicas sign in CHECKPOINT messages."""
    hasher = hashlib.sha256(b"state")
    hasher.update(_POSITION.pack(snapshot.epoch, snapshot.seq, snapshot.epoch_start_seq))
    hasher.update(snapshot.chain_hash)
    for member in snapshot.members:
        hasher.update(sha256(member.encode()))
    return hasher.digest()


def chain_next(chain_hash: bytes, seq: int, digest: bytes) -> bytes:
    """The hash chain over decided batches: H(previous || seq || batch digest)."""
    return sha256(chain_hash + seq.to_bytes(8, "big") + digest)


GENESIS_CHAIN = sha256(b"agentmesh/pbft/genesis")
