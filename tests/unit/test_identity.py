"""Peer ids against the published libp2p vector; keys, signatures and the key file."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agentmesh.core.identity import (
    Identity,
    InvalidKey,
    InvalidPeerId,
    base58_decode,
    base58_encode,
    is_peer_id,
    peer_id_from_public_key,
    public_key_from_peer_id,
    verify,
    verify_from_peer_id,
)
from agentmesh.edge.keystore import KeystoreError, key_path, load_or_create_identity

# libp2p specs/peer-ids test vector (private key protobuf 08 01 12 40 <seed><pk>),
# cross-checked in rust-libp2p identity/src/keypair.rs.
VECTOR_SEED = bytes.fromhex("7e0830617c4a7de83925dfb2694556b12936c477a0e1feb2e148ec9da60fee7d")
VECTOR_PUBLIC_PROTOBUF = bytes.fromhex(
    "080112201ed1e8fae2c4a144b8be8fd4b47bf3d3b34b871c3cacf6010f0e42d474fce27e"
)
VECTOR_PEER_ID = "12D3KooWBtg3aaRMjxwedh83aGiUkwSxDwUZkzuJcfaqUmo7R3pq"


def test_libp2p_vector_public_key_and_peer_id() -> None:
    identity = Identity.from_seed(VECTOR_SEED)
    assert identity.public_key == VECTOR_PUBLIC_PROTOBUF[4:]
    assert identity.peer_id == VECTOR_PEER_ID
    assert peer_id_from_public_key(identity.public_key) == VECTOR_PEER_ID


def test_public_key_recovered_from_peer_id() -> None:
    assert public_key_from_peer_id(VECTOR_PEER_ID) == VECTOR_PUBLIC_PROTOBUF[4:]


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "12D3KooW",
        "QmYyQSo1c1Ym7orWxLYvCrM2EmxFTANf8wXmmE7DWjhx5N",  # a sha-256 (RSA) peer id
        VECTOR_PEER_ID[:-1] + "0",  # '0' is not base58
        VECTOR_PEER_ID + "1",
        "x" * 500,
    ],
)
def test_malformed_peer_ids_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidPeerId):
        public_key_from_peer_id(bad)
    assert not is_peer_id(bad)


def test_sign_and_verify() -> None:
    identity = Identity.from_seed(bytes(range(32)))
    signature = identity.sign(b"round 7")
    assert len(signature) == 64
    assert verify(identity.public_key, b"round 7", signature)
    assert verify_from_peer_id(identity.peer_id, b"round 7", signature)
    assert not verify(identity.public_key, b"round 8", signature)
    assert not verify(identity.public_key, b"round 7", signature[:-1] + b"\0")
    assert not verify(identity.public_key, b"round 7", b"short")
    assert not verify_from_peer_id("not-a-peer-id", b"round 7", signature)
    other = Identity.from_seed(bytes(32))
    assert not verify_from_peer_id(other.peer_id, b"round 7", signature)


def test_bad_key_sizes() -> None:
    with pytest.raises(InvalidKey):
        Identity.from_seed(b"short")
    with pytest.raises(InvalidKey):
        peer_id_from_public_key(b"\0" * 31)


@given(st.binary(max_size=64))
def test_base58_round_trip(data: bytes) -> None:
    assert base58_decode(base58_encode(data)) == data


@given(st.binary(min_size=32, max_size=32))
def test_every_key_gives_a_12D3KooW_peer_id(seed: bytes) -> None:
    identity = Identity.from_seed(seed)
    assert identity.peer_id.startswith("12D3KooW")
    assert public_key_from_peer_id(identity.peer_id) == identity.public_key


def test_key_file_created_once_with_mode_0600(tmp_path: Path) -> None:
    state = tmp_path / "state"
    first = load_or_create_identity(state)
    mode = stat.S_IMODE(key_path(state).stat().st_mode)
    assert mode == 0o600
    assert load_or_create_identity(state).peer_id == first.peer_id


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_identity(tmp_path)
    os.chmod(key_path(tmp_path), 0o644)
    with pytest.raises(KeystoreError, match="chmod 600"):
        load_or_create_identity(tmp_path)


def test_corrupt_key_file_is_refused(tmp_path: Path) -> None:
    path = key_path(tmp_path)
    path.write_bytes(b"garbage")
    os.chmod(path, 0o600)
    with pytest.raises(KeystoreError, match="not an agentmesh identity key"):
        load_or_create_identity(tmp_path)
