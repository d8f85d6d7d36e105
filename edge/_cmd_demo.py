"""`agent demo`: the local demo mesh.

Until federated rounds land (issue 5), the demo runs the deterministic simulator
over the membership scenario: the same protocol code real agents run, here as
simulated agents in one process. It says so before it starts.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from agentmesh.edge import _cmd_sim


def register(subparsers: Any) -> None:
    """Add `agent demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="run a local demo mesh",
        description="Run a local demo mesh. Federated-learning rounds are not built yet; "
        "meanwhile the demo simulates a mesh of agents (membership: joins, a crash, "
        "failure detection) with the real protocol code.",
    )
    parser.add_argument("--agents", type=int, default=200, help="simulated agents (default 200)")
    parser.add_argument("--seed", type=int, default=1, help="seed (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    print(
        "agent demo: federated rounds over real agents are not built yet (issue 5); "
        f"simulating a {args.agents}-agent mesh with the real membership protocol instead.",
        file=sys.stderr,
    )
    sim_parser = argparse.ArgumentParser(prog="agent sim")
    sub = sim_parser.add_subparsers()
    _cmd_sim.register(sub)
    argv = ["sim", "--scenario", "membership", "--nodes", str(args.agents), "--seed",
            str(args.seed), "--duration-s", "30"]  # fmt: skip
    if args.json:
        argv.append("--json")
    sim_args = sim_parser.parse_args(argv)
    return int(sim_args.func(sim_args))
