"""Capability score, role eligibility and the change threshold with hysteresis.

Roles are decided on *settled* capabilities: a member's advert replaces the one
last acted upon only when it changed past a threshold (`change_reason`), so load
jitter, a few MB of RAM or a slowly draining battery do not reshuffle roles.
"""

from __future__ import annotations

from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.core.roles.config import AGGREGATOR, TRAINER, VALIDATOR, RolesConfig

SCORE_MAX = 1_000_000  # the bound core/consensus/committee.py accepts in a committee entry
MCU = "mcu"


def capability_score(caps: Capabilities) -> int:
    """A positive integer weight for the validator/aggregator draws; 0 for microcontrollers.

    Logarithmic in cores, RAM and bandwidth so a server is several times, not
    thousands of times, likelier than a Pi; headroom (1 - load), accelerators
    and mains power multiply. At most ~490,000 < SCORE_MAX.
    """
    if caps.device_class == MCU:
        return 0
    cores_level = min(caps.cpu_cores, 4096).bit_length() + 1
    ram_level = max(caps.ram_total_mb.bit_length(), 1)
    bandwidth_level = (caps.link_bandwidth_kbps // 1000).bit_length() + 1
    headroom = 11 - min(caps.cpu_load_permille, 1000) // 100
    accelerated = 2 if caps.accelerators else 1
    mains = 2 if caps.battery_percent is None else 1
    score = cores_level * ram_level * bandwidth_level * headroom * accelerated * mains
    return min(score, SCORE_MAX)


def _powered(caps: Capabilities, config: RolesConfig) -> bool:
    return caps.battery_percent is None or caps.battery_percent >= config.battery_percent_min


def may_train(caps: Capabilities) -> bool:
    """The owner allows it and a trainer runtime is installed."""
    return TRAINER in caps.roles_allowed and caps.trainer_runtime != "none"


def may_aggregate(caps: Capabilities, config: RolesConfig) -> bool:
    """Never a microcontroller or a device low on battery; needs room for ~100 updates."""
    return (
        AGGREGATOR in caps.roles_allowed
        and caps.device_class != MCU
        and _powered(caps, config)
        and caps.ram_free_mb >= config.aggregator_ram_free_mb_min
    )


def may_validate(caps: Capabilities, config: RolesConfig) -> bool:
    """Never a microcontroller or a device low on battery."""
    return (
        VALIDATOR in caps.roles_allowed
        and caps.device_class != MCU
        and _powered(caps, config)
        and caps.ram_free_mb >= config.validator_ram_free_mb_min
    )


def _ratio_exceeds(old: int, new: int, ratio: float) -> bool:
    low, high = sorted((max(old, 1), max(new, 1)))
    return high >= low * ratio


def _battery_crossed(old: int | None, new: int | None, config: RolesConfig) -> bool:
    """Schmitt trigger: drop out below the minimum, come back only above min + hysteresis."""
    if old is None or new is None:
        return old is not new
    low = config.battery_percent_min
    if old >= low:
        return new < low
    return new >= low + config.battery_hysteresis_percent


def change_reason(old: Capabilities, new: Capabilities, config: RolesConfig) -> str | None:
    """Why `new` must replace the settled `old` for role purposes, or None if it need not.

    Discrete facts (class, cores, RAM size, runtime, accelerators, allowed roles,
    mains/battery) always count; volatile ones only past the config thresholds,
    measured from `old` (so drift adds up). The address does not affect roles.
    """
    if (
        old.device_class != new.device_class
        or old.roles_allowed != new.roles_allowed
        or old.accelerators != new.accelerators
        or old.trainer_runtime != new.trainer_runtime
        or old.cpu_cores != new.cpu_cores
        or old.ram_total_mb != new.ram_total_mb
    ):
        return "hardware or policy"
    if _battery_crossed(old.battery_percent, new.battery_percent, config):
        return "battery"
    if abs(old.cpu_load_permille - new.cpu_load_permille) >= config.load_delta_permille:
        return "cpu load"
    if _ratio_exceeds(old.ram_free_mb, new.ram_free_mb, config.ram_free_ratio):
        return "free ram"
    if _ratio_exceeds(old.link_bandwidth_kbps, new.link_bandwidth_kbps, config.bandwidth_ratio):
        return "bandwidth"
    return None


def settle(old: Capabilities | None, new: Capabilities, config: RolesConfig) -> Capabilities:
    """The capabilities roles are decided on: `old` unless `new` changed past a threshold."""
    if old is None or old is new or change_reason(old, new, config) is not None:
        return new
    return old
