"""What this device offers, read with psutil: the capability advert's numbers."""

from __future__ import annotations

import os

import psutil

from agentmesh.core.membership import Capabilities
from agentmesh.core.membership.capabilities import ROLES

_LINK_BANDWIDTH_KBPS_DEFAULT = 100_000  # a LAN guess until a link is measured


def detect_trainer_runtime() -> str:
    """The best local trainer runtime: litert, tflite-runtime, numpy or none."""
    from agentmesh.edge.trainer import available_runtimes

    runtimes = available_runtimes()
    for name in ("litert", "tflite-runtime", "numpy"):
        if name in runtimes:
            return name
    return "none"


def device_class(ram_total_mb: int, cores: int) -> str:
    """A coarse class from the hardware: edge boards, laptops, servers."""
    if ram_total_mb <= 4096 or (cores <= 2 and ram_total_mb <= 8192):
        return "edge"
    if ram_total_mb <= 32768 and cores <= 16:
        return "laptop"
    return "server"


def probe_capabilities(
    roles_allowed: tuple[str, ...] = ROLES,
    address: str | None = None,
    device_class_override: str | None = None,
) -> Capabilities:
    """Measure this machine now (cheap: no sampling delay)."""
    memory = psutil.virtual_memory()
    cores = os.cpu_count() or 1
    load_1m = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    battery = psutil.sensors_battery() if hasattr(psutil, "sensors_battery") else None
    ram_total_mb = int(memory.total // (1024 * 1024))
    return Capabilities(
        cpu_cores=cores,
        cpu_load_permille=min(int(load_1m / cores * 1000), 2**32 - 1),
        ram_total_mb=ram_total_mb,
        ram_free_mb=min(int(memory.available // (1024 * 1024)), ram_total_mb),
        battery_percent=None if battery is None else int(battery.percent),
        accelerators=(),
        trainer_runtime=detect_trainer_runtime(),
        link_bandwidth_kbps=_LINK_BANDWIDTH_KBPS_DEFAULT,
        device_class=device_class_override or device_class(ram_total_mb, cores),
        roles_allowed=tuple(roles_allowed),
        address=address,
    )
