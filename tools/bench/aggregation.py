"""`agent bench aggregation`: aggregation rules over n updates of d float32 parameters.

Every case reports the median of `--repeats` runs; `gb_per_s` is bytes of update
input read per second (n * d * 4; the result's write is not counted), compared
with a numpy copy measured in the same run whose `gb_per_s` is bytes copied per
second: each copied byte is read once and written once, so the copy's memory
traffic is twice its figure.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from agentmesh.core.aggregation import aggregate, digest, exact_squared_distances
from agentmesh.tools.bench._report import BenchReport, BenchResult

BASELINE = "numpy_copy_baseline"
COPY_BYTES = 400 * 1000 * 1000
CASES = (
    "fedavg",
    "median",
    "trimmed_mean",
    "krum",
    "digest_sha256",
    "krum_distances_exact_split",
    "krum_distances_gram_float64_blas",
    "krum_distances_direct",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=3, help="runs per case (median)")
    parser.add_argument("--params", type=int, default=1_000_000, help="parameters per update")
    parser.add_argument("--updates", default="10,100", help="comma-separated update counts")
    parser.add_argument(
        "--direct-params",
        type=int,
        default=50_000,
        help="parameters for the slow direct-distance case (time is projected to --params)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--cases",
        type=_case_names,
        default=frozenset(CASES),
        help=f"comma-separated cases to run (default: all): {','.join(CASES)}",
    )


def _case_names(text: str) -> frozenset[str]:
    names = frozenset(name for name in text.split(",") if name)
    unknown = sorted(names - set(CASES))
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown or no cases {unknown}; known: {CASES}")
    return names


def run(args: argparse.Namespace) -> BenchReport:
    report = BenchReport(bench="aggregation")
    copy_gb_per_s = _copy_baseline(report, args.repeats)
    rng = np.random.default_rng(args.seed)
    for count in (int(n) for n in args.updates.split(",")):
        _run_count(report, count, args, rng, copy_gb_per_s)
        gc.collect()
    report.notes.extend(_notes(args))
    return report


def _run_count(
    report: BenchReport,
    count: int,
    args: argparse.Namespace,
    rng: np.random.Generator,
    copy_gb_per_s: float,
) -> None:
    updates = [rng.standard_normal(args.params, dtype=np.float32) for _ in range(count)]
    weights = [int(w) for w in rng.integers(10, 1000, count)]
    f = max(1, count // 5)
    input_bytes = count * args.params * 4
    cases: list[tuple[str, dict[str, float], Callable[[], object]]] = [
        ("fedavg", {}, lambda: aggregate("fedavg", updates, weights)),
        ("median", {}, lambda: aggregate("median", updates, weights)),
        (
            "trimmed_mean",
            {"trim_fraction": 0.1},
            lambda: aggregate("trimmed_mean", updates, weights, trim_fraction=0.1),
        ),
        ("krum", {"f": f}, lambda: aggregate("krum", updates, weights, f=f)),
        ("digest_sha256", {}, lambda: [digest(u) for u in updates]),
        ("krum_distances_exact_split", {}, lambda: exact_squared_distances(updates)),
        ("krum_distances_gram_float64_blas", {}, lambda: _gram_distances(updates)),
    ]
    for name, params, call in cases:
        if name not in args.cases:
            continue
        seconds = _median_seconds(call, args.repeats)
        report.results.append(
            _result(name, count, args.params, params, seconds, input_bytes, copy_gb_per_s)
        )
    if "krum_distances_direct" in args.cases:
        _direct_case(report, updates, args, copy_gb_per_s)


def _copy_baseline(report: BenchReport, repeats: int) -> float:
    source = np.ones(COPY_BYTES // 4, dtype=np.float32)
    target = np.empty_like(source)
    np.copyto(target, source)  # fault the pages in before timing
    seconds = _median_seconds(lambda: np.copyto(target, source), max(repeats, 3))
    gb_per_s = COPY_BYTES / seconds / 1e9
    report.results.append(
        BenchResult(
            case=BASELINE,
            params={"bytes": COPY_BYTES, "repeats": max(repeats, 3)},
            metrics={"p50_ms": round(seconds * 1e3, 3), "gb_per_s": round(gb_per_s, 3)},
        )
    )
    return gb_per_s


def _direct_case(
    report: BenchReport,
    updates: list[npt.NDArray[np.float32]],
    args: argparse.Namespace,
    copy_gb_per_s: float,
) -> None:
    size = min(args.direct_params, args.params)
    heads = [u[:size] for u in updates]
    seconds = _median_seconds(lambda: _direct_distances(heads), 1)
    result = _result(
        "krum_distances_direct",
        len(updates),
        size,
        {},
        seconds,
        len(updates) * size * 4,
        copy_gb_per_s,
    )
    result.metrics["projected_ms_at_params"] = round(seconds * 1e3 * args.params / size, 1)
    report.results.append(result)


def _result(
    case: str,
    count: int,
    size: int,
    params: dict[str, float],
    seconds: float,
    input_bytes: int,
    copy_gb_per_s: float,
) -> BenchResult:
    gb_per_s = input_bytes / seconds / 1e9
    return BenchResult(
        case=case,
        params={"updates": count, "params_per_update": size, **params},
        metrics={
            "p50_ms": round(seconds * 1e3, 3),
            "gb_per_s": round(gb_per_s, 3),
            f"ratio_to_{BASELINE}": round(gb_per_s / copy_gb_per_s, 3),
        },
    )


def _median_seconds(call: Callable[[], object], repeats: int) -> float:
    samples: list[float] = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _gram_distances(updates: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
    """||x_i||^2 + ||x_j||^2 - 2<x_i,x_j> with a float64 BLAS Gram: fast, order is BLAS's."""
    block_params = 1 << 15
    count = len(updates)
    gram = np.zeros((count, count))
    for start in range(0, updates[0].size, block_params):
        block = np.stack([u[start : start + block_params] for u in updates]).astype(np.float64)
        gram += block @ block.T
    norms = np.diag(gram)
    return np.asarray(norms[:, None] + norms[None, :] - 2.0 * gram)


def _direct_distances(updates: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.float64]:
    """sum_k (x_ik - x_jk)^2 pair by pair, elementwise in float64: no BLAS, many passes."""
    count = len(updates)
    first, second = np.triu_indices(count, 1)
    distances = np.zeros(first.size)
    block_params = 256
    for start in range(0, updates[0].size, block_params):
        block = np.stack([u[start : start + block_params] for u in updates]).astype(np.float64)
        difference = block[first] - block[second]
        np.multiply(difference, difference, out=difference)
        distances += difference.sum(axis=1)
    return distances


def _notes(args: argparse.Namespace) -> list[str]:
    load = os.getloadavg()
    return [
        "gb_per_s = bytes of update input read / median time; "
        f"ratio_to_{BASELINE} compares with a numpy copy measured in this run",
        f"{BASELINE} gb_per_s counts bytes copied; its memory traffic (read + write) is "
        "twice that, so a ratio against traffic is half the ratio_to_ figure",
        "krum includes its exact split-Gram distances; krum_distances_gram_float64_blas is "
        "faster but its bits depend on the BLAS kernel (see docs/aggregation.md)",
        f"krum_distances_direct ran on {min(args.direct_params, args.params)} parameters; "
        "projected_ms_at_params scales it linearly",
        f"load average at the end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (shared machine)",
        f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')}",
    ]
