"""Ed25519 identities and libp2p-style peer ids (`12D3KooW…`).

A peer id is base58btc(identity-multihash(protobuf PublicKey{Type=Ed25519, Data=pk})),
as in the libp2p peer-id spec (specs/peer-ids/peer-ids.md): the 36-byte protobuf
is at most 42 bytes, so the identity multihash (code 0x00) inlines it. The public
key is therefore recoverable from the peer id itself, which is how receivers
verify a sender's signature without a key directory.

Key generation needs OS randomness and lives in edge (agentmesh.edge.keystore);
core only derives keys from a given 32-byte seed.
"""

from __future__ import annotations

import functools

import nacl.exceptions
import nacl.signing

PUBLIC_KEY_SIZE_BYTES = 32
SEED_SIZE_BYTES = 32
SIGNATURE_SIZE_BYTES = 64

# protobuf: field 1 (varint) KeyType.Ed25519 = 1; field 2 (bytes) length 32.
_PROTOBUF_ED25519_PREFIX = bytes([0x08, 0x01, 0x12, 0x20])
# multihash: code 0x00 (identity), length 36.
_MULTIHASH_IDENTITY_PREFIX = bytes([0x00, 0x24])
_PEER_ID_PREFIX = _MULTIHASH_IDENTITY_PREFIX + _PROTOBUF_ED25519_PREFIX
_PEER_ID_SIZE_BYTES = len(_PEER_ID_PREFIX) + PUBLIC_KEY_SIZE_BYTES
_PEER_ID_TEXT_SIZE_MAX = 60

_B58_ALPHABET = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
_B58_INDEX = {char: index for index, char in enumerate(_B58_ALPHABET)}


class IdentityError(ValueError):
    """Base of the identity errors."""


class InvalidPeerId(IdentityError):
    """A string that is not an Ed25519 libp2p peer id."""


class InvalidKey(IdentityError):
    """Key material of the wrong size or form."""


def base58_encode(data: bytes) -> str:
    """base58btc (Bitcoin alphabet), leading zero bytes as '1'."""
    number = int.from_bytes(data, "big")
    chars: list[str] = []
    while number:
        number, remainder = divmod(number, 58)
        chars.append(_B58_ALPHABET[remainder])
    zeros = len(data) - len(data.lstrip(b"\0"))
    return "1" * zeros + "".join(reversed(chars))


def base58_decode(text: str) -> bytes:
    """Inverse of base58_encode; raises InvalidPeerId on a character outside the alphabet."""
    number = 0
    for char in text:
        digit = _B58_INDEX.get(char)
        if digit is None:
            raise InvalidPeerId(f"character {char!r} is not base58btc")
        number = number * 58 + digit
    zeros = len(text) - len(text.lstrip("1"))
    body = number.to_bytes((number.bit_length() + 7) // 8, "big") if number else b""
    return b"\0" * zeros + body


def peer_id_from_public_key(public_key: bytes) -> str:
    """The libp2p peer id of an Ed25519 public key."""
    if len(public_key) != PUBLIC_KEY_SIZE_BYTES:
        raise InvalidKey(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    return base58_encode(_PEER_ID_PREFIX + public_key)


def public_key_from_peer_id(peer_id: str) -> bytes:
    """The Ed25519 public key inlined in a peer id; raises InvalidPeerId."""
    if not isinstance(peer_id, str) or not 0 < len(peer_id) <= _PEER_ID_TEXT_SIZE_MAX:
        raise InvalidPeerId("peer id must be a non-empty string of at most 60 characters")
    return _public_key_cached(peer_id)


# Every received message names its sender; base58 decoding costs tens of µs, and a
# node talks to a bounded set of peers, so remember the last few thousand (bounded).
@functools.lru_cache(maxsize=4096)
def _public_key_cached(peer_id: str) -> bytes:
    raw = base58_decode(peer_id)
    if len(raw) != _PEER_ID_SIZE_BYTES or not raw.startswith(_PEER_ID_PREFIX):
        raise InvalidPeerId(f"{peer_id!r} is not an Ed25519 identity-multihash peer id")
    return raw[len(_PEER_ID_PREFIX) :]


def is_peer_id(text: object) -> bool:
    """True when `text` is a well-formed Ed25519 peer id."""
    if not isinstance(text, str):
        return False
    try:
        public_key_from_peer_id(text)
    except InvalidPeerId:
        return False
    return True


def verify(public_key: bytes, data: bytes, signature: bytes) -> bool:
    """Ed25519 verification that never raises on bad input (False instead)."""
    if len(public_key) != PUBLIC_KEY_SIZE_BYTES or len(signature) != SIGNATURE_SIZE_BYTES:
        return False
    try:
        nacl.signing.VerifyKey(public_key).verify(data, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def verify_from_peer_id(peer_id: str, data: bytes, signature: bytes) -> bool:
    """Verify a signature by the key inlined in `peer_id`; False for a malformed id."""
    try:
        public_key = public_key_from_peer_id(peer_id)
    except InvalidPeerId:
        return False
    return verify(public_key, data, signature)


class Identity:
    """An Ed25519 key pair with its peer id; satisfies core.node.Signer."""

    __slots__ = ("_peer_id", "_public_key", "_signing_key")

    def __init__(self, signing_key: nacl.signing.SigningKey) -> None:
        self._signing_key = signing_key
        self._public_key = bytes(signing_key.verify_key)
        self._peer_id = peer_id_from_public_key(self._public_key)

    @classmethod
    def from_seed(cls, seed: bytes) -> Identity:
        """The identity whose private key is the 32-byte Ed25519 seed."""
        if len(seed) != SEED_SIZE_BYTES:
            raise InvalidKey(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        return cls(nacl.signing.SigningKey(seed))

    @property
    def peer_id(self) -> str:
        return self._peer_id

    @property
    def public_key(self) -> bytes:
        return self._public_key

    @property
    def seed(self) -> bytes:
        """The private seed: handle with care (only the keystore should read it)."""
        return bytes(self._signing_key)

    def sign(self, data: bytes) -> bytes:
        """Detached 64-byte Ed25519 signature."""
        return self._signing_key.sign(data).signature

    def __repr__(self) -> str:
        return f"Identity({self._peer_id})"
