"""Device registry: 0600 SQLite, provisioning, monotone replay counters."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from agentmesh.gateway_peer.registry import DeviceRegistry, RegistryError, registry_path


def test_provision_lookup_and_file_mode(tmp_path: Path) -> None:
    with DeviceRegistry(tmp_path) as registry:
        key = registry.provision("mcu-1", 100)
        record = registry.lookup("mcu-1")
        assert record is not None and record.key == key and len(key) == 32
        assert registry.lookup("mcu-2") is None
        assert registry.device_ids() == ["mcu-1"]
    assert stat.S_IMODE(registry_path(tmp_path).stat().st_mode) == 0o600


def test_reprovisioning_is_refused_unless_removed(tmp_path: Path) -> None:
    with DeviceRegistry(tmp_path) as registry:
        first = registry.provision("mcu-1", 0)
        with pytest.raises(RegistryError, match="already provisioned"):
            registry.provision("mcu-1", 0)
        assert registry.remove("mcu-1")
        assert registry.provision("mcu-1", 0) != first
        with pytest.raises(RegistryError, match="device id"):
            registry.provision("bad id with spaces", 0)


def test_counters_persist_and_never_go_down(tmp_path: Path) -> None:
    with DeviceRegistry(tmp_path) as registry:
        registry.provision("mcu-1", 0)
        registry.save_counters({"mcu-1": 50, "unknown": 9})
        registry.save_counters({"mcu-1": 20})
    with DeviceRegistry(tmp_path) as registry:
        record = registry.lookup("mcu-1")
        assert record is not None and record.counter_max == 50


def test_registry_readable_by_others_is_refused(tmp_path: Path) -> None:
    DeviceRegistry(tmp_path).close()
    os.chmod(registry_path(tmp_path), 0o644)
    with pytest.raises(RegistryError, match="chmod 600"):
        DeviceRegistry(tmp_path)
