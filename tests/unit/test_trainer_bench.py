"""`agent bench trainer --json` keeps the shared report shape and measures real figures."""

from __future__ import annotations

import json
import subprocess
import sys


def test_trainer_bench_json() -> None:
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "agentmesh.edge",
            "bench",
            "trainer",
            "--json",
            "--steps",
            "20",
            "--rounds",
            "2",
        ],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["bench"] == "trainer"
    assert set(report) == {"bench", "machine", "results", "notes"}
    cases = {result["case"]: result["metrics"] for result in report["results"]}
    assert cases["digits_mlp-litert"]["step_p50_ms"] > 0
    assert cases["digits_mlp-litert"]["ratio_to_digits_mlp-numpy"] > 0
    assert cases["digits_cnn-litert"]["steps_per_s"] > 0
    assert 10 < cases["rss-after-one-step-litert"]["rss_mb"] < 1024
    # Two rounds already lift the model well above chance (10%).
    assert cases["digits8-fedavg-centralized-numpy"]["accuracy"] > 0.5
    litert = cases["digits8-fedavg-centralized-litert"]["accuracy"]
    assert litert == cases["digits8-fedavg-centralized-numpy"]["accuracy"]
