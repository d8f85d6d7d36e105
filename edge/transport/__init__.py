"""QUIC transport: authenticated peer-to-peer frames and content-addressed blobs (aioquic)."""

from agentmesh.core.limits import TransportLimits
from agentmesh.edge.transport.errors import (
    BlobRejected,
    ConnectionLost,
    DialError,
    FrameTooLarge,
    PeerIdMismatch,
    SendTimeout,
    TransportClosed,
    TransportError,
    UnknownPeer,
)
from agentmesh.edge.transport.transport import ALPN, Address, Incoming, QuicTransport

__all__ = [
    "ALPN",
    "Address",
    "BlobRejected",
    "ConnectionLost",
    "DialError",
    "FrameTooLarge",
    "Incoming",
    "PeerIdMismatch",
    "QuicTransport",
    "SendTimeout",
    "TransportClosed",
    "TransportError",
    "TransportLimits",
    "UnknownPeer",
]
