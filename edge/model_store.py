"""Models by content hash on disk, and an SQLite index of rounds, certificates and metrics.

Blobs live in `<state dir>/blobs/<2 hex>/<64 hex>`, written to a temporary
name and renamed (a crash never leaves a half blob under its digest), and are
checked against their name when read. The index shares the agent's one SQLite
file (edge/state.py): one row per round with its committed model digest, the
aggregator and validators, the commit certificate, and what this agent measured
(local training time, held-out accuracy).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from pathlib import Path
from typing import Any

BLOB_DIR_NAME = "blobs"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS fl_rounds (
    round INTEGER PRIMARY KEY,
    status TEXT NOT NULL,
    base TEXT,
    model TEXT,
    aggregator TEXT,
    validators TEXT,
    contributors TEXT,
    started_ms INTEGER,
    closed_ms INTEGER,
    train_s REAL,
    accuracy REAL,
    loss REAL,
    certificate BLOB
);
"""
_COLUMNS = (
    "status", "base", "model", "aggregator", "validators", "contributors",
    "started_ms", "closed_ms", "train_s", "accuracy", "loss", "certificate",
)  # fmt: skip
_JSON_COLUMNS = ("validators", "contributors")


class ModelStoreError(Exception):
    """A blob that does not match its digest, or an unknown column."""


class ModelStore:
    """Content-addressed blobs plus the per-round index."""

    def __init__(self, state_dir: Path, connection: sqlite3.Connection) -> None:
        self.blob_dir = Path(state_dir) / BLOB_DIR_NAME
        self.blob_dir.mkdir(mode=0o700, exist_ok=True)
        self.connection = connection
        connection.executescript(_SCHEMA)

    def _path(self, digest: bytes) -> Path:
        name = digest.hex()
        return self.blob_dir / name[:2] / name

    def put_blob(self, data: bytes) -> bytes:
        """Store `data` under its sha-256 (idempotent); returns the digest."""
        digest = hashlib.sha256(data).digest()
        path = self._path(digest)
        if path.exists():
            return digest
        path.parent.mkdir(mode=0o700, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_bytes(data)
        os.replace(temporary, path)
        return digest

    def get_blob(self, digest: bytes) -> bytes | None:
        """The blob, or None if absent; ModelStoreError if the file was altered."""
        try:
            data = self._path(digest).read_bytes()
        except FileNotFoundError:
            return None
        if hashlib.sha256(data).digest() != digest:
            raise ModelStoreError(f"blob {digest.hex()} does not match its content")
        return data

    def has_blob(self, digest: bytes) -> bool:
        return self._path(digest).exists()

    def record_round(self, round_number: int, **fields: Any) -> None:
        """Insert or update the round's row with the given columns."""
        unknown = set(fields) - set(_COLUMNS)
        if unknown:
            raise ModelStoreError(f"unknown round columns {sorted(unknown)}")
        values = {k: json.dumps(v) if k in _JSON_COLUMNS else v for k, v in fields.items()}
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute(
                "INSERT OR IGNORE INTO fl_rounds(round, status) VALUES(?, 'open')", (round_number,)
            )
            if values:
                assignments = ", ".join(f"{name} = ?" for name in values)
                self.connection.execute(
                    f"UPDATE fl_rounds SET {assignments} WHERE round = ?",
                    (*values.values(), round_number),
                )

    def rounds(self) -> list[dict[str, Any]]:
        """Every recorded round, oldest first (certificates as hex)."""
        cursor = self.connection.execute(
            f"SELECT round, {', '.join(_COLUMNS)} FROM fl_rounds ORDER BY round"
        )
        rows = []
        for row in cursor.fetchall():
            record = dict(zip(("round", *_COLUMNS), row, strict=True))
            for key in _JSON_COLUMNS:
                if record[key] is not None:
                    record[key] = json.loads(record[key])
            certificate = record.pop("certificate")
            record["certified"] = certificate is not None
            rows.append(record)
        return rows

    def certificate(self, round_number: int) -> bytes | None:
        row = self.connection.execute(
            "SELECT certificate FROM fl_rounds WHERE round = ?", (round_number,)
        ).fetchone()
        return None if row is None else row[0]

    def remove_temporaries(self) -> None:
        """Leftovers of a crash between write and rename."""
        for path in self.blob_dir.glob("*/*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
