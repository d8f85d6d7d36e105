"""The model store: content-addressed blobs on disk and the SQLite round index."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

from agentmesh.edge.model_store import ModelStore, ModelStoreError


def store(tmp_path: Path) -> ModelStore:
    connection = sqlite3.connect(tmp_path / "state.sqlite", isolation_level=None)
    return ModelStore(tmp_path, connection)


def test_blobs_are_stored_by_hash_and_checked_on_read(tmp_path: Path) -> None:
    models = store(tmp_path)
    digest = models.put_blob(b"weights")
    assert digest == hashlib.sha256(b"weights").digest()
    assert models.put_blob(b"weights") == digest and models.has_blob(digest)
    assert models.get_blob(digest) == b"weights"
    assert models.get_blob(b"\x00" * 32) is None
    path = tmp_path / "blobs" / digest.hex()[:2] / digest.hex()
    path.write_bytes(b"tampered")
    with pytest.raises(ModelStoreError):
        models.get_blob(digest)


def test_round_index_keeps_status_metrics_and_certificates(tmp_path: Path) -> None:
    models = store(tmp_path)
    models.record_round(1, base="aa", started_ms=10)
    models.record_round(1, train_s=0.5)
    models.record_round(1, status="committed", model="bb", validators=["v1", "v2"],
                        contributors=[["t", 3]], closed_ms=20, certificate=b"cert")  # fmt: skip
    models.record_round(1, accuracy=0.9)
    models.record_round(2, status="aborted")
    first, second = models.rounds()
    assert first["status"] == "committed" and first["accuracy"] == 0.9
    assert first["validators"] == ["v1", "v2"] and first["train_s"] == 0.5
    assert first["certified"] and models.certificate(1) == b"cert"
    assert second["status"] == "aborted" and not second["certified"]
    with pytest.raises(ModelStoreError):
        models.record_round(3, nonsense=1)
