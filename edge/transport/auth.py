"""The client's peer-id proof, sent inside the encrypted QUIC connection.

aioquic offers no public way to ask for a client certificate and no TLS exporter,
so the client cannot be authenticated by TLS itself. Instead the server sends a
fresh random nonce on its control stream and the client answers with its peer id
and an Ed25519 signature over

    TAG || nonce || len(client_id) || client_id || len(server_id) || server_id

The fresh nonce stops replay; the server id (proved by the server's certificate)
stops a server that a client dialed from relaying the proof to a third peer; the
tag keeps these signatures from ever being valid for any other message type.
See docs/transport.md for the full reasoning.
"""

from __future__ import annotations

from dataclasses import dataclass

from agentmesh.core.identity import SIGNATURE_SIZE_BYTES, is_peer_id, verify_from_peer_id

AUTH_TAG = b"agentmesh/transport/client-auth/v1\x00"
NONCE_SIZE_BYTES = 32
_PEER_ID_BYTES_MAX = 60


class AuthFormatError(ValueError):
    """An AUTH or CHALLENGE payload that is not well formed."""


@dataclass(frozen=True, slots=True)
class ClientProof:
    """What the client sends: its claimed peer id and the signature."""

    client_id: str
    signature: bytes


def _length_prefixed(text: str) -> bytes:
    data = text.encode("ascii")
    return bytes([len(data)]) + data


def signed_message(nonce: bytes, client_id: str, server_id: str) -> bytes:
    """The exact bytes the client signs."""
    return AUTH_TAG + nonce + _length_prefixed(client_id) + _length_prefixed(server_id)


def check_nonce(payload: bytes) -> bytes:
    """The nonce of a CHALLENGE payload; raises AuthFormatError."""
    if len(payload) != NONCE_SIZE_BYTES:
        raise AuthFormatError(f"nonce must be {NONCE_SIZE_BYTES} bytes, got {len(payload)}")
    return payload


def encode_proof(proof: ClientProof) -> bytes:
    """AUTH payload: len(client_id) || client_id || signature."""
    return _length_prefixed(proof.client_id) + proof.signature


def decode_proof(payload: bytes) -> ClientProof:
    """Parse an AUTH payload; raises AuthFormatError."""
    if not payload:
        raise AuthFormatError("empty AUTH payload")
    id_size = payload[0]
    if id_size > _PEER_ID_BYTES_MAX or len(payload) != 1 + id_size + SIGNATURE_SIZE_BYTES:
        raise AuthFormatError("AUTH payload has the wrong size")
    try:
        client_id = payload[1 : 1 + id_size].decode("ascii")
    except UnicodeDecodeError as error:
        raise AuthFormatError("client id is not ASCII") from error
    if not is_peer_id(client_id):
        raise AuthFormatError("client id is not an Ed25519 peer id")
    return ClientProof(client_id, payload[1 + id_size :])


def verify_proof(proof: ClientProof, nonce: bytes, server_id: str) -> bool:
    """True when the signature is by the key inlined in the claimed client id."""
    message = signed_message(nonce, proof.client_id, server_id)
    return bool(verify_from_peer_id(proof.client_id, message, proof.signature))
