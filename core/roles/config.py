"""Role names, the tunables of role assignment and its typed error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from agentmesh.core.membership.table import ALIVE, SUSPECT

TRAINER: Final = "trainer"
AGGREGATOR: Final = "aggregator"
VALIDATOR: Final = "validator"
COORDINATOR: Final = "coordinator"
ROLE_NAMES: Final = (TRAINER, AGGREGATOR, VALIDATOR, COORDINATOR)

RANDOMNESS_BYTES_MIN: Final = 16
RANDOMNESS_BYTES_MAX: Final = 64


class RolesError(ValueError):
    """Role assignment was called with unusable arguments (a caller bug)."""


@dataclass(frozen=True, slots=True)
class RolesConfig:
    """What every agent must agree on to derive the same roles (part of the mesh config)."""

    # Validators: committee size is the largest 3f + 1 <= min(target, eligible).
    validators_target: int = 7
    # Aggregators: one per this many trainers (first tier) and per this many
    # aggregators of the tier below (higher tiers, only when a tier exceeds it).
    trainers_per_aggregator: int = 100
    children_per_aggregator_max: int = 100
    # Renegotiation keeps the previous aggregator count while the mean fan-in
    # stays inside [low, high] * trainers_per_aggregator (count hysteresis).
    fan_in_low_ratio: float = 0.8
    fan_in_high_ratio: float = 1.25
    # Power: battery devices below `battery_percent_min` never validate or
    # aggregate; one that fell below may serve again once it is back at
    # `battery_percent_min + battery_hysteresis_percent` (Schmitt trigger).
    battery_percent_min: int = 20
    battery_hysteresis_percent: int = 10
    # An aggregator holds ~100 updates in RAM; validators keep the log.
    aggregator_ram_free_mb_min: int = 128
    validator_ram_free_mb_min: int = 64
    # Significant change of a volatile capability (smaller ones are ignored until
    # they add up past these, measured from the capabilities last acted upon).
    load_delta_permille: int = 250
    ram_free_ratio: float = 2.0
    bandwidth_ratio: float = 2.0
    # Member states that keep or take roles: a suspect may still refute (SWIM §4.2).
    states_serving: frozenset[str] = frozenset({ALIVE, SUSPECT})

    def __post_init__(self) -> None:
        if self.validators_target < 1 or self.trainers_per_aggregator < 1:
            raise RolesError("validators_target and trainers_per_aggregator must be >= 1")
        if self.children_per_aggregator_max < 2:
            raise RolesError("children_per_aggregator_max must be >= 2")
        if not 0 < self.fan_in_low_ratio <= 1 <= self.fan_in_high_ratio:
            raise RolesError("need 0 < fan_in_low_ratio <= 1 <= fan_in_high_ratio")
        if not 0 <= self.battery_percent_min <= 100 or self.battery_hysteresis_percent < 0:
            raise RolesError("battery thresholds out of range")
        if self.ram_free_ratio < 1 or self.bandwidth_ratio < 1 or self.load_delta_permille < 0:
            raise RolesError("change thresholds must be ratios >= 1 and deltas >= 0")


def committee_size(target: int, eligible: int) -> int:
    """The largest n = 3f + 1 with n <= min(target, eligible); 0 if nobody is eligible."""
    ceiling = min(target, eligible)
    return 0 if ceiling < 1 else 3 * ((ceiling - 1) // 3) + 1
