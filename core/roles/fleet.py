"""A seeded, realistic device mix for simulations and benchmarks of role assignment.

Shares follow a mixed lab/field deployment: many microcontrollers and Pis,
some Jetsons and laptops, few servers. Numbers are typical of each kind
(ESP32-class MCUs, Raspberry Pi 3/4/5, Jetson Nano/Orin, laptops, rack servers).
"""

from __future__ import annotations

import random
from typing import Final

from agentmesh.core.membership.capabilities import ROLES, Capabilities

DEVICE_SHARES: Final = (
    ("mcu", 0.30),
    ("pi", 0.35),
    ("jetson", 0.10),
    ("laptop", 0.20),
    ("server", 0.05),
)
# What owners allow (`agent join --roles ...`): most allow everything.
ROLE_POLICIES: Final = (
    (ROLES, 0.70),
    (("trainer",), 0.15),
    (("trainer", "aggregator"), 0.10),
    (("aggregator", "validator"), 0.05),
)


def _pick(rng: random.Random, table: tuple[tuple[object, float], ...]) -> object:
    point, total = rng.random(), 0.0
    for value, share in table:
        total += share
        if point < total:
            return value
    return table[-1][0]


def _battery(rng: random.Random, share: float) -> int | None:
    return rng.randint(0, 100) if rng.random() < share else None


def device(kind: str, rng: random.Random, roles: tuple[str, ...] = ROLES) -> Capabilities:
    """Capabilities of one device of `kind` (mcu, pi, jetson, laptop, server)."""
    load = rng.randint(0, 1000)
    if kind == "mcu":
        return Capabilities(1, load, 1, 0, _battery(rng, 0.5), (), "none", 250, "mcu", ("trainer",))
    if kind == "pi":
        cores, ram = 4, rng.choice((1024, 2048, 4096, 8192))
        runtime = rng.choice(("tflite-runtime", "litert"))
        bandwidth = rng.choice((10_000, 50_000, 100_000))
        battery, device_class = _battery(rng, 0.1), "edge"
        accelerators: tuple[str, ...] = ()
    elif kind == "jetson":
        cores, ram = rng.choice((4, 6, 8, 12)), rng.choice((4096, 8192, 16384, 32768))
        runtime, bandwidth = "litert", rng.choice((100_000, 1_000_000))
        battery, accelerators, device_class = None, ("cuda",), "edge"
    elif kind == "laptop":
        cores, ram = rng.choice((4, 8, 12, 16)), rng.choice((8192, 16384, 32768))
        runtime = rng.choice(("litert", "numpy"))
        bandwidth = rng.choice((20_000, 100_000, 500_000))
        battery, accelerators, device_class = _battery(rng, 0.6), (), "laptop"
    elif kind == "server":
        cores, ram = rng.choice((16, 32, 64, 128)), rng.choice((32768, 131072, 524288))
        runtime, bandwidth = "litert", rng.choice((1_000_000, 10_000_000))
        battery, device_class = None, "server"
        accelerators = ("cuda",) if rng.random() < 0.3 else ()
    else:
        raise ValueError(f"unknown device kind {kind!r}")
    free = ram * rng.randint(20, 80) // 100
    return Capabilities(
        cores, load, ram, free, battery, accelerators, runtime, bandwidth, device_class, roles
    )


def device_mix(count: int, rng: random.Random, prefix: str = "agent-") -> dict[str, Capabilities]:
    """`count` devices keyed by peer id (`agent-000042`); kinds and owner policies from rng."""
    fleet: dict[str, Capabilities] = {}
    for index in range(count):
        kind = str(_pick(rng, DEVICE_SHARES))
        roles = _pick(rng, ROLE_POLICIES)
        assert isinstance(roles, tuple)
        fleet[f"{prefix}{index:06d}"] = device(kind, rng, roles)
    return fleet
