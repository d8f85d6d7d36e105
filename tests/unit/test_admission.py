"""Admission policies: psk challenge/response, Ed25519 invite tokens, open meshes."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmesh.core.admission import (
    INVITE_PREFIX,
    OPEN_WARNING,
    AdmissionRejected,
    InviteCredential,
    InvitePolicy,
    InviteToken,
    JoinContext,
    OpenCredential,
    OpenPolicy,
    PskCredential,
    PskPolicy,
    credential_from_wire,
    issue_invite,
    verify_invite,
)
from agentmesh.core.identity import Identity

ISSUER = Identity.from_seed(bytes(range(32)))
JOINER = Identity.from_seed(bytes([7] * 32))
OTHER = Identity.from_seed(bytes([9] * 32))
KEY = b"k" * 32


def context(joiner: str = JOINER.peer_id, now_ms: int = 1_000) -> JoinContext:
    return JoinContext(joiner, ISSUER.peer_id, b"a" * 16, b"b" * 16, now_ms)


def test_psk_proof_admits_and_is_bound_to_transcript() -> None:
    policy = PskPolicy("lab", KEY)
    credential = policy.credential(context())
    policy.admit(credential, context(), lambda peer: True)
    assert KEY not in credential.mac and len(credential.mac) == 32
    # the same proof for another joiner or other nonces does not verify
    with pytest.raises(AdmissionRejected) as caught:
        policy.admit(credential, context(joiner=OTHER.peer_id), lambda peer: True)
    assert caught.value.reason == "bad_mac"
    shifted = JoinContext(JOINER.peer_id, ISSUER.peer_id, b"c" * 16, b"b" * 16, 0)
    with pytest.raises(AdmissionRejected):
        policy.admit(credential, shifted, lambda peer: True)


def test_psk_wrong_key_and_wrong_credential_kind_are_rejected() -> None:
    good, bad = PskPolicy("lab", KEY), PskPolicy("lab", b"x" * 32)
    with pytest.raises(AdmissionRejected) as caught:
        good.admit(bad.credential(context()), context(), lambda peer: True)
    assert caught.value.reason == "bad_mac"
    with pytest.raises(AdmissionRejected) as caught:
        good.admit(OpenCredential(), context(), lambda peer: True)
    assert caught.value.reason == "wrong_policy"


def test_psk_verifier_proof_is_mutual() -> None:
    good, bad = PskPolicy("lab", KEY), PskPolicy("lab", b"x" * 32)
    good.check_verifier_proof(context(), good.verifier_proof(context()))
    with pytest.raises(AdmissionRejected):
        good.check_verifier_proof(context(), bad.verifier_proof(context()))
    # the joiner's MAC is not a valid verifier proof (roles are in the transcript)
    with pytest.raises(AdmissionRejected):
        good.check_verifier_proof(context(), good.credential(context()).mac)


def test_psk_key_size_is_bounded() -> None:
    with pytest.raises(ValueError):
        PskPolicy("lab", b"short")


def test_invite_round_trip_and_admission() -> None:
    token = issue_invite(ISSUER, "lab", expires_ms=5_000, invitee=JOINER.peer_id)
    text = token.encode()
    assert text.startswith(INVITE_PREFIX) and len(text) < 300
    assert InviteToken.decode(text) == token
    policy = InvitePolicy("lab")
    policy.admit(InviteCredential(text), context(), lambda peer: peer == ISSUER.peer_id)


@pytest.mark.parametrize(
    ("mesh", "invitee", "now_ms", "member", "reason"),
    [
        ("other", None, 1_000, True, "wrong_mesh"),
        ("lab", None, 5_000, True, "expired"),
        ("lab", OTHER.peer_id, 1_000, True, "wrong_invitee"),
        ("lab", None, 1_000, False, "issuer_not_member"),
    ],
)
def test_invite_rejections(
    mesh: str, invitee: str | None, now_ms: int, member: bool, reason: str
) -> None:
    token = issue_invite(ISSUER, mesh, expires_ms=5_000, invitee=invitee)
    with pytest.raises(AdmissionRejected) as caught:
        verify_invite(token, "lab", JOINER.peer_id, now_ms, is_member=lambda peer: member)
    assert caught.value.reason == reason


def test_invite_forged_signature_is_rejected() -> None:
    token = issue_invite(ISSUER, "lab", expires_ms=5_000)
    forged = InviteToken(token.mesh, token.issuer, 9_999_999, None, token.signature)
    with pytest.raises(AdmissionRejected) as caught:
        verify_invite(forged, "lab", JOINER.peer_id, 1_000)
    assert caught.value.reason == "bad_signature"


def test_invite_policy_without_token_cannot_prove() -> None:
    with pytest.raises(AdmissionRejected) as caught:
        InvitePolicy("lab").credential(context())
    assert caught.value.reason == "no_credential"


def test_open_policy_warns_loudly_and_admits() -> None:
    policy = OpenPolicy("lab")
    assert policy.warning == OPEN_WARNING and "WARNING" in policy.warning
    policy.admit(OpenCredential(), context(), lambda peer: False)
    assert PskPolicy("lab", KEY).warning is None


def test_credential_wire_round_trip() -> None:
    for credential in (PskCredential(b"m" * 32), InviteCredential("aminv1.x"), OpenCredential()):
        assert credential_from_wire(credential.to_wire()) == credential


@given(st.text(max_size=500))
def test_invite_decode_never_crashes(text: str) -> None:
    try:
        InviteToken.decode(INVITE_PREFIX + text)
    except AdmissionRejected as rejection:
        assert rejection.reason == "malformed" or rejection.reason == "wrong_mesh"


@given(st.dictionaries(st.text(max_size=6), st.one_of(st.binary(max_size=40), st.text(max_size=8))))
def test_credential_from_wire_never_crashes(obj: dict[str, object]) -> None:
    try:
        credential_from_wire(obj)
    except AdmissionRejected as rejection:
        assert rejection.reason == "malformed"
