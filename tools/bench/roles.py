"""`agent bench roles`: role assignment time, fan-in spread, churn stability, takeover.

Cases: `assign_n{N}` times `assign_roles` over a seeded realistic fleet
(median of --repeats, wall ms on this machine) and reports the resulting seats
and the trainers-per-aggregator spread; `churn_{event}_n{N}` counts the role
changes one event causes after renegotiation; `takeover_all_n{N}` kills every
first-tier aggregator mid-round and reports who carries the trainers.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

from agentmesh.core.roles import assign_roles, assignment_digest, renegotiate
from agentmesh.core.roles.config import RolesConfig
from agentmesh.core.roles.scenario import (
    all_aggregators_die,
    base_assignment,
    churn_figures,
    fleet_view,
    spread,
)
from agentmesh.tools.bench._report import BenchReport, BenchResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", default="1000,10000,100000", help="comma-separated sizes")
    parser.add_argument("--churn-agents", type=int, default=10_000, help="size for churn cases")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per size (median)")


def _median_ms(samples: list[float]) -> float:
    return round(statistics.median(samples) * 1000, 1)


def _assign_case(agents: int, seed: int, repeats: int, config: RolesConfig) -> BenchResult:
    members, adverts = fleet_view(agents, seed)
    randomness = random.Random(seed).randbytes(32)
    assign_s: list[float] = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        assignment = assign_roles(members, adverts, randomness, config)
        assign_s.append(time.perf_counter() - started)
    started = time.perf_counter()
    digest = assignment_digest(assignment)
    digest_s = time.perf_counter() - started
    started = time.perf_counter()
    renegotiate(assignment, members, adverts, config)
    renegotiate_s = time.perf_counter() - started
    metrics: dict[str, float | int] = {
        "assign_ms": _median_ms(assign_s),
        "renegotiate_ms": round(renegotiate_s * 1000, 1),
        "digest_ms": round(digest_s * 1000, 1),
        "trainers": len(assignment.trainers),
        "validators": len(assignment.validators),
        "aggregator_tiers": len(assignment.aggregator_tiers),
        "aggregators": len(assignment.aggregators),
        "standbys": len(assignment.standbys),
    }
    for level in range(len(assignment.aggregator_tiers)):
        metrics[f"tier{level}_aggregators"] = len(assignment.aggregator_tiers[level])
        figures = spread(assignment.fan_in_counts(level))
        metrics.update({f"tier{level}_fan_in_{k}": v for k, v in figures.items()})
    params = {"agents": agents, "seed": seed, "repeats": repeats, "digest": digest[:16]}
    return BenchResult(f"assign_n{agents}", params, metrics)


def run(args: argparse.Namespace) -> BenchReport:
    config = RolesConfig()
    report = BenchReport("roles")
    for agents in (int(part) for part in str(args.agents).split(",") if part.strip()):
        report.results.append(_assign_case(agents, args.seed, args.repeats, config))
    base, view = base_assignment(args.churn_agents, args.seed, config)
    params = {"agents": args.churn_agents, "seed": args.seed}
    for event, changes in churn_figures(base, view, args.seed, config).items():
        metrics: dict[str, float | int] = dict(changes)
        report.results.append(BenchResult(f"churn_{event}_n{args.churn_agents}", params, metrics))
    started = time.perf_counter()
    survival = all_aggregators_die(base)
    survival["takeover_ms"] = round((time.perf_counter() - started) * 1000, 1)
    report.results.append(BenchResult(f"takeover_all_n{args.churn_agents}", params, survival))
    report.notes += [
        "assign_ms: assign_roles alone (fleet prebuilt), median; single-threaded CPython + numpy",
        "churn cases renegotiate from the same base assignment after one event each",
        "trainers_moved counts trainers whose first-tier aggregator changed",
        "fleet: 30% mcu, 35% Pi, 10% Jetson, 20% laptop, 5% server (core/roles/fleet.py)",
    ]
    return report
