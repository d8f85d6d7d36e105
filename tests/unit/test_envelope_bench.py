"""`agent bench wire` runs and keeps the BENCHMARKS.md JSON shape."""

from __future__ import annotations

import json
import subprocess
import sys


def test_bench_wire_json_shape() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmesh.edge",
            "bench",
            "wire",
            "--json",
            "--repeats",
            "1",
            "--batch",
            "40",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["bench"] == "wire"
    cases = {result["case"]: result["metrics"] for result in report["results"]}
    assert {"agent-envelope-1kb", "pure-envelope-1kb", "envelope-gossip-1kb"} <= set(cases)
    assert cases["agent-envelope-1kb"]["decode_p50_us"] > 0
    assert "ratio_to_cbor2-unchecked-baseline" in cases["agent-many-items"]
    assert cases["envelope-gossip-1kb"]["opens_per_s"] > 0
