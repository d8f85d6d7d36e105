"""Pure verification of PBFT certificates and the new-view computation (TOCS §4.4).

Everything here is a function of its arguments: any agent that knows the
committee of an epoch can check a commit certificate, and every backup recomputes
the primary's NEW-VIEW set O from the view-changes V it carries.
"""

from __future__ import annotations

from . import wellformed
from .committee import Committee
from .messages import (
    KIND_COMMIT,
    KIND_PREPARE,
    NULL_DIGEST,
    CheckpointProof,
    CommitCertificate,
    PreparedProof,
    PrePrepare,
    VerifyFn,
    ViewChange,
    batch_digest,
    signed_payload,
)


def verify_certificate(cert: object, committee: Committee, verify: VerifyFn) -> bool:
    """True iff `cert` holds quorum valid COMMIT signatures of distinct committee members."""
    if not wellformed.certificate(cert, committee.size):
        return False
    assert isinstance(cert, CommitCertificate)
    if cert.epoch != committee.epoch:
        return False
    payload = signed_payload(KIND_COMMIT, cert.epoch, cert.view, cert.seq, cert.digest)
    signers: set[str] = set()
    for signer, signature in cert.signatures:
        if signer in signers or signer not in committee:
            return False
        if not verify(signer, payload, signature):
            return False
        signers.add(signer)
    return len(signers) >= committee.quorum


def verify_checkpoint_proof(
    proof: CheckpointProof, committee: Committee, epoch_start_seq: int, verify: VerifyFn
) -> bool:
    """A stable checkpoint (TOCS §4.3): quorum matching signed CHECKPOINTs.

    The checkpoint at the start of an epoch needs no signatures: every replica
    computed it itself by executing the batch that ended the previous epoch.
    """
    if proof.epoch != committee.epoch:
        return False
    if proof.seq == epoch_start_seq and not proof.checkpoints:
        return True
    if proof.seq <= epoch_start_seq:
        return False
    signers: set[str] = set()
    for checkpoint in proof.checkpoints:
        if (
            checkpoint.epoch != proof.epoch
            or checkpoint.seq != proof.seq
            or checkpoint.state_digest != proof.state_digest
            or checkpoint.sender in signers
            or checkpoint.sender not in committee
            or not verify(checkpoint.sender, checkpoint.payload(), checkpoint.signature)
        ):
            return False
        signers.add(checkpoint.sender)
    return len(signers) >= committee.quorum


def verify_pre_prepare(pp: PrePrepare, committee: Committee, verify: VerifyFn) -> bool:
    """Signed by the primary of its view, and the digest matches the batch."""
    return (
        pp.epoch == committee.epoch
        and pp.sender == committee.primary(pp.view)
        and batch_digest(pp.batch) == pp.digest
        and verify(pp.sender, pp.payload(), pp.signature)
    )


def verify_prepared_proof(proof: PreparedProof, committee: Committee, verify: VerifyFn) -> bool:
    """A pre-prepare plus quorum-1 matching PREPAREs from distinct backups (TOCS §4.2)."""
    pp = proof.pre_prepare
    if not verify_pre_prepare(pp, committee, verify):
        return False
    primary = committee.primary(pp.view)
    signers: set[str] = set()
    for prepare in proof.prepares:
        if (
            prepare.kind != KIND_PREPARE
            or (prepare.epoch, prepare.view, prepare.seq) != (pp.epoch, pp.view, pp.seq)
            or prepare.digest != pp.digest
            or prepare.sender == primary
            or prepare.sender in signers
            or prepare.sender not in committee
            or not verify(prepare.sender, prepare.payload(), prepare.signature)
        ):
            return False
        signers.add(prepare.sender)
    return len(signers) >= committee.quorum - 1


def verify_view_change(
    vc: ViewChange, committee: Committee, epoch_start_seq: int, window: int, verify: VerifyFn
) -> bool:
    """Signature, stable checkpoint, and every prepared certificate above it (TOCS §4.4)."""
    if vc.epoch != committee.epoch or vc.sender not in committee:
        return False
    if not verify(vc.sender, vc.payload(), vc.signature):
        return False
    if not verify_checkpoint_proof(vc.checkpoint, committee, epoch_start_seq, verify):
        return False
    low = vc.checkpoint.seq
    seen: set[int] = set()
    for proof in vc.prepared:
        pp = proof.pre_prepare
        if not low < pp.seq <= low + window or pp.view >= vc.new_view or pp.seq in seen:
            return False
        if not verify_prepared_proof(proof, committee, verify):
            return False
        seen.add(pp.seq)
    return True


def new_view_plan(
    view_changes: tuple[ViewChange, ...],
) -> tuple[CheckpointProof, dict[int, PrePrepare | None]]:
    """min-s's checkpoint and, for each seq in (min-s, max-s], the batch to re-propose.

    TOCS §4.4: min-s is the latest stable checkpoint in V; max-s the highest
    prepared seq. For each seq, the prepared certificate with the highest view
    wins; a seq nobody prepared gets the null request (None here).
    """
    best_checkpoint = max(
        (vc.checkpoint for vc in view_changes), key=lambda proof: (proof.seq, proof.state_digest)
    )
    min_s = best_checkpoint.seq
    chosen: dict[int, PrePrepare] = {}
    for vc in view_changes:
        for proof in vc.prepared:
            pp = proof.pre_prepare
            if pp.seq <= min_s:
                continue
            current = chosen.get(pp.seq)
            if current is None or (pp.view, pp.digest) > (current.view, current.digest):
                chosen[pp.seq] = pp
    max_s = max(chosen, default=min_s)
    plan: dict[int, PrePrepare | None] = {
        seq: chosen.get(seq) for seq in range(min_s + 1, max_s + 1)
    }
    return best_checkpoint, plan


def plan_digest(pp: PrePrepare | None) -> bytes:
    return NULL_DIGEST if pp is None else pp.digest
