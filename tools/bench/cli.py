"""`agent bench NAME [--json]`: the registry of benchmarks."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from agentmesh.tools.bench._report import BenchReport

# name -> (module, one-line help). Each module exposes
# `add_arguments(parser)` and `run(args) -> BenchReport`.
BENCHES: dict[str, tuple[str, str]] = {
    "transport": ("agentmesh.tools.bench.transport", "QUIC one-hop latency, signed 1 KB message"),
    "trainer": ("agentmesh.edge.trainer.bench", "trainer step time, RSS, digits-8 accuracy"),
    "sim": ("agentmesh.tools.bench.sim", "simulator deliveries per wall second, 1k and 10k nodes"),
    "aggregation": ("agentmesh.tools.bench.aggregation", "FedAvg, median, trim, Krum vs copy"),
    "wire": ("agentmesh.tools.bench.wire", "CBOR encode/decode and envelope seal/open, 1 KB"),
    "membership": ("agentmesh.tools.bench.membership", "SWIM join/crash convergence, 1k+10k nodes"),
    "roles": ("agentmesh.tools.bench.roles", "assignment time, fan-in spread, churn, takeover"),
    "consensus": ("agentmesh.tools.bench.consensus", "PBFT decisions/s, commit latency: sim+QUIC"),
    "round": ("agentmesh.tools.bench.round", "FL round, 8 real agents: time, overhead, bytes, RSS"),
    "gateway": ("agentmesh.tools.bench.gateway", "MCU bridge: msgs/s, 100 devices, added latency"),
    "tasks": ("agentmesh.tools.bench.tasks", "tasks over real agents: tasks/s, p50/p99 latency"),
}


def register(subparsers: Any) -> None:
    """Add `agent bench` with one sub-subcommand per benchmark."""
    bench = subparsers.add_parser(
        "bench",
        help="run a benchmark and print its figures (JSON with --json)",
        description="Run a benchmark. Figures are medians; JSON keys are stable.",
    )
    names = bench.add_subparsers(dest="bench_name", metavar="NAME")
    for name, (module_name, help_text) in BENCHES.items():
        parser = names.add_parser(name, help=help_text, description=help_text)
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.set_defaults(func=_run, bench_module=module_name)
        importlib.import_module(module_name).add_arguments(parser)
    bench.set_defaults(func=lambda args: _usage(bench))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _run(args: argparse.Namespace) -> int:
    module = importlib.import_module(args.bench_module)
    report: BenchReport = module.run(args)
    print(report.render(args.json))
    sys.stdout.flush()
    return 0
