"""`agent bench transport --json` runs end to end (tiny sizes) and keeps the report shape."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration


def test_transport_bench_reports_every_case() -> None:
    command = [
        sys.executable, "-m", "agentmesh.edge", "bench", "transport", "--json",
        "--rounds", "30", "--warmup", "5", "--connections", "2", "--blob-mib", "1",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["bench"] == "transport"
    cases = {result["case"]: result["metrics"] for result in report["results"]}
    assert set(cases) == {
        "quic_signed_envelope",
        "quic_unsigned_frame",
        "aioquic_bare_stream_echo",
        "udp_echo",
        "quic_new_connection",
        "quic_blob",
    }
    signed = cases["quic_signed_envelope"]
    assert 0 < signed["p50_ms"] <= signed["p99_ms"]
    assert signed["ratio_to_udp_echo"] > 0
    assert 0 < signed["seal_p50_ms"] and 0 < signed["open_p50_ms"]
    for case in ("quic_signed_envelope", "quic_unsigned_frame"):
        # One datagram each way carries the request and the reply (and the ACKs).
        assert cases[case]["datagrams_per_round_trip"] >= 2
        assert cases[case]["client_cpu_per_round_trip_ms"] > 0
    assert "datagrams_per_round_trip" not in cases["udp_echo"]
    assert cases["quic_blob"]["digest_ok"] == 1
    assert report["results"][0]["params"]["wire_bytes"] == 1024
