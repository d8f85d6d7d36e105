"""The consensus bench's timeline reader: phases and per-decision costs from node traces."""

from __future__ import annotations

import json
from pathlib import Path

from agentmesh.tools.bench.consensus import timeline_summary

MS = 1_000_000  # trace times are monotonic nanoseconds


def _write(trace_dir: Path, node: int, records: list[list[object]]) -> None:
    (trace_dir / f"consensus-node{node}.json").write_text(json.dumps(records))


def test_phases_are_measured_from_the_propose_that_each_decision_answers(tmp_path: Path) -> None:
    primary: list[list[object]] = [["phase", 0, "latency"]]
    backups: list[list[list[object]]] = [[], [], []]
    for seq, base in ((1, 100 * MS), (2, 200 * MS)):
        primary += [
            ["propose", base],
            ["flush", base + 1 * MS, base, 1],
            ["out", base + 1 * MS, "r1", "PrePrepare", seq],
            ["datagram_out", base + 1 * MS, 300],
            ["out", base + 6 * MS, "r1", "Vote:CM", seq],
            ["decided", base + 9 * MS, seq, seq * 4 * MS],
        ]
        for k, trace in enumerate(backups):
            trace += [
                ["in", base + (2 + k) * MS, "r0", "PrePrepare", seq],
                ["out", base + (3 + k) * MS, "r0", "Vote:PR", seq],
                ["out", base + (5 + k) * MS, "r0", "Vote:CM", seq],
                ["decided", base + 8 * MS, seq, seq * 2 * MS],
            ]
    primary.append(["phase", 300 * MS, "throughput"])
    _write(tmp_path, 0, primary)
    for k, trace in enumerate(backups):
        _write(tmp_path, k + 1, trace)
    summary = timeline_summary(tmp_path, 4)
    assert summary["t_pre_prepare_out_ms"] == 1.0
    assert summary["t_pre_prepare_in_ms"] == 3.0  # median of the three backups
    assert summary["t_prepare_out_ms"] == 4.0
    assert summary["t_commit_out_ms"] == 6.0  # median of 6, 5, 6, 7 (all four nodes)
    assert summary["t_decided_ms"] == 9.0
    assert summary["cpu_ms_per_decision"] == 2.5  # (4 + 2 + 2 + 2) / 4 nodes
    assert summary["sqlite_commits_per_decision"] == 0.25  # only the primary wrote here
    assert summary["sqlite_commit_p50_ms"] == 0.25
    assert summary["datagrams_out_per_decision"] == 0.25
