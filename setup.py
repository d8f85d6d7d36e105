"""Map the top-level folders onto the `agentmesh` namespace.

core/ -> agentmesh.core, edge/ -> agentmesh.edge, and so on. Subpackages are
discovered, so nothing is silently dropped from the wheel; tests/unit/test_packaging.py
builds the wheel and checks its file list against the tree.
"""

from setuptools import find_packages, setup

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

setup(
    packages=PACKAGES,
    package_dir=PACKAGE_DIR,
    package_data={
        "agentmesh.core": ["py.typed"],
        "agentmesh.tools.data": ["*.npz", "README.md"],
        "agentmesh.edge.models": ["*.tflite"],
    },
    include_package_data=True,
)
