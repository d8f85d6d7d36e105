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


@dataclass(frozen=True, slots=True)
class TransportLimits:
    """Bounds and per-peer rates of the QUIC transport (agentmesh.edge.transport)."""

    frame_bytes_max: int = 256 * KIB  # one control frame's payload
    blob_bytes_max: int = 64 * MIB
    blob_chunk_bytes: int = 64 * KIB
    send_window_bytes: int = 1 * MIB  # unacknowledged bytes per stream before a writer waits
    blobs_in_flight_per_peer_max: int = 4
    blob_buffer_bytes_max: int = 128 * MIB  # partly received blobs, all peers together
    incoming_queue_max: int = 4_096
    incoming_per_peer_max: int = 512  # one peer's share of the incoming queue
    messages_per_s: float = 2_000.0  # per peer, frames and blobs
    message_burst: int = 500
    bytes_per_s: float = 32.0 * MIB  # per peer
    byte_burst: int = 8 * MIB
    connections_max: int = 256
    pending_connections_max: int = 64  # handshaking or not yet authenticated
    handshake_timeout_ms: int = 5_000  # TLS handshake plus the peer-id proof
    idle_timeout_ms: int = 60_000
    send_timeout_ms: int = 10_000
    address_book_max: int = 4_096


@dataclass(frozen=True, slots=True)
class GossipLimits:
    """Bounds of the push/pull rumor gossip (core/gossip.py)."""

    rumors_max: int = 4_096  # rumors a node remembers; new ones beyond are dropped + counted
    rumors_per_message_max: int = 64  # rumors in one Push
    payload_chars_max: int = 256  # length of one rumor's payload
    origins_max: int = 4_096  # entries of a Digest (one per originating node)


DEFAULT_GOSSIP_LIMITS = GossipLimits()

# Bridged devices' update offers in federated rounds (core/rounds, docs/microcontrollers.md):
# a cohort gateway carries at most this many device offers per round (each device is one
# vote, so this caps how many votes one gateway can add), and a device offer claims at
# most this many samples (the gateway's per-device sample buffer).
DEVICE_OFFERS_PER_GATEWAY_MAX = 16
DEVICE_SAMPLES_MAX = 256
# Contributors an aggregator lists in one round_result once device offers are among them
# (a device offer is ~211 bytes of CBOR; 192 keep the entry under the host's 48 KB frame).
RESULT_CONTRIBUTORS_MAX = 192
