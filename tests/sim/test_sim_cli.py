"""`agent sim`: JSON shapes, replay lines that really replay, and clean usage errors."""

from __future__ import annotations

import json
import random
import shlex
from typing import Any

import pytest

from agentmesh.core.gossip import GossipConfig, GossipNode
from agentmesh.core.node import InvariantViolation
from agentmesh.core.sim import (
    Scenario,
    ScenarioParams,
    ScenarioSetup,
    node_name,
    register_scenario,
)
from agentmesh.core.sim.gossip_scenario import GossipChecks, _workload
from agentmesh.edge.cli import main

SINGLE_KEYS = {"nodes", "seed", "sim_s", "deliveries", "wall_s", "deliveries_per_s", "trace_hash"}
MANY_KEYS = {"scenario", "seeds", "safety_violations", "liveness_failures", "failing_seeds"}


class _Forgetful(GossipNode):
    """A planted bug: node n5's invariant fails once it knows three rumors."""

    def check_invariants(self) -> None:
        super().check_invariants()
        if self.node_id == "n5" and len(self.known) >= 3:
            raise InvariantViolation(f"planted bug: n5 knows {len(self.known)} rumors")


def _planted(params: ScenarioParams) -> ScenarioSetup:
    peers = [node_name(i) for i in range(params.nodes)]

    def factory(node_id: str, rng: random.Random, durable: Any) -> GossipNode:
        return _Forgetful(node_id, rng, peers, GossipConfig(), durable)

    return ScenarioSetup(factory, GossipChecks(), _workload(params))


register_scenario(Scenario("test-planted-bug", "a planted invariant failure", _planted))


def _agent(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, str, str]:
    code = main(list(words))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_single_run_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _agent(
        capsys, "sim", "--nodes", "30", "--seed", "4", "--duration-s", "30", "--json",
        "--loss", "0.1", "--partition", "2-6:isolate:n3", "--crash", "3:n4:restart=5",
    )  # fmt: skip
    assert code == 0, err
    report = json.loads(out)
    assert SINGLE_KEYS <= set(report)
    assert report["nodes"] == 30 and report["seed"] == 4 and report["sim_s"] == 30.0
    assert report["deliveries"] > 0 and report["invariants"]["violations"] == 0
    assert report["invariants"]["checked"] >= report["deliveries"]
    assert report["drops"]["loss"] > 0 and report["drops"]["partition"] > 0
    assert report["faults_applied"] == 4
    assert len(report["trace_hash"]) == 32


def test_progress_goes_to_stderr_not_into_the_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _agent(
        capsys, "sim", "--nodes", "30", "--duration-s", "20", "--progress-every", "1000", "--json"
    )
    assert code == 0
    json.loads(out)  # stdout is exactly one JSON object
    assert "sim seed=1: t=" in err


def test_many_seeds_json_shape(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = _agent(
        capsys, "sim", "--scenario", "gossip-chaos", "--seeds", "3", "--nodes", "30",
        "--duration-s", "30", "--liveness-bound-s", "12", "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert MANY_KEYS <= set(report)
    assert report["scenario"] == "gossip-chaos" and report["seeds"] == 3
    assert report["safety_violations"] == 0 and report["failing_seeds"] == []
    assert code == 0


def test_liveness_failures_are_counted_per_seed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _agent(
        capsys, "sim", "--seeds", "2", "--nodes", "20", "--duration-s", "30", "--loss", "1",
        "--seed", "7", "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert code == 1
    assert report["liveness_failures"] == 2 and report["failing_seeds"] == [7, 8]
    assert "LIVENESS FAILURE" in err


def _replay_words(err: str) -> list[str]:
    (line,) = [line for line in err.splitlines() if line.startswith("replay: ")]
    words = shlex.split(line.removeprefix("replay: "))
    assert words[:2] == ["agent", "sim"]
    return words[1:]


def test_invariant_violation_prints_a_replay_line_that_replays(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = _agent(
        capsys, "sim", "--scenario", "test-planted-bug", "--seeds", "3", "--seed", "11",
        "--nodes", "20", "--duration-s", "30", "--drift-ppm", "300", "--json",
    )  # fmt: skip
    report = json.loads(out)
    assert code == 1 and report["safety_violations"] == 3
    assert report["failing_seeds"] == [11, 12, 13]
    assert "INVARIANT VIOLATED" in err and "planted bug" in err
    first = _replay_words(err.split("INVARIANT VIOLATED")[1])
    assert "--seed" in first and first[first.index("--seed") + 1] == "11"
    assert "--drift-ppm" in first and "--seeds" not in first
    code, out, err = _agent(capsys, *first, "--json")
    replayed = json.loads(out)
    assert code == 1 and replayed["violation"]["node"] == "n5"
    again = json.loads(_agent(capsys, *first, "--json")[1])
    assert again["violation"] == replayed["violation"]
    assert again["trace_hash"] == replayed["trace_hash"]


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["--partition", "10-20:sym:0-499/500-999"], "node 499 does not exist"),
        (["--partition", "20-10:sym:0/1"], "END must be after START"),
        (["--partition", "1-2:diagonal:0/1"], "kind must be sym, oneway or isolate"),
        (["--partition", "1-2:sym:0-3/2-5"], "overlap"),
        (["--crash", "3:n2:restart=1"], "restart must come after the crash"),
        (["--crash", "3:n2:reboot=9"], "restart=SECONDS"),
        (["--latency", "gauss:3"], "kind must be const"),
        (["--latency", "uniform:9:3"], "LO <= HI"),
        (["--latency", "0-1>n99=const:5"], "node 99 does not exist"),
        (["--loss", "1.5"], "probability"),
        (["--nodes", "0"], "must be >= 1"),
        (["--scenario", "nope"], "unknown scenario"),
    ],
)
def test_bad_input_exits_2_with_a_message(
    capsys: pytest.CaptureFixture[str], words: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["sim", "--nodes", "10", *words])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
