"""The TLS certificate that carries a peer id: self-signed by the identity's Ed25519 key.

The server side of every connection presents this certificate. TLS 1.3 makes the
server sign the handshake transcript with the certificate key (CertificateVerify,
RFC 8446 §4.4.3), and aioquic checks that signature even with verify_mode=CERT_NONE,
so a client that reads the key out of the certificate knows the server holds the
private key of the peer id derived from it. No CA is involved: the peer id is the
trust anchor, as in libp2p's TLS handshake (specs/tls/tls.md).
"""

from __future__ import annotations

import datetime

from aioquic.quic.connection import QuicConnection
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID

from agentmesh.core.identity import Identity, peer_id_from_public_key

_VALIDITY = datetime.timedelta(days=100 * 365)
# Clocks on small devices are often wrong at boot; validity dates are not checked
# by peers anyway (the peer id is the anchor), so start well in the past.
_NOT_BEFORE = datetime.datetime(2020, 1, 1, tzinfo=datetime.timezone.utc)


class InvalidCertificate(ValueError):
    """The peer's certificate does not carry an Ed25519 key (so no peer id)."""


def private_key_for(identity: Identity) -> ed25519.Ed25519PrivateKey:
    """The identity's key in the form aioquic's TLS stack takes."""
    return ed25519.Ed25519PrivateKey.from_private_bytes(identity.seed)


def certificate_for(identity: Identity) -> x509.Certificate:
    """A self-signed certificate whose subject key is the identity's Ed25519 key."""
    key = private_key_for(identity)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity.peer_id)])
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_NOT_BEFORE)
        .not_valid_after(_NOT_BEFORE + _VALIDITY)
        .sign(key, algorithm=None)
    )


def peer_id_from_certificate(certificate: x509.Certificate) -> str:
    """The peer id of the certificate's Ed25519 key; raises InvalidCertificate."""
    key = certificate.public_key()
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InvalidCertificate("certificate key is not Ed25519")
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return str(peer_id_from_public_key(raw))


def server_peer_id(quic: QuicConnection) -> str:
    """After the handshake, the peer id the server proved; raises InvalidCertificate.

    aioquic 1.7 keeps the parsed server certificate in `tls._peer_certificate` and has
    no public accessor; this is the one place that reads it.
    """
    certificate = getattr(quic.tls, "_peer_certificate", None)
    if not isinstance(certificate, x509.Certificate):
        raise InvalidCertificate("no server certificate after the handshake")
    return peer_id_from_certificate(certificate)
