"""`agent bench wire`: CBOR encode/decode and envelope seal/open of a ~1 KB gossip message.

Cases compare the agent codec (cbor2 fast path, pure codec as judge) with the
pure codec alone, on a 1 KB envelope (one large byte string) and on a ~300-byte
item-heavy map (many small items, the worst case for a Python walker); the
cbor2 `canonical=True` encode/decode without any checks is a baseline measured
in the same run. `seal`/`open_envelope` include Ed25519 sign/verify.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import cbor2

from agentmesh.core.identity import Identity
from agentmesh.core.wire import cbor, cbor_pure, envelope
from agentmesh.tools.bench._report import BenchReport, BenchResult


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--repeats", type=int, default=7, help="timed batches per case")
    parser.add_argument("--batch", type=int, default=2000, help="calls per timed batch")


def _per_call_us(function: Callable[[], object], repeats: int, batch: int) -> dict[str, float]:
    samples = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        for _ in range(batch):
            function()
        samples.append((time.perf_counter() - start) / batch * 1e6)
    return {"p50_us": round(statistics.median(samples), 2), "min_us": round(min(samples), 2)}


def _items(signer: Identity) -> dict[str, Any]:
    wire = envelope.seal(
        signer, "gossip", "bench-mesh", (1,), {"topic": "models", "payload": bytes(900), "hops": 0}
    )
    many_items = {
        "round": 3,
        "scores": [{"peer": i, "loss": 0.25 + i, "ok": True} for i in range(16)],
    }
    return {"envelope-1kb": cbor.decode(wire), "many-items": many_items}


def run(args: argparse.Namespace) -> BenchReport:
    report = BenchReport(bench="wire")
    signer = Identity.from_seed(bytes(range(32)))
    for name, value in _items(signer).items():
        data = cbor.encode(value)
        codecs: dict[str, tuple[Callable[[], object], Callable[[], object]]] = {
            "agent": (partial(cbor.encode, value), partial(cbor.decode, data)),
            "pure": (partial(cbor_pure.encode, value), partial(cbor_pure.decode, data)),
            "cbor2-unchecked-baseline": (
                partial(cbor2.dumps, value, canonical=True),
                partial(cbor2.loads, data),
            ),
        }
        baseline: dict[str, float] = {}
        for codec, (encode, decode) in reversed(codecs.items()):
            encode_us = _per_call_us(encode, args.repeats, args.batch)
            decode_us = _per_call_us(decode, args.repeats, args.batch)
            metrics: dict[str, float | int] = {
                "encode_p50_us": encode_us["p50_us"],
                "decode_p50_us": decode_us["p50_us"],
                "encode_min_us": encode_us["min_us"],
                "decode_min_us": decode_us["min_us"],
                "size_bytes": len(data),
            }
            if baseline:
                metrics["ratio_to_cbor2-unchecked-baseline"] = round(
                    (encode_us["p50_us"] + decode_us["p50_us"]) / sum(baseline.values()), 2
                )
            else:
                baseline = {"encode": encode_us["p50_us"], "decode": decode_us["p50_us"]}
            report.results.append(
                BenchResult(
                    case=f"{codec}-{name}", params={"codec": codec, "item": name}, metrics=metrics
                )
            )
    body = {"topic": "models", "payload": bytes(900), "hops": 0}
    wire = envelope.seal(signer, "gossip", "bench-mesh", (1,), body)
    seal_us = _per_call_us(
        lambda: envelope.seal(signer, "gossip", "bench-mesh", (1,), body),
        args.repeats,
        args.batch // 4,
    )
    open_us = _per_call_us(lambda: envelope.open_envelope(wire), args.repeats, args.batch // 4)
    sign_us = _per_call_us(lambda: signer.sign(wire), args.repeats, args.batch // 4)
    report.results.append(
        BenchResult(
            case="envelope-gossip-1kb",
            params={"size_bytes": len(wire)},
            metrics={
                "seal_p50_us": seal_us["p50_us"],
                "open_p50_us": open_us["p50_us"],
                "ed25519_sign_p50_us": sign_us["p50_us"],
                "opens_per_s": round(1e6 / open_us["p50_us"]),
            },
        )
    )
    report.notes.append("open = size check + strict decode + schema + Ed25519 verify")
    return report
