"""The small text syntaxes of `agent sim` (node sets, latency, partitions, crashes).

    NODES      item[,item...]   item = N | nN | A-B | nA-nB (inclusive) | *   e.g. 0-499,n7
    LATENCY    const:MS | uniform:LO_MS:HI_MS | lognormal:MEDIAN_MS:SIGMA | pareto:SCALE_MS:ALPHA
    LINK       SRC_NODES>DST_NODES=LATENCY                      e.g. 0-9>*=const:200
    PARTITION  START-[END]:sym:A/B | START-[END]:oneway:A>B | START-[END]:isolate:A
               (seconds; END omitted = never heals)        e.g. 10-20:sym:0-499/500-999
    CRASH      T:NODES[:restart=T2]   (seconds)            e.g. 3:n12:restart=8

Parsers raise `SpecError` (a ValueError) with a message that names the bad part.
"""

from __future__ import annotations

import math
import re

from agentmesh.core.sim.faults import Crash, Partition
from agentmesh.core.sim.network import (
    ConstantLatency,
    LatencyModel,
    LinkLatency,
    LognormalLatency,
    ParetoLatency,
    UniformLatency,
)

_TIME = r"(\d+(?:\.\d*)?)"
_NODE_ITEM = re.compile(r"n?(\d+)(?:-n?(\d+))?")


class SpecError(ValueError):
    """A spec string does not follow its syntax or names nodes that do not exist."""


def seconds_to_ms(text: str, what: str) -> int:
    """Parse non-negative seconds (e.g. `2.5`) into integer milliseconds."""
    try:
        value = float(text)
    except ValueError:
        raise SpecError(f"{what}: {text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise SpecError(f"{what}: {text!r} must be a finite number of seconds >= 0")
    return round(value * 1000)


def parse_nodes(text: str, nodes: int) -> frozenset[int]:
    """A node set over node indices 0..nodes-1."""
    found: set[int] = set()
    for item in text.split(","):
        item = item.strip()
        if item == "*":
            found.update(range(nodes))
            continue
        match = _NODE_ITEM.fullmatch(item)
        if match is None:
            raise SpecError(f"node set {text!r}: {item!r} is not N, nN, A-B or *")
        low = int(match.group(1))
        high = int(match.group(2)) if match.group(2) is not None else low
        if high < low:
            raise SpecError(f"node set {text!r}: range {item!r} runs backwards")
        if high >= nodes:
            raise SpecError(f"node set {text!r}: node {high} does not exist (nodes={nodes})")
        found.update(range(low, high + 1))
    return frozenset(found)


def _floats(parts: list[str], count: int, spec: str) -> list[float]:
    if len(parts) != count:
        raise SpecError(f"latency {spec!r}: expected {count} number(s) after the kind")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise SpecError(f"latency {spec!r}: parameters must be numbers") from None
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise SpecError(f"latency {spec!r}: parameters must be finite and >= 0")
    return values


def parse_latency(text: str) -> LatencyModel:
    """A latency distribution (see the module docstring)."""
    kind, _, rest = text.partition(":")
    parts = rest.split(":") if rest else []
    if kind == "const":
        (ms,) = _floats(parts, 1, text)
        return ConstantLatency(ms)
    if kind == "uniform":
        low, high = _floats(parts, 2, text)
        if high < low:
            raise SpecError(f"latency {text!r}: uniform needs LO <= HI")
        return UniformLatency(low, high)
    if kind == "lognormal":
        median, sigma = _floats(parts, 2, text)
        if median <= 0:
            raise SpecError(f"latency {text!r}: lognormal needs a median > 0")
        return LognormalLatency(median, sigma)
    if kind == "pareto":
        scale, alpha = _floats(parts, 2, text)
        if scale <= 0 or alpha <= 0:
            raise SpecError(f"latency {text!r}: pareto needs SCALE > 0 and ALPHA > 0")
        return ParetoLatency(scale, alpha)
    raise SpecError(f"latency {text!r}: kind must be const, uniform, lognormal or pareto")


def parse_link_latency(text: str, nodes: int) -> LinkLatency:
    """`SRC>DST=LATENCY`: a per-link override."""
    link, sep, model = text.partition("=")
    sources, arrow, targets = link.partition(">")
    if not sep or not arrow:
        raise SpecError(f"link latency {text!r}: expected SRC_NODES>DST_NODES=LATENCY")
    return LinkLatency(
        parse_nodes(sources, nodes), parse_nodes(targets, nodes), parse_latency(model)
    )


def _window(text: str, spec: str) -> tuple[int, int | None]:
    match = re.fullmatch(rf"{_TIME}-{_TIME}?", text)
    if match is None:
        raise SpecError(f"partition {spec!r}: time window {text!r} is not START-END or START-")
    start = seconds_to_ms(match.group(1), f"partition {spec!r}")
    end = None if match.group(2) is None else seconds_to_ms(match.group(2), f"partition {spec!r}")
    if end is not None and end <= start:
        raise SpecError(f"partition {spec!r}: END must be after START")
    return start, end


def parse_partition(text: str, nodes: int) -> Partition:
    """A partition with its window (see the module docstring)."""
    parts = text.split(":", 2)
    if len(parts) != 3:
        raise SpecError(f"partition {text!r}: expected START-END:KIND:NODES")
    window, kind, sides = parts
    start, end = _window(window, text)
    if kind == "isolate":
        return Partition(start, end, "isolate", parse_nodes(sides, nodes))
    separator = {"sym": "/", "oneway": ">"}.get(kind)
    if separator is None:
        raise SpecError(f"partition {text!r}: kind must be sym, oneway or isolate")
    side_a, found, side_b = sides.partition(separator)
    if not found:
        raise SpecError(f"partition {text!r}: {kind} needs two node sets A{separator}B")
    a, b = parse_nodes(side_a, nodes), parse_nodes(side_b, nodes)
    if kind == "sym" and a & b:
        raise SpecError(f"partition {text!r}: the two sides overlap")
    return Partition(start, end, kind, a, b)


def parse_crash(text: str, nodes: int) -> Crash:
    """A crash with an optional restart (see the module docstring)."""
    parts = text.split(":")
    if len(parts) not in (2, 3):
        raise SpecError(f"crash {text!r}: expected T:NODES or T:NODES:restart=T2")
    at_ms = seconds_to_ms(parts[0], f"crash {text!r}")
    restart_ms = None
    if len(parts) == 3:
        key, _, value = parts[2].partition("=")
        if key != "restart" or not value:
            raise SpecError(f"crash {text!r}: third part must be restart=SECONDS")
        restart_ms = seconds_to_ms(value, f"crash {text!r}")
        if restart_ms <= at_ms:
            raise SpecError(f"crash {text!r}: restart must come after the crash")
    return Crash(at_ms, parse_nodes(parts[1], nodes), restart_ms)
