"""SQLite state: WAL file, metadata and membership snapshots survive a reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from agentmesh.edge.state import STATE_FILE_NAME, StateError, StateStore


def test_meta_and_members_survive_reopen(tmp_path: Path) -> None:
    members = [
        {"peer_id": "b", "state": "alive", "incarnation": 3, "capabilities": {"cpus": 4}},
        {"peer_id": "a", "state": "suspect", "incarnation": 1, "capabilities": {}},
    ]
    with StateStore(tmp_path) as store:
        store.set_meta("mesh", "demo")
        store.set_meta("mesh", "lab")
        store.save_members(members)
    with StateStore(tmp_path) as store:
        assert store.get_meta("mesh") == "lab"
        assert store.get_meta("missing") is None
        assert store.load_members() == sorted(members, key=lambda m: m["peer_id"])
        journal = store.connection.execute("PRAGMA journal_mode").fetchone()[0]
    assert journal == "wal"


def test_save_members_replaces_the_view(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.save_members([{"peer_id": "a", "state": "alive", "incarnation": 1}])
        store.save_members([{"peer_id": "c", "state": "dead", "incarnation": 2}])
        assert [m["peer_id"] for m in store.load_members()] == ["c"]


def test_other_schema_version_is_refused(tmp_path: Path) -> None:
    with StateStore(tmp_path) as store:
        store.set_meta("schema_version", "99")
    with pytest.raises(StateError, match="schema version 99"):
        StateStore(tmp_path)


def test_corrupt_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / STATE_FILE_NAME).write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StateError, match="not a usable state file"):
        StateStore(tmp_path)
