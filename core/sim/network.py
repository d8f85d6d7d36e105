"""Link models of the simulator: latency distributions, loss, duplication, reordering.

Latencies are sampled in integer microseconds from the simulator's "latency"
random stream; every distribution is capped at `LATENCY_US_MAX` so a long tail
cannot push a message past the end of any sensible run.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

LATENCY_US_MAX = 30_000_000  # 30 s: the cap on any sampled latency
US_PER_MS = 1000


class LatencyModel:
    """A latency distribution; `sample_us(rng)` returns integer microseconds >= 0."""

    def spec(self) -> str:
        """The SPEC string that parses back to this model."""
        raise NotImplementedError

    def sample_us(self, rng: random.Random) -> int:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class ConstantLatency(LatencyModel):
    """Every message takes exactly `ms`."""

    ms: float

    def spec(self) -> str:
        return f"const:{self.ms:g}"

    def sample_us(self, rng: random.Random) -> int:
        return int(self.ms * US_PER_MS)


@dataclass(frozen=True, slots=True)
class UniformLatency(LatencyModel):
    """Uniform in [low_ms, high_ms]."""

    low_ms: float
    high_ms: float

    def spec(self) -> str:
        return f"uniform:{self.low_ms:g}:{self.high_ms:g}"

    def sample_us(self, rng: random.Random) -> int:
        low = self.low_ms * US_PER_MS
        return int(low + rng.random() * (self.high_ms * US_PER_MS - low))


@dataclass(frozen=True, slots=True)
class LognormalLatency(LatencyModel):
    """Log-normal with the given median (ms) and sigma of the underlying normal."""

    median_ms: float
    sigma: float

    def spec(self) -> str:
        return f"lognormal:{self.median_ms:g}:{self.sigma:g}"

    def sample_us(self, rng: random.Random) -> int:
        value = rng.lognormvariate(math.log(self.median_ms * US_PER_MS), self.sigma)
        return int(min(value, LATENCY_US_MAX))


@dataclass(frozen=True, slots=True)
class ParetoLatency(LatencyModel):
    """Pareto (type I): `scale_ms * X` with X >= 1 of shape `alpha` (heavier tail as alpha -> 1)."""

    scale_ms: float
    alpha: float

    def spec(self) -> str:
        return f"pareto:{self.scale_ms:g}:{self.alpha:g}"

    def sample_us(self, rng: random.Random) -> int:
        value = self.scale_ms * US_PER_MS * rng.paretovariate(self.alpha)
        return int(min(value, LATENCY_US_MAX))


@dataclass(frozen=True, slots=True)
class LinkLatency:
    """Override of the latency of every link from a node in `sources` to one in `targets`."""

    sources: frozenset[int]
    targets: frozenset[int]
    model: LatencyModel


@dataclass(frozen=True, slots=True)
class NetworkConfig:
    """Everything the simulated network does to a message between send and delivery."""

    latency: LatencyModel = field(default_factory=lambda: UniformLatency(5.0, 50.0))
    links: tuple[LinkLatency, ...] = ()
    loss: float = 0.0  # probability a message is dropped
    duplicate: float = 0.0  # probability a message is delivered twice (independent latencies)
    reorder_ms: float = 0.0  # extra uniform jitter in [0, reorder_ms] so messages overtake

    def __post_init__(self) -> None:
        for name in ("loss", "duplicate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1], got {value}")
        if self.reorder_ms < 0:
            raise ValueError(f"reorder_ms must be >= 0, got {self.reorder_ms}")

    def latency_for(self, source: int, target: int) -> LatencyModel:
        """The model of one directed link: the first matching override, else the default."""
        for link in self.links:
            if source in link.sources and target in link.targets:
                return link.model
        return self.latency
