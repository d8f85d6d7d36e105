"""Pure parts of the QUIC transport: framing, blob verification, peer-id proof, rates, cert."""

from __future__ import annotations

import hashlib

from hypothesis import given
from hypothesis import strategies as st

from agentmesh.core.identity import Identity
from agentmesh.edge.transport import auth
from agentmesh.edge.transport.cert import certificate_for, peer_id_from_certificate
from agentmesh.edge.transport.framing import (
    BlobDecoder,
    BlobVerdict,
    ControlDecoder,
    ControlFrame,
    FrameOversized,
    FrameType,
    encode_blob_header,
    encode_frame,
)
from agentmesh.edge.transport.ratelimit import PeerRate, TokenBucket

ALICE = Identity.from_seed(b"a" * 32)
BOB = Identity.from_seed(b"b" * 32)
MALLORY = Identity.from_seed(b"m" * 32)


def _feed_in_pieces(decoder: ControlDecoder, data: bytes, cuts: list[int]) -> list[object]:
    out: list[object] = []
    start = 0
    for cut in [*sorted(set(cuts)), len(data)]:
        out.extend(decoder.feed(data[start:cut]))
        start = cut
    return out


@given(
    payloads=st.lists(st.binary(max_size=300), max_size=8),
    cuts=st.lists(st.integers(min_value=0, max_value=3000), max_size=12),
)
def test_control_frames_survive_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(FrameType.DATA, p) for p in payloads)
    frames = _feed_in_pieces(ControlDecoder(300), stream, [c for c in cuts if c < len(stream)])
    assert frames == [ControlFrame(FrameType.DATA, p) for p in payloads]


@given(cuts=st.lists(st.integers(min_value=0, max_value=1200), max_size=12))
def test_oversized_frame_is_skipped_without_buffering(cuts: list[int]) -> None:
    stream = (
        encode_frame(FrameType.DATA, b"x" * 10)
        + encode_frame(FrameType.DATA, b"y" * 1000)
        + encode_frame(FrameType.DATA, b"z" * 5)
    )
    decoder = ControlDecoder(100)
    out: list[object] = []
    start = 0
    for cut in [*sorted(set(c for c in cuts if c < len(stream))), len(stream)]:
        out.extend(decoder.feed(stream[start:cut]))
        start = cut
        assert decoder.buffered_bytes <= 100 + 5
    assert out == [
        ControlFrame(FrameType.DATA, b"x" * 10),
        FrameOversized(FrameType.DATA, 1000),
        ControlFrame(FrameType.DATA, b"z" * 5),
    ]


def _blob_stream(data: bytes, digest: bytes | None = None, size: int | None = None) -> bytes:
    digest = hashlib.sha256(data).digest() if digest is None else digest
    return encode_blob_header(len(data) if size is None else size, digest) + data


def test_blob_decoder_verdicts() -> None:
    data = bytes(range(256)) * 10
    decoder = BlobDecoder(10_000)
    stream = _blob_stream(data)
    assert decoder.feed(stream[:7], end_stream=False) is BlobVerdict.INCOMPLETE
    assert decoder.feed(stream[7:], end_stream=True) is BlobVerdict.COMPLETE
    assert decoder.take() == data
    assert BlobDecoder(100).feed(stream[:40], False) is BlobVerdict.OVERSIZED
    wrong = _blob_stream(data, digest=b"\0" * 32)
    assert BlobDecoder(10_000).feed(wrong, True) is BlobVerdict.DIGEST_MISMATCH
    short = _blob_stream(data, size=len(data) + 1)
    assert BlobDecoder(10_000).feed(short, True) is BlobVerdict.TRUNCATED
    long = _blob_stream(data, size=len(data) - 1)
    assert BlobDecoder(10_000).feed(long, False) is BlobVerdict.OVERRUN
    assert BlobDecoder(10_000).feed(b"\0" * 5, True) is BlobVerdict.TRUNCATED


def test_client_proof_binds_nonce_and_both_ids() -> None:
    nonce = b"n" * auth.NONCE_SIZE_BYTES
    message = auth.signed_message(nonce, ALICE.peer_id, BOB.peer_id)
    proof = auth.decode_proof(
        auth.encode_proof(auth.ClientProof(ALICE.peer_id, ALICE.sign(message)))
    )
    assert auth.verify_proof(proof, nonce, BOB.peer_id)
    assert not auth.verify_proof(proof, b"o" * auth.NONCE_SIZE_BYTES, BOB.peer_id)
    assert not auth.verify_proof(proof, nonce, MALLORY.peer_id)  # relayed to another server
    forged = auth.ClientProof(ALICE.peer_id, MALLORY.sign(message))
    assert not auth.verify_proof(forged, nonce, BOB.peer_id)


@given(st.binary(max_size=200))
def test_malformed_proof_is_a_typed_error(payload: bytes) -> None:
    try:
        proof = auth.decode_proof(payload)
    except auth.AuthFormatError:
        return
    assert len(proof.signature) == 64


def test_certificate_carries_the_peer_id() -> None:
    assert peer_id_from_certificate(certificate_for(ALICE)) == ALICE.peer_id


def test_token_bucket_limits_rate_and_allows_debt() -> None:
    bucket = TokenBucket(rate_per_s=10, burst=5, now_s=0.0)
    assert sum(bucket.take(1, 0.0) for _ in range(20)) == 5
    assert bucket.take(1, 0.1)  # one token refilled after 0.1 s
    assert not bucket.take(1, 0.1)
    bucket.charge(30, 0.1)
    assert bucket.tokens(1.1) < 0  # debt of 30 needs 3 s to repay
    assert bucket.tokens(10.0) == 5


def test_peer_rate_needs_both_buckets() -> None:
    rate = PeerRate(
        messages_per_s=100, message_burst=100, bytes_per_s=1000, byte_burst=1000, now_s=0
    )
    assert rate.admit(600, 0.0)
    assert not rate.admit(600, 0.0)  # bytes exhausted, message token not spent
    assert rate.messages.tokens(0.0) == 99
