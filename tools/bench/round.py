"""`agent bench round`: a federated round over real agents on loopback (digits-8).

Runs `agent demo`'s mesh (8 real agent processes, 20 rounds by default) and
reports per-round wall time (round start decided -> new model committed),
protocol overhead (round time minus the slowest local training), application
bytes on the wire per agent per round (round frames and blobs, in and out) and
the peak RSS of one agent process while training.
"""

from __future__ import annotations

import argparse
import statistics

from agentmesh.edge._cmd_demo import DemoOptions, run_demo
from agentmesh.tools.bench._report import BenchReport, BenchResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--agents", type=int, default=8, help="agents (default 8)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--rule", default="fedavg", help="aggregation rule (default fedavg)")


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(args: argparse.Namespace) -> BenchReport:
    result = run_demo(DemoOptions(args.agents, args.rounds, args.rule, verbose=False))
    rounds = result.rounds
    times = [r["round_s"] for r in rounds]
    overheads = [r["overhead_s"] for r in rounds]
    trainings = [r["slowest_training_s"] for r in rounds]
    wire = [(a["bytes_in"] + a["bytes_out"]) / len(rounds) for a in result.per_agent]
    rss = [a["peak_rss_training_mb"] for a in result.per_agent]
    report = BenchReport("round")
    report.results.append(
        BenchResult(
            case="digits8_fl_round",
            params={
                "agents": args.agents,
                "rounds": args.rounds,
                "rule": args.rule,
                "transport": "quic-loopback",
                "runtime": result.per_agent[0]["runtime"],
            },
            metrics={
                "round_p50_s": round(statistics.median(times), 4),
                "round_p90_s": round(_quantile(times, 0.9), 4),
                "round_max_s": round(max(times), 4),
                "overhead_p50_s": round(statistics.median(overheads), 4),
                "slowest_training_p50_s": round(statistics.median(trainings), 4),
                "bytes_per_agent_per_round": round(statistics.mean(wire)),
                "bytes_per_agent_per_round_max": round(max(wire)),
                "rss_mb_peak": round(max(rss), 1),
                "final_accuracy": result.final_accuracy or 0.0,
                "wall_s": result.wall_s,
            },
        )
    )
    report.notes.append(
        "round time: from round_start decided to the new model committed, median over agents; "
        "bytes: round frames (PBFT, offers, fetches, results) and blobs, in + out, without "
        "QUIC framing or membership gossip; rss: ru_maxrss of each agent after training"
    )
    if not result.digests_agree:
        report.notes.append("WARNING: agents disagree on a committed model digest")
    return report
