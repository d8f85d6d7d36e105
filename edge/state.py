"""The agent's SQLite state (WAL): metadata and the last membership view.

One file per agent, `state.sqlite` in the state directory. Later modules add
their tables through `StateStore.connection` inside their own schema function,
each guarded by `CREATE TABLE IF NOT EXISTS`, so one file holds the agent's
whole durable state and one transaction can span several tables.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

STATE_FILE_NAME = "state.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS members (
    peer_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    incarnation INTEGER NOT NULL,
    record TEXT NOT NULL
);
"""


class StateError(Exception):
    """The state file cannot be used (another schema, a corrupt file)."""


class StateStore:
    """Durable agent state in one SQLite file; every write is its own committed transaction."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / STATE_FILE_NAME
        self.connection = sqlite3.connect(self.path, isolation_level=None, timeout=5.0)
        try:
            self.connection.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed row survives power loss, which consensus needs
            # (a replica must never contradict what it signed).
            self.connection.execute("PRAGMA synchronous=FULL")
            self.connection.executescript(_SCHEMA)
        except sqlite3.DatabaseError as error:
            self.connection.close()
            raise StateError(f"{self.path} is not a usable state file: {error}") from error
        self._check_schema_version()

    def _check_schema_version(self) -> None:
        found = self.get_meta("schema_version")
        if found is None:
            self.set_meta("schema_version", str(SCHEMA_VERSION))
        elif found != str(SCHEMA_VERSION):
            raise StateError(
                f"{self.path} has schema version {found}; this agent understands {SCHEMA_VERSION}"
            )

    def close(self) -> None:
        self.connection.close()

    def get_meta(self, key: str) -> str | None:
        row = self.connection.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.connection.execute(
            "INSERT INTO meta(key, value) VALUES(?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def save_members(self, members: Iterable[Mapping[str, Any]]) -> None:
        """Replace the stored membership view with `members` (status-shaped dicts)."""
        rows = [
            (m["peer_id"], m["state"], int(m["incarnation"]), json.dumps(m, sort_keys=True))
            for m in members
        ]
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute("DELETE FROM members")
            self.connection.executemany(
                "INSERT INTO members(peer_id, state, incarnation, record) VALUES(?, ?, ?, ?)", rows
            )

    def load_members(self) -> list[dict[str, Any]]:
        rows = self.connection.execute("SELECT record FROM members ORDER BY peer_id").fetchall()
        return [json.loads(row[0]) for row in rows]

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
