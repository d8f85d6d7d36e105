"""The JSON shape every `agent bench NAME --json` prints (stable keys)."""

from __future__ import annotations

import json
import os
import platform
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

_PACKAGES_REPORTED = (
    "agentmesh",
    "aioquic",
    "cbor2",
    "pynacl",
    "numpy",
    "zeroconf",
    "ai-edge-litert",
)


def machine_info() -> dict[str, Any]:
    """CPU count, Python version and the versions of the packages that matter."""
    packages: dict[str, str] = {}
    for name in _PACKAGES_REPORTED:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "implementation": sys.implementation.name,
        "platform": platform.platform(),
        "packages": packages,
    }


@dataclass
class BenchResult:
    """One measured case: its parameters and metrics (units last in each name)."""

    case: str
    params: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float | int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"case": self.case, "params": self.params, "metrics": self.metrics}


@dataclass
class BenchReport:
    """A whole benchmark run; `to_json()` is the stable machine-readable form."""

    bench: str
    results: list[BenchResult] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "bench": self.bench,
            "machine": machine_info(),
            "results": [result.to_json() for result in self.results],
            "notes": list(self.notes),
        }

    def render(self, as_json: bool) -> str:
        """JSON for machines, an aligned table for people."""
        if as_json:
            return json.dumps(self.to_json(), indent=2, sort_keys=False)
        lines = [f"bench {self.bench}"]
        for result in self.results:
            params = " ".join(f"{k}={v}" for k, v in result.params.items())
            lines.append(f"  {result.case}  {params}")
            for key, value in result.metrics.items():
                shown = f"{value:.4g}" if isinstance(value, float) else str(value)
                lines.append(f"      {key:<28} {shown}")
        lines.extend(f"  note: {note}" for note in self.notes)
        return "\n".join(lines)
