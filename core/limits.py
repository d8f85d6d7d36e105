"""Every bound in one place: queues, tables, messages, decoding.

When a bound is hit the owner drops, counts and reports; nothing grows without
limit. Values are defaults for a device under 512 MB; hosts may pass their own
`Limits` to machines that take one.
"""

from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True, slots=True)
class DecodeLimits:
    """Bounds applied while decoding untrusted CBOR."""

    size_bytes_max: int = 1 * MIB
    depth_max: int = 16
    items_max: int = 65_536  # array elements + map pairs, summed over the whole item
    string_bytes_max: int = 1 * MIB


@dataclass(frozen=True, slots=True)
class Limits:
    """Bounds shared by the protocol machines and hosts."""

    decode: DecodeLimits = DecodeLimits()
    envelope_bytes_max: int = 1 * MIB
    outbox_items_max: int = 10_000
    peers_max: int = 100_000
    pending_messages_per_peer_max: int = 1_024


DEFAULT_LIMITS = Limits()
