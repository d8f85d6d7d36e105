"""Aggregation rules by name: a plug-in point so callers never import a rule directly.

A rule takes the updates, their weights (sample counts, or None) and named
parameters, and returns one update in the callers' layout. New rules (Bulyan,
geometric median, ...) are added with `RuleRegistry.register`; callers go through
`aggregate(name, ...)`, which rejects unknown names and parameters with typed errors.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from agentmesh.core.aggregation.krum import krum, multi_krum
from agentmesh.core.aggregation.mean import fedavg
from agentmesh.core.aggregation.order_stats import median, trimmed_mean
from agentmesh.core.aggregation.tensors import InvalidParameter, UnknownRule, Update


class AggregationRule(Protocol):
    """The signature every registered rule has."""

    def __call__(
        self, updates: Sequence[Update], weights: Sequence[float] | None, /, **params: float
    ) -> Update: ...


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """A registered rule: its parameters (name -> default, None if required)."""

    name: str
    rule: AggregationRule
    params: Mapping[str, float | None]
    robust: bool
    summary: str


class RuleRegistry:
    """name -> RuleSpec; `default_registry()` gives one holding the built-in rules."""

    def __init__(self) -> None:
        self._rules: dict[str, RuleSpec] = {}

    def register(self, spec: RuleSpec) -> None:
        """Add a rule; a name is registered once."""
        if spec.name in self._rules:
            raise InvalidParameter(f"rule {spec.name!r} is already registered")
        self._rules[spec.name] = spec

    def names(self) -> list[str]:
        return sorted(self._rules)

    def get(self, name: str) -> RuleSpec:
        try:
            return self._rules[name]
        except KeyError:
            raise UnknownRule(f"no aggregation rule {name!r}; known: {self.names()}") from None

    def aggregate(
        self,
        name: str,
        updates: Sequence[Update],
        weights: Sequence[float] | None = None,
        **params: float,
    ) -> Update:
        """Run rule `name` after checking its parameter names and filling defaults."""
        spec = self.get(name)
        unknown = sorted(set(params) - set(spec.params))
        if unknown:
            raise InvalidParameter(f"rule {name!r} takes no parameter(s) {unknown}")
        merged: dict[str, float] = {}
        for key, default in spec.params.items():
            if key in params:
                merged[key] = params[key]
            elif default is None:
                raise InvalidParameter(f"rule {name!r} needs parameter {key!r}")
            else:
                merged[key] = default
        return spec.rule(updates, weights, **merged)


def _fedavg(updates: Sequence[Update], weights: Sequence[float] | None, /, **_: float) -> Update:
    return fedavg(updates, weights)


def _median(updates: Sequence[Update], weights: Sequence[float] | None, /, **_: float) -> Update:
    return median(updates, weights)


def _trimmed_mean(
    updates: Sequence[Update], weights: Sequence[float] | None, /, **params: float
) -> Update:
    return trimmed_mean(updates, weights, trim_fraction=params["trim_fraction"])


def _krum(updates: Sequence[Update], weights: Sequence[float] | None, /, **params: float) -> Update:
    return krum(updates, weights, f=_integer(params, "f"))


def _multi_krum(
    updates: Sequence[Update], weights: Sequence[float] | None, /, **params: float
) -> Update:
    f = _integer(params, "f")
    # Default m = n - f: every update that could be honest (Blanchard et al., Section 4).
    m = _integer(params, "m") if params["m"] != 0 else len(updates) - f
    return multi_krum(updates, weights, f=f, m=m)


def _integer(params: Mapping[str, float], name: str) -> int:
    value = params[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidParameter(f"{name}={value!r} is not an integer")
    return value


_BUILT_INS: tuple[tuple[str, Callable[..., Update], Mapping[str, float | None], bool, str], ...] = (
    ("fedavg", _fedavg, {}, False, "weighted mean (McMahan et al. 2017)"),
    ("median", _median, {}, True, "coordinate-wise median (Yin et al. 2018)"),
    (
        "trimmed_mean",
        _trimmed_mean,
        {"trim_fraction": None},
        True,
        "coordinate-wise trimmed mean (Yin et al. 2018)",
    ),
    ("krum", _krum, {"f": None}, True, "Krum (Blanchard et al. 2017)"),
    (
        "multi_krum",
        _multi_krum,
        {"f": None, "m": 0},
        True,
        "Multi-Krum, mean of the m best (m=0: n-f)",
    ),
)


def default_registry() -> RuleRegistry:
    """A fresh registry holding the built-in rules (no shared mutable state)."""
    registry = RuleRegistry()
    for name, rule, params, robust, summary in _BUILT_INS:
        registry.register(RuleSpec(name, rule, params, robust, summary))
    return registry


def aggregate(
    name: str,
    updates: Sequence[Update],
    weights: Sequence[float] | None = None,
    **params: float,
) -> Update:
    """Run a built-in rule by name."""
    return _DEFAULT.aggregate(name, updates, weights, **params)


_DEFAULT = default_registry()
