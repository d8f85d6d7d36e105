"""Federated-learning rounds finalized by the PBFT committee (docs/federated-rounds.md)."""

from .compute import RULES, ComputeError, RuleConfig, aggregate_model
from .config import RoundsConfig
from .entries import EntryError, UpdateOffer, is_well_formed
from .machine import FetchRequest, RoundsMachine
from .roles import Genesis, RolesError, aggregator_order, committee_size, genesis_roles

__all__ = [
    "RULES",
    "ComputeError",
    "EntryError",
    "FetchRequest",
    "Genesis",
    "RolesError",
    "RoundsConfig",
    "RoundsMachine",
    "RuleConfig",
    "UpdateOffer",
    "aggregate_model",
    "aggregator_order",
    "committee_size",
    "genesis_roles",
    "is_well_formed",
]
