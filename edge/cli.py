"""The `agent` command line: one subcommand per module, registered here."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from importlib import metadata

# Each module named here exposes `register(subparsers) -> None`, which adds one
# subcommand whose parser has `func=handler(args) -> int` set as a default.
_COMMAND_MODULES: tuple[str, ...] = (
    "agentmesh.edge._cmd_agent",
    "agentmesh.edge._cmd_demo",
    "agentmesh.tools.bench.cli",
    "agentmesh.edge._cmd_sim",
    "agentmesh.edge._cmd_firmware",
    "agentmesh.edge._cmd_task",
)


def package_version() -> str:
    """Installed version of the agentmesh distribution."""
    try:
        return metadata.version("agentmesh")
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _cmd_version(args: argparse.Namespace) -> int:
    del args
    print(f"agent {package_version()} (python {sys.version.split()[0]})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The full parser with every registered subcommand."""
    parser = argparse.ArgumentParser(
        prog="agent",
        description=(
            "Agent Mesh: a decentralized, edge-first runtime for federated learning "
            "and multi-agent coordination. No server, ever."
        ),
    )
    parser.add_argument("--version", action="version", version=f"agent {package_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    version = subparsers.add_parser("version", help="print the version and exit")
    version.set_defaults(func=_cmd_version)
    for module_name in _COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `agent` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
