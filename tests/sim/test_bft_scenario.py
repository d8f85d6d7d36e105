"""The `bft` scenario over the simulator: 200+ seeds mixing Byzantine plug-ins and faults.

Each failing seed prints the `agent sim` command that replays it.
"""

from __future__ import annotations

import functools

import pytest

from agentmesh.core.consensus import sim_scenario
from agentmesh.core.consensus.adversary import BEHAVIOURS
from agentmesh.core.consensus.committee import Committee
from agentmesh.core.consensus.messages import CommitCertificate
from agentmesh.core.consensus.testing import FakeKeyring
from agentmesh.core.node import Event, InvariantViolation
from agentmesh.core.sim import SimConfig, get_scenario, run_scenario
from agentmesh.core.sim.network import NetworkConfig, UniformLatency

DURATION_MS = 8000
LIVENESS_BOUND_MS = 4000
# committee size -> seeds; nodes = size + 2 (a twin slot and an observer)
SEEDS = {4: 100, 7: 65, 10: 40}


def _network(seed: int) -> tuple[NetworkConfig, list[str]]:
    if seed % 4 == 3:
        flags = ["--loss", "0.01", "--duplicate", "0.05", "--reorder-ms", "5"]
        return NetworkConfig(UniformLatency(1, 10), loss=0.01, duplicate=0.05, reorder_ms=5), flags
    return NetworkConfig(UniformLatency(1, 10)), []


def _run(scenario_name: str, build: object, nodes: int, seed: int) -> tuple[bool, str]:
    network, flags = _network(seed)
    config = SimConfig(
        nodes=nodes, seed=seed, duration_ms=DURATION_MS, network=network, global_check_ms=0
    )
    scenario = sim_scenario.Scenario(scenario_name, "", build, 4)
    outcome = run_scenario(scenario, config, LIVENESS_BOUND_MS)
    replay = (
        f"agent sim --scenario bft --nodes {nodes} --seed {seed} "
        f"--duration-s {DURATION_MS / 1000:g} --liveness-bound-s {LIVENESS_BOUND_MS / 1000:g} "
        f"--latency uniform:1:10 {' '.join(flags)}"
    )
    problem = ""
    if outcome.sim.violation is not None:
        problem = f"safety: {outcome.sim.violation.message}"
    elif not outcome.liveness_judged:
        problem = f"liveness not judged: {outcome.liveness_note}"
    elif outcome.liveness_failures:
        problem = f"liveness: {outcome.liveness_failures[:3]}"
    return not problem, f"{problem}\n  replay: {replay}"


def test_scenario_is_registered() -> None:
    assert get_scenario("bft").nodes_min == 4


@pytest.mark.parametrize("size", sorted(SEEDS))
def test_random_seeds_stay_safe_and_live(size: int) -> None:
    failures = []
    for seed in range(1, SEEDS[size] + 1):
        ok, detail = _run("bft", sim_scenario.build, size + 2, seed)
        if not ok:
            failures.append(f"seed {seed}: {detail}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("attack", sorted(name for name in BEHAVIOURS if name != "honest"))
def test_each_attack_with_f_faulty_members(attack: str) -> None:
    build = functools.partial(sim_scenario.build, attack=attack)
    failures = []
    for size, seeds in ((4, range(1, 4)), (7, range(1, 3))):
        for seed in seeds:
            ok, detail = _run("bft", build, size + 2, seed)
            if not ok:
                failures.append(f"{attack} n={size} seed {seed}: {detail}")
    assert not failures, "\n".join(failures)


def _checks() -> tuple[sim_scenario.BftChecks, FakeKeyring, Committee]:
    keyring = FakeKeyring(b"k")
    committee = Committee(0, ("n0", "n1", "n2", "n3"))
    return sim_scenario.BftChecks(sim_scenario.BftPlan(4), keyring, committee), keyring, committee


def _decided(keyring: FakeKeyring, seq: int, digest: bytes, signers: int) -> Event:
    from agentmesh.core.consensus.messages import KIND_COMMIT, signed_payload

    payload = signed_payload(KIND_COMMIT, 0, 0, seq, digest)
    signatures = tuple((f"n{i}", keyring.signer(f"n{i}").sign(payload)) for i in range(signers))
    cert = CommitCertificate(0, 0, seq, digest, signatures)
    return Event(
        "decided",
        {"epoch": 0, "seq": seq, "view": 0, "digest": digest, "entries": (), "certificate": cert},
    )


def test_checker_catches_two_digests_at_one_sequence() -> None:
    checks, keyring, _ = _checks()
    checks.on_event("n0", _decided(keyring, 1, b"a" * 32, 3), 0)
    with pytest.raises(InvariantViolation, match="another digest"):
        checks.on_event("n1", _decided(keyring, 1, b"b" * 32, 3), 0)


def test_checker_catches_an_invalid_certificate_and_a_gap() -> None:
    checks, keyring, _ = _checks()
    with pytest.raises(InvariantViolation, match="invalid certificate"):
        checks.on_event("n0", _decided(keyring, 1, b"a" * 32, 2), 0)
    with pytest.raises(InvariantViolation, match="right after"):
        checks.on_event("n1", _decided(keyring, 2, b"a" * 32, 3), 0)
