"""The spec syntaxes of `agent sim` and the latency distributions they name."""

from __future__ import annotations

import random
import statistics

import pytest

from agentmesh.core.sim.faults import Crash, Partition, last_heal_ms
from agentmesh.core.sim.network import (
    ConstantLatency,
    LognormalLatency,
    ParetoLatency,
    UniformLatency,
)
from agentmesh.core.sim.specs import (
    SpecError,
    parse_crash,
    parse_latency,
    parse_link_latency,
    parse_nodes,
    parse_partition,
)


def test_node_sets() -> None:
    assert parse_nodes("0-2,n7", 10) == {0, 1, 2, 7}
    assert parse_nodes("n3-n5", 10) == {3, 4, 5}
    assert parse_nodes("*", 4) == {0, 1, 2, 3}
    for bad in ("x", "5-2", "n10", "1-", ""):
        with pytest.raises(SpecError):
            parse_nodes(bad, 10)


@pytest.mark.parametrize(
    ("text", "model"),
    [
        ("const:5", ConstantLatency(5)),
        ("uniform:2:20", UniformLatency(2, 20)),
        ("lognormal:20:0.5", LognormalLatency(20, 0.5)),
        ("pareto:10:1.5", ParetoLatency(10, 1.5)),
    ],
)
def test_latency_specs_round_trip(text: str, model: object) -> None:
    parsed = parse_latency(text)
    assert parsed == model and parse_latency(parsed.spec()) == parsed


@pytest.mark.parametrize(
    "text", ["const", "const:-1", "uniform:5", "lognormal:0:1", "pareto:1:0", "const:nan", "x:1"]
)
def test_bad_latency_specs(text: str) -> None:
    with pytest.raises(SpecError):
        parse_latency(text)


def test_latency_samples_follow_their_distribution() -> None:
    rng = random.Random(1)
    assert {ConstantLatency(5).sample_us(rng) for _ in range(10)} == {5000}
    uniform = [UniformLatency(2, 20).sample_us(rng) for _ in range(2000)]
    assert 2000 <= min(uniform) and max(uniform) <= 20000
    lognormal = [LognormalLatency(20, 0.5).sample_us(rng) for _ in range(4000)]
    assert 18_000 < statistics.median(lognormal) < 22_000
    pareto = [ParetoLatency(10, 1.5).sample_us(rng) for _ in range(4000)]
    assert min(pareto) >= 10_000 and max(pareto) > 20 * statistics.median(pareto)


def test_link_latency_spec() -> None:
    link = parse_link_latency("0-1>n3=const:200", 5)
    assert link.sources == {0, 1} and link.targets == {3} and link.model == ConstantLatency(200)
    with pytest.raises(SpecError):
        parse_link_latency("0-1=const:5", 5)


def test_partition_specs() -> None:
    sym = parse_partition("10-20:sym:0-1/2-3", 4)
    assert sym == Partition(10_000, 20_000, "sym", frozenset({0, 1}), frozenset({2, 3}))
    oneway = parse_partition("1.5-:oneway:n0>*", 3)
    assert oneway.end_ms is None and oneway.start_ms == 1500
    assert oneway.blocks(0, 2) and not oneway.blocks(2, 0)
    isolate = parse_partition("5-15:isolate:n2", 4)
    assert isolate.blocks(2, 0) and isolate.blocks(1, 2) and not isolate.blocks(0, 1)
    assert sym.blocks(0, 3) and sym.blocks(3, 0) and not sym.blocks(0, 1)


@pytest.mark.parametrize(
    "text", ["10-20:sym:0-1", "x-20:sym:0/1", "20-10:isolate:0", "1-2:sym:0/0", "1-2:oneway:0/1"]
)
def test_bad_partition_specs(text: str) -> None:
    with pytest.raises(SpecError):
        parse_partition(text, 4)


def test_crash_specs_and_last_heal() -> None:
    crash = parse_crash("3:n1,n2:restart=8.5", 4)
    assert crash == Crash(3000, frozenset({1, 2}), 8500)
    assert parse_crash("2:0", 4).restart_ms is None
    for bad in ("3", "3:n1:restart=2", "a:n1", "3:n1:restart", "-1:n1"):
        with pytest.raises(SpecError):
            parse_crash(bad, 4)
    cut = Partition(1000, 4000, "isolate", frozenset({0}))
    assert last_heal_ms((cut,), (crash,)) == 8500
    assert last_heal_ms((Partition(1000, None, "isolate", frozenset({0})),), ()) is None
