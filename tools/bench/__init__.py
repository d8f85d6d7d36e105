"""Benchmarks run by `agent bench NAME [--json]`; the report shape is in ../shared/BENCHMARKS.md."""

from agentmesh.tools.bench._report import BenchReport, BenchResult, machine_info

__all__ = ["BenchReport", "BenchResult", "machine_info"]
