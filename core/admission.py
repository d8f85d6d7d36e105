"""Who may join a mesh: admission policies with no central authority (pure).

Every mesh has a name and one policy:

- `psk`: every member holds a mesh key. A joiner proves it with
  HMAC-SHA256(key, transcript) where the transcript binds the mesh name, both
  peer ids and a fresh nonce from each side (a challenge/response, so the key
  and any reusable proof never cross the wire). The verifier answers with its
  own MAC over the same transcript in the other direction, so the proof is
  mutual.
- `invite`: an existing member signs (Ed25519) a token that binds the mesh name,
  an absolute expiry (ms) and optionally the invitee's peer id. Any member can
  verify it from the issuer's peer id alone (the public key is inlined in it).
  `InviteToken.encode()` is the compact string `agent invite` prints.
- `open`: anyone may join. For local experiments only; the policy carries a
  loud `warning` the host must show.

Peer ids on the channel are authenticated by the transport (QUIC + signed
envelopes), so binding the peer ids into transcripts and tokens is what stops a
proof or an invitee-bound token from being replayed by somebody else.
Everything here raises `AdmissionRejected` (with a stable `.reason`) for a bad
credential: a peer's bad credential is data, never a crash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import cbor2

from agentmesh.core.identity import is_peer_id, verify_from_peer_id
from agentmesh.core.node import Signer

MESH_NAME_CHARS_MAX: Final = 64
PSK_KEY_BYTES_MIN: Final = 16
PSK_KEY_BYTES_MAX: Final = 64
NONCE_BYTES: Final = 16
MAC_BYTES: Final = 32
SIGNATURE_BYTES: Final = 64
INVITE_TEXT_CHARS_MAX: Final = 400
INVITE_PREFIX: Final = "aminv1."

OPEN_WARNING: Final = (
    "WARNING: mesh admission policy is OPEN: any peer that can reach this node may join, "
    "read the membership and take roles. Use it for local experiments only; use a mesh "
    "key (psk) or invite tokens for anything else."
)

VerifyFn = Callable[[str, bytes, bytes], bool]
"""verify(peer_id, data, signature) -> bool, never raising."""


class AdmissionRejected(Exception):
    """A credential that does not admit the peer; `.reason` is a stable short code."""

    REASONS: Final = frozenset(
        {
            "malformed",
            "wrong_mesh",
            "wrong_policy",
            "bad_mac",
            "bad_signature",
            "expired",
            "wrong_invitee",
            "issuer_not_member",
            "no_credential",
        }
    )

    def __init__(self, reason: str, message: str) -> None:
        assert reason in self.REASONS, reason
        super().__init__(f"{reason}: {message}")
        self.reason = reason


def check_mesh_name(name: object) -> str:
    """A mesh name: 1..64 printable ASCII characters without spaces."""
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MESH_NAME_CHARS_MAX
        or not all("!" <= char <= "~" for char in name)
    ):
        raise AdmissionRejected("wrong_mesh", "mesh name must be 1..64 printable ASCII chars")
    return name


# --- credentials (what a joiner presents) -------------------------------------------


@dataclass(frozen=True, slots=True)
class PskCredential:
    """HMAC-SHA256 over the join transcript under the mesh key."""

    mac: bytes

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "psk", "mac": self.mac}


@dataclass(frozen=True, slots=True)
class InviteCredential:
    """An invite token in its compact string form."""

    token: str

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "invite", "token": self.token}


@dataclass(frozen=True, slots=True)
class OpenCredential:
    """No proof at all (open meshes only)."""

    def to_wire(self) -> dict[str, Any]:
        return {"kind": "open"}


Credential = PskCredential | InviteCredential | OpenCredential


def credential_from_wire(obj: object) -> Credential:
    """Parse a credential's wire form; raises AdmissionRejected('malformed')."""
    if not isinstance(obj, dict) or not all(isinstance(key, str) for key in obj):
        raise AdmissionRejected("malformed", "credential must be a map with text keys")
    kind = obj.get("kind")
    if kind == "psk" and set(obj) == {"kind", "mac"}:
        mac = obj["mac"]
        if isinstance(mac, bytes) and len(mac) == MAC_BYTES:
            return PskCredential(mac)
    elif kind == "invite" and set(obj) == {"kind", "token"}:
        token = obj["token"]
        if isinstance(token, str) and 0 < len(token) <= INVITE_TEXT_CHARS_MAX:
            return InviteCredential(token)
    elif kind == "open" and set(obj) == {"kind"}:
        return OpenCredential()
    raise AdmissionRejected("malformed", f"not a credential: kind={kind!r}")


def join_transcript(
    mesh: str, joiner: str, verifier: str, joiner_nonce: bytes, verifier_nonce: bytes, role: str
) -> bytes:
    """The bytes both sides MAC: deterministic CBOR of every value the proof binds."""
    assert role in ("joiner", "verifier")
    return cbor2.dumps(
        ["agentmesh-join-v1", role, mesh, joiner, verifier, joiner_nonce, verifier_nonce],
        canonical=True,
    )


# --- invite tokens --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InviteToken:
    """A member's signed permission to join `mesh` until `expires_ms` (absolute)."""

    mesh: str
    issuer: str
    expires_ms: int
    invitee: str | None
    signature: bytes

    def signed_bytes(self) -> bytes:
        return invite_signed_bytes(self.mesh, self.issuer, self.expires_ms, self.invitee)

    def encode(self) -> str:
        """Compact URL-safe string: `aminv1.` + base64url(CBOR list), no padding."""
        body = [self.mesh, self.issuer, self.expires_ms, self.invitee or "", self.signature]
        raw = cbor2.dumps(body, canonical=True)
        return INVITE_PREFIX + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: object) -> InviteToken:
        """Parse (not verify) a token string; raises AdmissionRejected('malformed')."""
        if not isinstance(text, str) or not text.startswith(INVITE_PREFIX):
            raise AdmissionRejected("malformed", "invite token must start with 'aminv1.'")
        if len(text) > INVITE_TEXT_CHARS_MAX:
            raise AdmissionRejected("malformed", "invite token too long")
        body = text[len(INVITE_PREFIX) :]
        try:
            raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
            items = cbor2.loads(raw)
        except (binascii.Error, ValueError, cbor2.CBORDecodeError) as error:
            raise AdmissionRejected("malformed", f"invite token does not decode: {error}") from None
        if not isinstance(items, list) or len(items) != 5:
            raise AdmissionRejected("malformed", "invite token must hold 5 fields")
        mesh, issuer, expires_ms, invitee, signature = items
        check_mesh_name(mesh)
        valid = (
            is_peer_id(issuer)
            and isinstance(expires_ms, int)
            and not isinstance(expires_ms, bool)
            and 0 <= expires_ms < 2**63
            and (invitee == "" or is_peer_id(invitee))
            and isinstance(signature, bytes)
            and len(signature) == SIGNATURE_BYTES
        )
        if not valid:
            raise AdmissionRejected("malformed", "invite token has a field of the wrong type")
        return cls(mesh, issuer, expires_ms, invitee or None, signature)


def invite_signed_bytes(mesh: str, issuer: str, expires_ms: int, invitee: str | None) -> bytes:
    return cbor2.dumps(
        ["agentmesh-invite-v1", mesh, issuer, expires_ms, invitee or ""], canonical=True
    )


def issue_invite(
    signer: Signer, mesh: str, expires_ms: int, invitee: str | None = None
) -> InviteToken:
    """Sign an invite to `mesh` valid until `expires_ms`, optionally for one peer id."""
    check_mesh_name(mesh)
    if invitee is not None and not is_peer_id(invitee):
        raise ValueError(f"invitee {invitee!r} is not a peer id")
    data = invite_signed_bytes(mesh, signer.peer_id, expires_ms, invitee)
    return InviteToken(mesh, signer.peer_id, expires_ms, invitee, signer.sign(data))


# --- policies ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JoinContext:
    """Everything a proof is bound to, as seen by either side."""

    joiner: str
    verifier: str
    joiner_nonce: bytes
    verifier_nonce: bytes
    now_ms: int


class PskPolicy:
    """Members share a mesh key; proofs are HMAC-SHA256 over the join transcript."""

    kind: Final = "psk"
    warning: str | None = None

    def __init__(self, mesh: str, key: bytes) -> None:
        self.mesh = check_mesh_name(mesh)
        if not PSK_KEY_BYTES_MIN <= len(key) <= PSK_KEY_BYTES_MAX:
            raise ValueError(f"mesh key must be {PSK_KEY_BYTES_MIN}..{PSK_KEY_BYTES_MAX} bytes")
        self._key = bytes(key)

    def _mac(self, context: JoinContext, role: str) -> bytes:
        transcript = join_transcript(
            self.mesh,
            context.joiner,
            context.verifier,
            context.joiner_nonce,
            context.verifier_nonce,
            role,
        )
        return hmac.new(self._key, transcript, hashlib.sha256).digest()

    def credential(self, context: JoinContext) -> PskCredential:
        """The joiner's proof."""
        return PskCredential(self._mac(context, "joiner"))

    def verifier_proof(self, context: JoinContext) -> bytes:
        """The verifier's proof that it holds the key too (mutual authentication)."""
        return self._mac(context, "verifier")

    def check_verifier_proof(self, context: JoinContext, proof: bytes) -> None:
        if not hmac.compare_digest(self._mac(context, "verifier"), proof):
            raise AdmissionRejected("bad_mac", "the seed does not hold this mesh's key")

    def admit(self, credential: Credential, context: JoinContext, is_member: IsMember) -> None:
        del is_member
        if not isinstance(credential, PskCredential):
            raise AdmissionRejected("wrong_policy", "this mesh requires a mesh-key proof")
        if not hmac.compare_digest(self._mac(context, "joiner"), credential.mac):
            raise AdmissionRejected("bad_mac", "mesh-key proof does not verify")


IsMember = Callable[[str], bool]


class InvitePolicy:
    """Joiners present a token signed by an existing member."""

    kind: Final = "invite"
    warning: str | None = None

    def __init__(
        self, mesh: str, own_token: str | None = None, verify: VerifyFn = verify_from_peer_id
    ) -> None:
        self.mesh = check_mesh_name(mesh)
        self.own_token = own_token
        self._verify = verify

    def credential(self, context: JoinContext) -> InviteCredential:
        del context
        if self.own_token is None:
            raise AdmissionRejected("no_credential", "no invite token given for this mesh")
        return InviteCredential(self.own_token)

    def verifier_proof(self, context: JoinContext) -> bytes:
        del context
        return b""

    def check_verifier_proof(self, context: JoinContext, proof: bytes) -> None:
        """Invites prove nothing about the seed: the joiner trusts the seed it was given."""
        del context, proof

    def admit(self, credential: Credential, context: JoinContext, is_member: IsMember) -> None:
        if not isinstance(credential, InviteCredential):
            raise AdmissionRejected("wrong_policy", "this mesh requires an invite token")
        token = InviteToken.decode(credential.token)
        verify_invite(token, self.mesh, context.joiner, context.now_ms, self._verify, is_member)


def verify_invite(
    token: InviteToken,
    mesh: str,
    joiner: str,
    now_ms: int,
    verify: VerifyFn = verify_from_peer_id,
    is_member: IsMember | None = None,
) -> None:
    """Check an invite for `joiner` at `now_ms`; raises AdmissionRejected."""
    if token.mesh != mesh:
        raise AdmissionRejected("wrong_mesh", f"invite is for mesh {token.mesh!r}")
    if now_ms >= token.expires_ms:
        raise AdmissionRejected("expired", f"invite expired at {token.expires_ms} ms")
    if token.invitee is not None and token.invitee != joiner:
        raise AdmissionRejected("wrong_invitee", "invite was issued for another peer")
    if not verify(token.issuer, token.signed_bytes(), token.signature):
        raise AdmissionRejected("bad_signature", "invite signature does not verify")
    if is_member is not None and not is_member(token.issuer):
        raise AdmissionRejected("issuer_not_member", "invite issuer is not a known member")


class OpenPolicy:
    """Anyone may join: local experiments only (see `warning`)."""

    kind: Final = "open"
    warning: str | None = OPEN_WARNING

    def __init__(self, mesh: str) -> None:
        self.mesh = check_mesh_name(mesh)

    def credential(self, context: JoinContext) -> OpenCredential:
        del context
        return OpenCredential()

    def verifier_proof(self, context: JoinContext) -> bytes:
        del context
        return b""

    def check_verifier_proof(self, context: JoinContext, proof: bytes) -> None:
        del context, proof

    def admit(self, credential: Credential, context: JoinContext, is_member: IsMember) -> None:
        del credential, context, is_member


AdmissionPolicy = PskPolicy | InvitePolicy | OpenPolicy
