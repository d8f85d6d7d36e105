"""Typed errors of the QUIC transport; API misuse and failed dials raise these, peers never do."""

from __future__ import annotations


class TransportError(Exception):
    """Base of every error the transport raises to its host."""


class TransportClosed(TransportError):
    """The transport is not started or was closed."""


class DialError(TransportError):
    """A connection could not be made or authenticated (timeout, refusal, closed)."""


class PeerIdMismatch(DialError):
    """The peer at the dialed address proved a different peer id than expected."""


class UnknownPeer(TransportError):
    """No connection to the peer and no address known to dial it."""


class FrameTooLarge(TransportError):
    """A frame or blob above this transport's own size limit was offered for sending."""


class SendTimeout(TransportError):
    """The peer did not acknowledge enough data within send_timeout_ms (back-pressure)."""


class ConnectionLost(TransportError):
    """The connection closed while a send was in progress."""


class BlobRejected(TransportError):
    """The receiver stopped a blob stream (too large, over its rate, or out of buffer)."""
