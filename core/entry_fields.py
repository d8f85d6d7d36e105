"""Field checks shared by the decoders of decided entries (rounds, tasks).

Decided entries arrive from peers as plain CBOR values; every field is checked
for type and bound before use, and a mismatch is an EntryError (data, never a
crash).
"""

from __future__ import annotations

import hashlib
from typing import Any

DIGEST_BYTES = 32
SIGNATURE_BYTES_MAX = 128
PEER_ID_CHARS_MAX = 64


class EntryError(ValueError):
    """An entry or message body that does not decode to its schema."""


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def items(value: Any, size_max: int) -> list[Any]:
    if type(value) is not list or len(value) > size_max:
        raise EntryError("expected a bounded list")
    return value


def uint(value: Any, bound: int) -> int:
    if type(value) is not int or not 0 <= value <= bound:
        raise EntryError(f"expected an integer in 0..{bound}")
    return value


def digest(value: Any) -> bytes:
    if type(value) is not bytes or len(value) != DIGEST_BYTES:
        raise EntryError("expected a 32-byte digest")
    return value


def signature(value: Any) -> bytes:
    if type(value) is not bytes or not 0 < len(value) <= SIGNATURE_BYTES_MAX:
        raise EntryError("expected a signature")
    return value


def peer(value: Any) -> str:
    if type(value) is not str or not 0 < len(value) <= PEER_ID_CHARS_MAX:
        raise EntryError("expected a peer id")
    return value
