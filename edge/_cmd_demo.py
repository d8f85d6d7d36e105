"""`agent demo`: N real agents on loopback run federated rounds on digits, no central process.

The parent only launches `agent join` processes (real QUIC, mDNS on 127.0.0.1,
SQLite in a temporary state directory each, LiteRT) and reads their control
sockets; the agents find each other, form the committee and run the rounds.
Every child is ended on exit, Ctrl-C or failure (and dies with the parent on
Linux through PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agentmesh.core.rounds import RULES
from agentmesh.edge.control import ControlError, request
from agentmesh.edge.rounds_host import POISONS

FORM_TIMEOUT_S = 120.0  # 8 cold Python processes share 2 cores: imports dominate
ROUND_TIMEOUT_S = 60.0  # a view change backs off up to 16 s under load
POLL_S = 0.2
_PR_SET_PDEATHSIG = 1


@dataclass
class DemoOptions:
    agents: int = 8
    rounds: int = 20
    rule: str = "fedavg"
    byzantine: int = 0
    alpha: float = 0.5
    window_ms: int = 3000
    json: bool = False
    keep: bool = False  # keep the state directories (for inspection)
    verbose: bool = True


@dataclass
class DemoResult:
    agents: int
    rounds: list[dict[str, Any]] = field(default_factory=list)
    final_accuracy: float | None = None
    wall_s: float = 0.0
    digests_agree: bool = False
    per_agent: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The `agent demo --json` shape of BENCHMARKS.md."""
        return {"agents": self.agents, "rounds": self.rounds,
                "final_accuracy": self.final_accuracy, "wall_s": self.wall_s}  # fmt: skip


class DemoError(Exception):
    """The demo mesh did not form or a round did not finish in time."""


def register(subparsers: Any) -> None:
    """Add `agent demo`."""
    parser = subparsers.add_parser(
        "demo",
        help="run federated learning over N real agents on this machine",
        description="Start N real `agent join` processes on loopback (QUIC, mDNS on "
        "127.0.0.1, SQLite, LiteRT) that find each other, elect a PBFT committee and run "
        "federated rounds on the digits-8 task with no central process. Shows held-out "
        "accuracy, round time and who aggregated and validated each round.",
    )
    parser.add_argument("--agents", type=int, default=8, help="agents (default 8)")
    parser.add_argument("--rounds", type=int, default=20, help="rounds (default 20)")
    parser.add_argument("--rule", choices=sorted(RULES), default="fedavg",
                        help="aggregation rule (default fedavg)")  # fmt: skip
    parser.add_argument("--byzantine", type=int, default=0, metavar="K",
                        help="K agents poison their updates (sign flip, noise, ALIE)")  # fmt: skip
    parser.add_argument("--non-iid", dest="alpha", type=float, default=0.5, metavar="ALPHA",
                        help="Dirichlet label-skew alpha (default 0.5: digits-8)")  # fmt: skip
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", action="store_true", help="keep the agents' state dirs")
    parser.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    if args.agents < 1 or args.rounds < 1 or not 0 <= args.byzantine < args.agents:
        print("agent demo: need --agents >= 1, --rounds >= 1, 0 <= --byzantine < --agents",
              file=sys.stderr)  # fmt: skip
        return 2
    options = DemoOptions(args.agents, args.rounds, args.rule, args.byzantine, args.alpha,
                          json=args.json, keep=args.keep, verbose=not args.json)  # fmt: skip
    try:
        result = run_demo(options)
    except DemoError as error:
        print(f"agent demo: {error}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(result.to_json(), indent=2))
    else:
        print(_summary(result, options))
    return 0 if result.digests_agree else 1


class DemoMesh:
    """The child processes of one demo run."""

    def __init__(self, root: Path, options: DemoOptions) -> None:
        self.root = root
        self.options = options
        self.mesh = f"demo-{secrets.token_hex(4)}"  # never collide with another mesh here
        self.key = secrets.token_hex(16)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.dirs = [root / f"agent{k}" for k in range(options.agents)]

    def poison_of(self, k: int) -> str | None:
        """The last K agents are Byzantine, cycling through the attacks."""
        first_bad = self.options.agents - self.options.byzantine
        return None if k < first_bad else POISONS[(k - first_bad) % len(POISONS)]

    def start(self) -> None:
        env = {**os.environ, "AGENTMESH_MESH_KEY": self.key}
        for k, state_dir in enumerate(self.dirs):
            argv = [sys.executable, "-m", "agentmesh.edge", "join", "--loopback",
                    "--mesh", self.mesh, "--state-dir", str(state_dir),
                    "--expect", str(self.options.agents), "--partition", str(k),
                    "--rounds", str(self.options.rounds), "--rule", self.options.rule,
                    "--non-iid", str(self.options.alpha),
                    "--window-ms", str(self.options.window_ms),
                    "--log-level", "warning"]  # fmt: skip
            poison = self.poison_of(k)
            if poison is not None:
                argv += ["--poison", poison]
            log = (self.root / f"agent{k}.log").open("ab")
            process = subprocess.Popen(
                argv, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
            )
            self.processes.append(process)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5.0
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check_alive(self) -> None:
        for k, process in enumerate(self.processes):
            if process.poll() is not None:
                tail = (self.root / f"agent{k}.log").read_text(errors="replace")[-2000:]
                raise DemoError(f"agent {k} exited with {process.returncode}:\n{tail}")

    def query(self) -> list[dict[str, Any] | None]:
        return asyncio.run(_query_all(self.dirs))


async def _query_all(dirs: list[Path]) -> list[dict[str, Any] | None]:
    async def one(state_dir: Path) -> dict[str, Any] | None:
        try:
            result: dict[str, Any] = await asyncio.wait_for(request(state_dir, "rounds"), 2.0)
        except (ControlError, OSError, TimeoutError):
            return None
        return result

    return list(await asyncio.gather(*(one(d) for d in dirs)))


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the demo process dies (no orphans even on kill -9)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def run_demo(options: DemoOptions) -> DemoResult:
    """Run the mesh until every agent evaluated every round; always ends the processes."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="agentmesh-demo-"))
    mesh = DemoMesh(root, options)
    failed = True
    try:
        mesh.start()
        _say(options, f"started {options.agents} agents (mesh {mesh.mesh}, state in {root})")
        statuses = _wait_formed(mesh)
        committee = next(s for s in statuses if s)["committee"]
        _say(options, f"committee formed: {', '.join(p[-8:] for p in committee)}")
        statuses = _follow_rounds(mesh, options)
        result = _result(statuses, options, time.monotonic() - started)
        failed = False
    finally:
        mesh.stop()
        if not options.keep and not failed:
            _remove_tree(root)  # on failure the logs stay for the error message's pointer
    return result


def _wait_formed(mesh: DemoMesh) -> list[dict[str, Any]]:
    deadline = time.monotonic() + FORM_TIMEOUT_S
    while time.monotonic() < deadline:
        mesh.check_alive()
        statuses = mesh.query()
        if all(s is not None and s.get("formed") for s in statuses):
            return [s for s in statuses if s is not None]
        time.sleep(POLL_S)
    raise DemoError(f"the {mesh.options.agents} agents did not form a committee within "
                    f"{FORM_TIMEOUT_S:.0f} s (see the logs in {mesh.root})")  # fmt: skip


def _follow_rounds(mesh: DemoMesh, options: DemoOptions) -> list[dict[str, Any]]:
    shown = 0
    last_progress = time.monotonic()
    while True:
        mesh.check_alive()
        statuses = [s for s in mesh.query() if s is not None]
        done = _closed_everywhere(statuses, options.agents)
        while shown < done:
            shown += 1
            _say(options, _progress_line(_round_figures(statuses, shown)))
            last_progress = time.monotonic()
        if shown >= options.rounds:
            return statuses
        if time.monotonic() - last_progress > ROUND_TIMEOUT_S:
            raise DemoError(f"round {shown + 1} did not finish within {ROUND_TIMEOUT_S:.0f} s "
                            f"(logs in {mesh.root}; rerun with --keep to keep them)")  # fmt: skip
        time.sleep(POLL_S)


def _closed_everywhere(statuses: list[dict[str, Any]], agents: int) -> int:
    """Rounds every agent closed (and evaluated, when committed)."""
    if len(statuses) < agents:
        return 0
    counts = []
    for status in statuses:
        closed = 0
        for record in status["rounds"]:
            finished = record["status"] == "aborted" or (
                record["status"] == "committed" and record["accuracy"] is not None
            )
            if record["round"] != closed + 1 or not finished:
                break
            closed += 1
        counts.append(closed)
    return min(counts)


def _round_figures(statuses: list[dict[str, Any]], number: int) -> dict[str, Any]:
    records = [next(r for r in s["rounds"] if r["round"] == number) for s in statuses]
    times = [(r["closed_ms"] - r["started_ms"]) / 1000 for r in records]
    trainings = [r["train_s"] for r in records if r["train_s"] is not None]
    round_s = statistics.median(times)
    slowest = max(trainings, default=0.0)
    committed = [r for r in records if r["status"] == "committed"]
    reference = committed[0] if committed else records[0]
    return {
        "round": number,
        "accuracy": reference["accuracy"],
        "round_s": round(round_s, 4),
        "slowest_training_s": round(slowest, 4),
        "overhead_s": round(round_s - slowest, 4),
        "aggregators": [reference["aggregator"]] if reference["aggregator"] else [],
        "validators": reference["validators"],
        "status": reference["status"],
        "models": sorted({r["model"] for r in committed}),
    }


def _progress_line(figures: dict[str, Any]) -> str:
    accuracy = figures["accuracy"]
    shown = "aborted" if accuracy is None else f"accuracy {accuracy:6.2%}"
    aggregator = ",".join(p[-6:] for p in figures["aggregators"]) or "-"
    validators = ",".join(p[-6:] for p in figures["validators"]) or "-"
    return (f"round {figures['round']:>3}  {shown}  round {figures['round_s']:.3f} s  "
            f"slowest training {figures['slowest_training_s']:.3f} s  "
            f"aggregated by {aggregator}  validated by {validators}")  # fmt: skip


def _result(statuses: list[dict[str, Any]], options: DemoOptions, wall_s: float) -> DemoResult:
    result = DemoResult(options.agents, wall_s=round(wall_s, 3))
    agree = True
    for number in range(1, options.rounds + 1):
        figures = _round_figures(statuses, number)
        agree = agree and len(figures.pop("models")) <= 1
        figures.pop("status")
        result.rounds.append(figures)
    accuracies = [r["accuracy"] for r in result.rounds if r["accuracy"] is not None]
    result.final_accuracy = accuracies[-1] if accuracies else None
    result.digests_agree = agree
    result.per_agent = [
        {key: s.get(key) for key in ("peer_id", "partition", "samples", "roles", "poison",
                                      "bytes_in", "bytes_out", "peak_rss_training_mb",
                                      "peak_rss_mb", "runtime")}
        for s in statuses
    ]  # fmt: skip
    return result


def _summary(result: DemoResult, options: DemoOptions) -> str:
    times = [r["round_s"] for r in result.rounds]
    final = "n/a" if result.final_accuracy is None else f"{result.final_accuracy:.2%}"
    lines = [
        f"{options.agents} agents, {options.rounds} rounds, rule {options.rule}, "
        f"{options.byzantine} Byzantine: final held-out accuracy {final}",
        f"round time median {statistics.median(times):.3f} s, max {max(times):.3f} s; "
        f"wall {result.wall_s:.1f} s",
        "every agent committed the same models" if result.digests_agree
        else "AGENTS DISAGREE on a committed model",
    ]  # fmt: skip
    return "\n".join(lines)


def _say(options: DemoOptions, text: str) -> None:
    if options.verbose:
        print(text, flush=True)


def _remove_tree(root: Path) -> None:
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(OSError):
            if path.is_dir() and not path.is_symlink():
                path.rmdir()
            else:
                path.unlink()
    with contextlib.suppress(OSError):
        root.rmdir()
