"""Map the top-level folders onto the `agentmesh` namespace.

core/ -> agentmesh.core, edge/ -> agentmesh.edge, and so on. Subpackages are
discovered, so nothing is silently dropped from the wheel; tests/unit/test_packaging.py
builds the wheel and checks its file list against the tree.
"""

import shutil
from pathlib import Path

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

TOP_LEVEL = ("core", "edge", "gateway_peer", "hil", "tools")


def _packages() -> tuple[list[str], dict[str, str]]:
    packages: list[str] = []
    package_dir: dict[str, str] = {}
    for folder in TOP_LEVEL:
        name = f"agentmesh.{folder}"
        packages.append(name)
        package_dir[name] = folder
        packages.extend(f"{name}.{sub}" for sub in find_packages(folder))
    return packages, package_dir


PACKAGES, PACKAGE_DIR = _packages()


class BuildPyWithFirmware(build_py):
    """Also ship firmware/*.py (MicroPython sources, not importable modules) as data
    under agentmesh/edge/_firmware, so `agent firmware build` works from a wheel."""

    def run(self) -> None:
        super().run()
        target = Path(self.build_lib) / "agentmesh" / "edge" / "_firmware"
        target.mkdir(parents=True, exist_ok=True)
        for source in sorted(Path(__file__).parent.joinpath("firmware").glob("*.py")):
            shutil.copy2(source, target / source.name)


setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "agentmesh.core": ["py.typed"],
        "agentmesh.tools.data": ["*.npz", "README.md"],
        "agentmesh.edge.models": ["*.tflite"],
    },
    include_package_data=True,
    cmdclass={"build_py": BuildPyWithFirmware},
)
