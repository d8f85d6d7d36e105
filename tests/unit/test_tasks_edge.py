"""The task host's pure helpers: advertised-capability overrides, join flags, inputs, outputs."""

from __future__ import annotations

import argparse
import struct
from pathlib import Path

import numpy as np
import pytest

from agentmesh.core.membership.capabilities import Capabilities
from agentmesh.edge.tasks_control import decode_output, read_input, rows_from_bytes
from agentmesh.edge.tasks_host import (
    TasksHostError,
    TasksSettings,
    add_tasks_flags,
    override_capabilities,
    tasks_settings,
)

CAPS = Capabilities(4, 100, 8192, 4096, None, (), "litert", 100_000, "laptop",
                    ("trainer", "validator"), "127.0.0.1:1")  # fmt: skip


def test_overrides_from_the_environment_text_and_the_join_flags() -> None:
    changed = override_capabilities(CAPS, None, '{"device_class": "edge", "ram_total_mb": 2048}')
    assert (changed.device_class, changed.ram_total_mb, changed.ram_free_mb) == ("edge", 2048, 2048)
    settings = TasksSettings(4, advertise={"accelerators": ["gpu"], "ram_total_mb": 512})
    both = override_capabilities(CAPS, settings, '{"device_class": "server"}')
    assert both.accelerators == ("gpu",) and both.ram_total_mb == 512
    assert both.device_class == "server" and both.address == CAPS.address
    assert override_capabilities(CAPS, None, "") is CAPS


@pytest.mark.parametrize(
    "text", ["not json", '{"address": "1.2.3.4:5"}', '{"device_class": "toaster"}',
             '{"ram_total_mb": "lots"}', "[1, 2]"],
)  # fmt: skip
def test_bad_overrides_are_refused_with_a_reason(text: str) -> None:
    with pytest.raises(TasksHostError):
        override_capabilities(CAPS, None, text)


def test_join_flags_make_settings_only_with_tasks() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime")
    add_tasks_flags(parser)
    assert tasks_settings(parser.parse_args([])) is None
    args = parser.parse_args(["--tasks", "6", "--device-class", "edge", "--ram-mb", "2048",
                              "--accelerator", "npu", "--advertise-runtime", "numpy"])  # fmt: skip
    settings = tasks_settings(args)
    assert settings is not None and settings.expect == 6
    assert settings.advertise == {"device_class": "edge", "ram_total_mb": 2048,
                                  "accelerators": ["npu"], "trainer_runtime": "numpy"}  # fmt: skip
    with pytest.raises(ValueError):
        tasks_settings(parser.parse_args(["--tasks", "0"]))


def test_infer_inputs_are_rows_of_64_finite_float32(tmp_path: Path) -> None:
    rows = np.arange(128, dtype=np.float32).reshape(2, 64)
    assert rows_from_bytes(rows.astype("<f4").tobytes()).shape == (2, 64)
    for bad in (b"", b"\x00" * 100, np.full((1, 64), np.nan, "<f4").tobytes()):
        with pytest.raises(ValueError):
            rows_from_bytes(bad)
    np.save(tmp_path / "rows.npy", rows.astype(np.float64))
    assert read_input(tmp_path / "rows.npy") == rows.astype("<f4").tobytes()
    (tmp_path / "raw.bin").write_bytes(b"abc")
    assert read_input(tmp_path / "raw.bin") == b"abc"


def test_outputs_read_as_labels_or_loss() -> None:
    assert decode_output("infer", bytes([3, 1, 4])) == [3, 1, 4]
    assert decode_output("train", struct.pack("<dI", 0.25, 100)) == {"loss": 0.25, "examples": 100}
    assert decode_output("train", b"\x01") == "01"
