"""`agent sim`: run the deterministic simulator from the command line.

The simulator (agentmesh.core.sim) never reads a clock; this module measures wall
time, prints progress to stderr and builds the command line that replays a run.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from typing import Any

from agentmesh.core.sim import SimConfig, get_scenario, run_scenario, scenario_names
from agentmesh.core.sim.engine import Simulation
from agentmesh.core.sim.network import NetworkConfig
from agentmesh.core.sim.scenario import RunOutcome, Scenario
from agentmesh.core.sim.specs import (
    SpecError,
    parse_crash,
    parse_latency,
    parse_link_latency,
    parse_partition,
)

EPILOG = """\
spec syntaxes (times in seconds, nodes are n0..nN-1):
  NODES      N | nN | A-B | nA-nB | *   comma-separated, ranges inclusive   e.g. 0-499,n7
  --latency  const:MS | uniform:LO:HI | lognormal:MEDIAN_MS:SIGMA | pareto:SCALE_MS:ALPHA
             or a per-link override SRC_NODES>DST_NODES=SPEC (repeatable) e.g. 0-9>*=const:200
  --partition START-END:sym:A/B     no traffic between A and B     e.g. 10-20:sym:0-499/500-999
              START-END:oneway:A>B  A's messages to B are dropped   e.g. 5-15:oneway:n3>*
              START-END:isolate:A   A cut off from everyone else    e.g. 5-15:isolate:n7
              (omit END, as in 10-:isolate:n7, for a partition that never heals)
  --crash    T:NODES[:restart=T2]  crash at T; at T2 rebuilt from durable state
             e.g. 3:n12:restart=8

exit status: 0 all safe and live, 1 a safety violation or liveness failure, 2 bad usage.
"""


def register(subparsers: Any) -> None:
    """Add `agent sim`."""
    parser = subparsers.add_parser(
        "sim",
        help="run N simulated agents deterministically under a seeded fault schedule",
        description=(
            "Deterministic discrete-event simulation of N agents in one process. "
            "Same seed and options, same trace hash. A failed invariant stops the run "
            "and prints the command line that replays it."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = parser.add_argument
    add("--nodes", type=_positive_int, default=100, help="number of nodes (default 100)")
    add("--seed", type=int, default=1, help="the seed every random stream derives from")
    add("--duration-s", type=_non_negative_float, default=60.0, help="simulated seconds")
    add("--scenario", default="gossip", help="workload + fault plan + checks (default gossip)")
    add("--seeds", type=_positive_int, default=1, help="run K seeds: seed, seed+1, ...")
    add("--loss", type=_probability, default=0.0, help="probability a message is lost")
    add("--duplicate", type=_probability, default=0.0, help="probability of a duplicate")
    add("--reorder-ms", type=_non_negative_float, default=0.0, help="extra jitter in [0, MS]")
    add("--latency", action="append", default=[], metavar="SPEC", help="latency (see below)")
    add("--partition", action="append", default=[], metavar="SPEC", help="partition (below)")
    add("--crash", action="append", default=[], metavar="SPEC", help="crash/restart (below)")
    add("--drift-ppm", type=_non_negative_int, default=0, help="clock rate error, +-PPM")
    add("--clock-offset-ms", type=_non_negative_int, default=0, help="clock offsets, 0..MS")
    add(
        "--liveness-bound-s",
        type=_non_negative_float,
        default=20.0,
        help="time after the last fault heals by which work must complete (default 20)",
    )
    add(
        "--global-check-s",
        type=_non_negative_float,
        default=5.0,
        help="cadence of scenario-wide invariants (0: only at the end; default 5)",
    )
    add(
        "--progress-every",
        type=_non_negative_int,
        default=500_000,
        metavar="EVENTS",
        help="progress line on stderr every EVENTS events (0: none)",
    )
    add("--list-scenarios", action="store_true", help="print the scenario names and exit")
    add("--json", action="store_true", help="print one JSON object on stdout")
    parser.set_defaults(func=handle, sim_parser=parser)


def _number(text: str, kind: type) -> Any:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None


def _positive_int(text: str) -> int:
    value: int = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 1")
    return value


def _non_negative_int(text: str) -> int:
    value: int = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return value


def _non_negative_float(text: str) -> float:
    value: float = _number(text, float)
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a finite number >= 0")
    return value


def _probability(text: str) -> float:
    value: float = _number(text, float)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text!r} must be a probability in [0, 1]")
    return value


def build_config(args: argparse.Namespace, seed: int) -> SimConfig:
    """The SimConfig the arguments describe; SpecError/ValueError on bad specs."""
    nodes = args.nodes
    default_latency, links = None, []
    for spec in args.latency:
        if "=" in spec:
            links.append(parse_link_latency(spec, nodes))
        else:
            default_latency = parse_latency(spec)
    network_options: dict[str, Any] = {
        "links": tuple(links),
        "loss": args.loss,
        "duplicate": args.duplicate,
        "reorder_ms": args.reorder_ms,
    }
    if default_latency is not None:
        network_options["latency"] = default_latency
    return SimConfig(
        nodes=nodes,
        seed=seed,
        duration_ms=round(args.duration_s * 1000),
        network=NetworkConfig(**network_options),
        partitions=tuple(parse_partition(spec, nodes) for spec in args.partition),
        crashes=tuple(parse_crash(spec, nodes) for spec in args.crash),
        drift_ppm=args.drift_ppm,
        clock_offset_ms_max=args.clock_offset_ms,
        global_check_ms=round(args.global_check_s * 1000),
        progress_every_events=args.progress_every,
    )


def replay_command(args: argparse.Namespace, seed: int) -> str:
    """The exact `agent sim` command line that replays one seed of this run."""
    words = ["agent", "sim", "--scenario", args.scenario, "--nodes", str(args.nodes)]
    words += ["--seed", str(seed), "--duration-s", f"{args.duration_s:g}"]
    for flag, value, default in (
        ("--loss", args.loss, 0.0),
        ("--duplicate", args.duplicate, 0.0),
        ("--reorder-ms", args.reorder_ms, 0.0),
        ("--drift-ppm", args.drift_ppm, 0),
        ("--clock-offset-ms", args.clock_offset_ms, 0),
        ("--liveness-bound-s", args.liveness_bound_s, 20.0),
        ("--global-check-s", args.global_check_s, 5.0),
    ):
        if value != default:
            words += [flag, f"{value:g}" if isinstance(value, float) else str(value)]
    for flag, specs in (("--latency", args.latency), ("--partition", args.partition)):
        for spec in specs:
            words += [flag, spec]
    for spec in args.crash:
        words += ["--crash", spec]
    return shlex.join(words)


def _progress(seed: int, duration_ms: int, wall_start: float) -> Any:
    def report(virtual_ms: int, events: int) -> None:
        wall_s = time.perf_counter() - wall_start
        print(
            f"sim seed={seed}: t={virtual_ms / 1000:.1f}/{duration_ms / 1000:g} s "
            f"events={events} wall={wall_s:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    return report


def _run_seed(args: argparse.Namespace, scenario: Scenario, seed: int) -> tuple[RunOutcome, float]:
    config = build_config(args, seed)
    wall_start = time.perf_counter()
    progress = _progress(seed, config.duration_ms, wall_start) if args.progress_every else None
    try:
        outcome = run_scenario(scenario, config, round(args.liveness_bound_s * 1000), progress)
    except BaseException:
        # A machine raised something that is not an invariant (a bug): say how to replay it.
        print(f"replay: {replay_command(args, seed)}", file=sys.stderr)
        raise
    return outcome, time.perf_counter() - wall_start


def run_report(sim: Simulation, outcome: RunOutcome, wall_s: float, replay: str) -> dict[str, Any]:
    """The `agent sim --json` object of one seed."""
    stats = sim.stats
    violation = sim.violation
    return {
        "nodes": sim.config.nodes,
        "seed": sim.config.seed,
        "sim_s": sim.now_us / 1e6,
        "deliveries": stats.deliveries,
        "wall_s": round(wall_s, 3),
        "deliveries_per_s": round(stats.deliveries / wall_s, 1) if wall_s > 0 else 0.0,
        "trace_hash": sim.trace.digest(),
        "invariants": {
            "checked": stats.invariants_checked,
            "global_checks": stats.global_checks,
            "violations": 0 if violation is None else 1,
        },
        "violation": None if violation is None else violation.to_json(),
        "liveness": {
            "judged": outcome.liveness_judged,
            "failures": outcome.liveness_failures,
            "note": outcome.liveness_note,
        },
        "ticks": stats.ticks,
        "sends": stats.sends,
        "duplicates": stats.duplicates,
        "drops": dict(stats.drops),
        "events": stats.events,
        "faults_applied": stats.faults_applied,
        "trace_records": sim.trace.count,
        "replay": replay,
    }


def _print_failure(outcome: RunOutcome, replay: str) -> None:
    violation = outcome.sim.violation
    if violation is not None:
        where = violation.node_id or "scenario"
        print(
            f"INVARIANT VIOLATED at t={violation.time_ms} ms on {where}: {violation.message}",
            file=sys.stderr,
        )
    for failure in outcome.liveness_failures:
        print(f"LIVENESS FAILURE: {failure}", file=sys.stderr)
    print(f"replay: {replay}", file=sys.stderr)


def handle(args: argparse.Namespace) -> int:
    parser: argparse.ArgumentParser = args.sim_parser
    if args.list_scenarios:
        print("\n".join(scenario_names()))
        return 0
    try:
        scenario = get_scenario(args.scenario)
        build_config(args, args.seed)  # validate every spec before running anything
    except KeyError as error:
        parser.error(str(error.args[0]))
    except (SpecError, ValueError) as error:
        parser.error(str(error))
    if args.nodes < scenario.nodes_min:
        parser.error(f"scenario {scenario.name} needs --nodes >= {scenario.nodes_min}")
    if args.seeds == 1:
        return _single(args, scenario)
    return _many(args, scenario)


def _single(args: argparse.Namespace, scenario: Scenario) -> int:
    outcome, wall_s = _run_seed(args, scenario, args.seed)
    replay = replay_command(args, args.seed)
    report = run_report(outcome.sim, outcome, wall_s, replay)
    report["scenario"] = scenario.name
    failed = outcome.sim.violation is not None or bool(outcome.liveness_failures)
    if failed:
        _print_failure(outcome, replay)
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{scenario.name}: {report['nodes']} nodes, seed {report['seed']}, "
            f"{report['sim_s']:g} simulated s, {report['deliveries']} deliveries in "
            f"{report['wall_s']} s wall ({report['deliveries_per_s']:.0f}/s), "
            f"{report['invariants']['checked']} invariant checks, "
            f"{'FAILED' if failed else 'ok'}; trace {report['trace_hash']}"
        )
        if outcome.liveness_note:
            print(f"liveness {outcome.liveness_note}")
    return 1 if failed else 0


def _many(args: argparse.Namespace, scenario: Scenario) -> int:
    safety = liveness = 0
    failing: list[int] = []
    replays: dict[str, str] = {}
    judged = 0
    wall_total = 0.0
    for seed in range(args.seed, args.seed + args.seeds):
        outcome, wall_s = _run_seed(args, scenario, seed)
        wall_total += wall_s
        judged += outcome.liveness_judged
        bad = False
        if outcome.sim.violation is not None:
            safety += 1
            bad = True
        if outcome.liveness_failures:
            liveness += 1
            bad = True
        if bad:
            failing.append(seed)
            replays[str(seed)] = replay_command(args, seed)
            _print_failure(outcome, replays[str(seed)])
    report = {
        "scenario": scenario.name,
        "seeds": args.seeds,
        "safety_violations": safety,
        "liveness_failures": liveness,
        "failing_seeds": failing,
        "first_seed": args.seed,
        "nodes": args.nodes,
        "sim_s": args.duration_s,
        "liveness_judged": judged,
        "wall_s": round(wall_total, 3),
        "replay": replays,
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{scenario.name}: {args.seeds} seeds from {args.seed}, {safety} safety violations, "
            f"{liveness} liveness failures, liveness judged on {judged} seeds"
            + (f"; failing seeds {failing}" if failing else "")
        )
    return 1 if failing else 0
