"""Keyed hashes and rendezvous (highest-random-weight) hashing over them.

HRW (Thaler & Ravishankar, "Using name-based mappings to increase hit rates",
IEEE/ACM ToN 6(1), 1998): child c goes to the parent p with the largest
w(c, p). Removing a parent moves only its own children (each to its next
parent in HRW order); adding one takes ~1/k of the children from the others.

w(c, p) = splitmix64(h(c) xor h(p)) with h = 64 bits of sha-256(salt || id):
two sha-256 per member instead of one per (child, parent) pair, and the
per-pair step is integer-only, so the numpy path (blocks of the child x parent
matrix) and the pure-Python reference give the same bits on every platform.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX_1 = 0xBF58476D1CE4E5B9
_MIX_2 = 0x94D049BB133111EB
_BLOCK_CELLS = 1 << 16  # child x parent cells per block: two 512 KiB buffers stay in cache

HashArray = npt.NDArray[np.uint64]


def salt(domain: bytes, randomness: bytes) -> bytes:
    """Domain-separated key for one use of the committed randomness."""
    return hashlib.sha256(b"agentmesh-roles/" + domain + b"/" + randomness).digest()


def hash64(key: bytes, peer_id: str) -> int:
    """64 bits of sha-256(key || peer id), big-endian."""
    return int.from_bytes(hashlib.sha256(key + peer_id.encode()).digest()[:8], "big")


def hashes(key: bytes, peer_ids: Sequence[str]) -> HashArray:
    """`hash64` of each id as a uint64 array."""
    return np.fromiter((hash64(key, peer) for peer in peer_ids), np.uint64, len(peer_ids))


def mix64(value: int) -> int:
    """The splitmix64 finalizer (Steele, Lea, Flood, OOPSLA 2014): a 64-bit bijection."""
    z = (value + _GOLDEN) & U64
    z = ((z ^ (z >> 30)) * _MIX_1) & U64
    z = ((z ^ (z >> 27)) * _MIX_2) & U64
    return z ^ (z >> 31)


def weight(child_hash: int, parent_hash: int) -> int:
    """Pure-Python HRW weight of (child, parent)."""
    return mix64(child_hash ^ parent_hash)


_SHIFTS = (np.uint64(30), np.uint64(27), np.uint64(31))
_FACTORS = (np.uint64(_MIX_1), np.uint64(_MIX_2))


def _mix64_in_place(z: HashArray, scratch: HashArray) -> None:
    """`mix64` over an array, in place (uint64 array arithmetic wraps modulo 2**64)."""
    z += np.uint64(_GOLDEN)
    for shift, factor in zip(_SHIFTS, _FACTORS, strict=False):
        np.right_shift(z, shift, out=scratch)
        z ^= scratch
        z *= factor
    np.right_shift(z, _SHIFTS[2], out=scratch)
    z ^= scratch


def best_parent(children: HashArray, parents: HashArray) -> npt.NDArray[np.intp]:
    """For each child, the index of its highest-weight parent (first index on a tie)."""
    if len(parents) == 0:
        raise ValueError("rendezvous hashing needs at least one parent")
    rows = max(1, _BLOCK_CELLS // len(parents))
    chosen = np.empty(len(children), dtype=np.intp)
    block = np.empty((min(rows, len(children)), len(parents)), dtype=np.uint64)
    scratch = np.empty_like(block)
    for start in range(0, len(children), rows):
        count = len(children[start : start + rows])
        cells, spare = block[:count], scratch[:count]
        np.bitwise_xor(children[start : start + count, None], parents[None, :], out=cells)
        _mix64_in_place(cells, spare)
        chosen[start : start + count] = np.argmax(cells, axis=1)
    return chosen


def best_parent_pure(child: int, parents: Sequence[int]) -> int:
    """Reference for `best_parent` on one child (tests pin the two against each other)."""
    best_index, best_weight = -1, -1
    for index, parent in enumerate(parents):
        candidate = weight(child, parent)
        if candidate > best_weight:
            best_index, best_weight = index, candidate
    return best_index
