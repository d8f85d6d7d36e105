"""Aggregation rules: pure, bit-reproducible functions over numpy float32 updates.

See docs/aggregation.md for the determinism argument and the measured speeds.
"""

from agentmesh.core.aggregation.krum import (
    ExactDistances,
    KrumSelection,
    check_krum_parameters,
    exact_squared_distances,
    krum,
    krum_select,
    multi_krum,
)
from agentmesh.core.aggregation.mean import fedavg
from agentmesh.core.aggregation.order_stats import median, trimmed_mean
from agentmesh.core.aggregation.registry import (
    AggregationRule,
    RuleRegistry,
    RuleSpec,
    aggregate,
    default_registry,
)
from agentmesh.core.aggregation.tensors import (
    AggregationError,
    InvalidParameter,
    InvalidUpdate,
    InvalidWeights,
    NonFiniteUpdate,
    TooFewUpdates,
    UnknownRule,
    Update,
    canonical_order,
    digest,
    drop_non_finite,
)

__all__ = [
    "AggregationError",
    "AggregationRule",
    "ExactDistances",
    "InvalidParameter",
    "InvalidUpdate",
    "InvalidWeights",
    "KrumSelection",
    "NonFiniteUpdate",
    "RuleRegistry",
    "RuleSpec",
    "TooFewUpdates",
    "UnknownRule",
    "Update",
    "aggregate",
    "canonical_order",
    "check_krum_parameters",
    "default_registry",
    "digest",
    "drop_non_finite",
    "exact_squared_distances",
    "fedavg",
    "krum",
    "krum_select",
    "median",
    "multi_krum",
    "trimmed_mean",
]
