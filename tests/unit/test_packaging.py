"""The wheel holds every subpackage under `agentmesh`, and nothing else at the top."""

from __future__ import annotations

import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
MAPPED = {
    "core": "agentmesh/core",
    "edge": "agentmesh/edge",
    "gateway_peer": "agentmesh/gateway_peer",
    "hil": "agentmesh/hil",
    "tools": "agentmesh/tools",
}


def _source_modules() -> set[str]:
    found: set[str] = set()
    for folder, target in MAPPED.items():
        for path in (REPO / folder).rglob("*.py"):
            if "__pycache__" in path.parts:
                continue
            if all(
                (parent / "__init__.py").exists() for parent in _package_dirs(path, REPO / folder)
            ):
                found.add(f"{target}/{path.relative_to(REPO / folder).as_posix()}")
    return found


def _package_dirs(path: Path, root: Path) -> list[Path]:
    dirs = []
    current = path.parent
    while current != root.parent:
        dirs.append(current)
        current = current.parent
    return dirs


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=out,
    )
    (wheel,) = out.glob("agentmesh-*.whl")
    return wheel


@pytest.fixture(scope="module")
def wheel_names(wheel_path: Path) -> list[str]:
    with zipfile.ZipFile(wheel_path) as archive:
        return archive.namelist()


def test_wheel_contains_every_source_module(wheel_names: list[str]) -> None:
    missing = _source_modules() - set(wheel_names)
    assert not missing, f"modules dropped from the wheel: {sorted(missing)}"


def test_wheel_ships_the_firmware_sources(wheel_names: list[str]) -> None:
    expected = {f"agentmesh/edge/_firmware/{p.name}" for p in (REPO / "firmware").glob("*.py")}
    assert expected, "firmware/ has no sources"
    assert expected <= set(wheel_names)


def test_wheel_has_only_agentmesh_at_top_level(wheel_names: list[str]) -> None:
    tops = {name.split("/")[0] for name in wheel_names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"agentmesh"}


def test_wheel_declares_agent_console_script(wheel_path: Path, wheel_names: list[str]) -> None:
    entry = next(n for n in wheel_names if n.endswith("entry_points.txt"))
    with zipfile.ZipFile(wheel_path) as archive:
        text = archive.read(entry).decode()
    assert "agent = agentmesh.edge.cli:main" in text


def test_import_core_from_repo_root_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import core"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "import agentmesh.core" in result.stderr


def test_agentmesh_core_loads_from_repo_root() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import agentmesh.core as c; print(c.__name__)"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "agentmesh.core"


def test_editable_install_sees_new_files() -> None:
    name = f"_probe_{uuid.uuid4().hex[:8]}"
    probe = REPO / "core" / f"{name}.py"
    probe.write_text("VALUE = 42\n")
    try:
        result = subprocess.run(
            [sys.executable, "-c", f"from agentmesh.core.{name} import VALUE; print(VALUE)"],
            cwd="/",
            capture_output=True,
            text=True,
        )
    finally:
        probe.unlink()
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "42"


def test_agent_cli_help_and_version() -> None:
    help_run = subprocess.run(
        [sys.executable, "-m", "agentmesh.edge", "--help"],
        capture_output=True,
        text=True,
    )
    assert help_run.returncode == 0
    assert "usage: agent" in help_run.stdout
    version = subprocess.run(
        [sys.executable, "-m", "agentmesh.edge", "version"],
        capture_output=True,
        text=True,
    )
    assert version.returncode == 0
    assert version.stdout.startswith("agent 0.")
