"""`agent join`'s rounds flags reach RoundsSettings; the device-offer cap is bounded."""

from __future__ import annotations

import argparse

import pytest

from agentmesh.core.limits import DEVICE_OFFERS_PER_GATEWAY_MAX
from agentmesh.edge._cmd_agent import rounds_settings
from agentmesh.edge.cli import build_parser


def _join(*flags: str) -> argparse.Namespace:
    return build_parser().parse_args(["join", *flags])


def test_without_expect_there_are_no_rounds() -> None:
    assert rounds_settings(_join()) is None


def test_device_offers_max_defaults_to_the_limit_and_can_be_lowered() -> None:
    settings = rounds_settings(_join("--expect", "3"))
    assert settings is not None and settings.device_offers_max == DEVICE_OFFERS_PER_GATEWAY_MAX
    lowered = rounds_settings(_join("--expect", "3", "--device-offers-max", "1"))
    assert lowered is not None and lowered.device_offers_max == 1
    off = rounds_settings(_join("--expect", "3", "--device-offers-max", "0"))
    assert off is not None and off.device_offers_max == 0


@pytest.mark.parametrize("value", ["-1", str(DEVICE_OFFERS_PER_GATEWAY_MAX + 1)])
def test_device_offers_max_outside_its_range_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="--device-offers-max"):
        rounds_settings(_join("--expect", "3", "--device-offers-max", value))
