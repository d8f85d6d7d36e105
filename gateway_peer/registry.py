"""The device registry: provisioned keys and persisted replay counters, in SQLite (0600)."""

from __future__ import annotations

import os
import secrets
import sqlite3
import stat
from collections.abc import Mapping
from pathlib import Path

from agentmesh.gateway_peer.devices import DeviceRecord
from agentmesh.gateway_peer.protocol import KEY_BYTES, is_device_id

REGISTRY_FILE_NAME = "mcu_devices.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS devices (
    device_id TEXT PRIMARY KEY,
    key BLOB NOT NULL,
    counter_max INTEGER NOT NULL DEFAULT 0,
    provisioned_at_s INTEGER NOT NULL
)
"""


class RegistryError(Exception):
    """The registry cannot be used or the request is invalid; the message says why."""


def registry_path(state_dir: Path) -> Path:
    return Path(state_dir) / REGISTRY_FILE_NAME


class DeviceRegistry:
    """Keys by device id; counters only move up. One file in the gateway's state dir."""

    def __init__(self, state_dir: Path) -> None:
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = registry_path(state_dir)
        self._create_private(self.path)
        self._check_mode(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(_SCHEMA)
        for suffix in ("-wal", "-shm"):
            sidecar = Path(str(self.path) + suffix)
            if sidecar.exists():
                os.chmod(sidecar, 0o600)

    @staticmethod
    def _create_private(path: Path) -> None:
        """Create the file 0600 from its first byte (the keys are secrets)."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return
        os.close(fd)

    @staticmethod
    def _check_mode(path: Path) -> None:
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise RegistryError(
                f"device registry {path} has mode {stat.S_IMODE(mode):04o}: others can read "
                f"device keys. Fix with: chmod 600 {path}"
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> DeviceRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def provision(self, device_id: str, now_s: int) -> bytes:
        """A fresh random key for a new device id (refuses to re-key an existing one)."""
        if not is_device_id(device_id):
            raise RegistryError(f"device id {device_id!r} is not 1..32 of [A-Za-z0-9._-]")
        key = secrets.token_bytes(KEY_BYTES)
        try:
            self._db.execute(
                "INSERT INTO devices (device_id, key, counter_max, provisioned_at_s) "
                "VALUES (?, ?, 0, ?)",
                (device_id, key, now_s),
            )
        except sqlite3.IntegrityError:
            raise RegistryError(
                f"device {device_id!r} is already provisioned; remove it first "
                "(agent firmware build --replace) to issue a new key"
            ) from None
        return key

    def remove(self, device_id: str) -> bool:
        cursor = self._db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
        return cursor.rowcount > 0

    def lookup(self, device_id: str) -> DeviceRecord | None:
        row = self._db.execute(
            "SELECT key, counter_max FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        if row is None:
            return None
        return DeviceRecord(device_id, bytes(row[0]), int(row[1]))

    def device_ids(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT device_id FROM devices ORDER BY 1")]

    def save_counters(self, counters: Mapping[str, int]) -> None:
        """Persist replay counters; a stored counter never goes down."""
        if not counters:
            return
        with self._db:  # one transaction, one fsync, for the whole batch
            self._db.execute("BEGIN")
            self._db.executemany(
                "UPDATE devices SET counter_max = MAX(counter_max, ?) WHERE device_id = ?",
                [(counter, device_id) for device_id, counter in counters.items()],
            )
