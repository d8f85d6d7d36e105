"""The asyncio host of a PBFT replica: QUIC transport, SQLite durability, real clock.

`ConsensusHost` drives `agentmesh.core.consensus.Replica` (sans-I/O): it decodes
frames from `QuicTransport`, feeds them to the replica, and drains the outbox in
order. An `Event("persist")` is written to SQLite (one transaction, the
StateStore's WAL with synchronous=FULL) before any later message in the same
outbox is queued for sending; a restarted host rebuilds the replica from what
`ConsensusStore.load` returns, so it never contradicts what it signed.

`python -m agentmesh.edge.consensus_host bench-node ...` is one process of
`agent bench consensus`; `run_cluster_bench` starts n of them on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import hashlib
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import Any

from agentmesh.core.consensus import Committee, ConsensusConfig, DurableState, Entry, Replica
from agentmesh.core.consensus.codec import (
    CodecError,
    decode,
    decode_durable,
    encode,
    encode_durable,
)
from agentmesh.core.consensus.durable import PersistExecuted, PersistStable
from agentmesh.core.identity import Identity, verify_from_peer_id
from agentmesh.core.limits import TransportLimits
from agentmesh.core.node import Event, Send
from agentmesh.edge.state import StateStore
from agentmesh.edge.transport import QuicTransport, TransportClosed, TransportError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS consensus_base (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    state BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS consensus_log (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    record BLOB NOT NULL
);
"""
LOG_RECORDS_MAX = 4096  # compact the record log into the base beyond this
SEND_QUEUE_MAX = 4096  # per peer; then drop + count (PBFT retransmits what matters)
TICK_IDLE_MS = 1000  # re-check at least this often
DEFERRED_FLUSH_MS = 50  # deferred records reach the disk within ~50 ms
DEFERRABLE = (PersistExecuted, PersistStable)
DecidedCallback = Callable[[Event], None]
TRACE_RECORDS_MAX = 200_000  # timeline records a tracing bench node keeps


def _label(message: Any) -> tuple[str, int]:
    """A message's type (with its vote kind) and sequence number, for the timeline."""
    name = type(message).__name__
    kind = getattr(message, "kind", None)
    if isinstance(kind, bytes):
        name = f"{name}:{kind.decode(errors='replace')}"
    return name, int(getattr(message, "seq", -1))


def ensure_consensus_schema(connection: sqlite3.Connection) -> None:
    """The consensus tables inside the agent's one state file."""
    connection.executescript(_SCHEMA)


class ConsensusStore:
    """Durable replica state: a base snapshot plus the persist records since."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self.connection = connection
        ensure_consensus_schema(connection)
        self.log_records = int(
            connection.execute("SELECT COUNT(*) FROM consensus_log").fetchone()[0]
        )

    def load(self) -> DurableState | None:
        """The state to rebuild a replica from; None on first boot."""
        row = self.connection.execute("SELECT state FROM consensus_base WHERE id = 1").fetchone()
        records = [
            r[0] for r in self.connection.execute("SELECT record FROM consensus_log ORDER BY id")
        ]
        if row is None and not records:
            return None
        if row is None:
            raise CodecError("consensus records without a base state")
        state = decode_durable(row[0])
        for record in records:
            state.apply(decode(record))
        return state

    def write(self, records: Iterable[Any], state: DurableState) -> None:
        """Make `records` durable in one transaction (compacting into `state` when due)."""
        records = list(records)
        compact = self.log_records + len(records) > LOG_RECORDS_MAX
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            if compact:
                self.connection.execute("DELETE FROM consensus_log")
                self.connection.execute(
                    "INSERT INTO consensus_base(id, state) VALUES(1, ?) "
                    "ON CONFLICT(id) DO UPDATE SET state = excluded.state",
                    (encode_durable(state),),
                )
                self.log_records = 0
            else:
                self.connection.executemany(
                    "INSERT INTO consensus_log(record) VALUES(?)", [(encode(r),) for r in records]
                )
                self.log_records += len(records)

    def save_base(self, state: DurableState) -> None:
        """Replace everything with `state` (first boot, or compaction)."""
        with self.connection:
            self.connection.execute("BEGIN IMMEDIATE")
            self.connection.execute("DELETE FROM consensus_log")
            self.connection.execute(
                "INSERT INTO consensus_base(id, state) VALUES(1, ?) "
                "ON CONFLICT(id) DO UPDATE SET state = excluded.state",
                (encode_durable(state),),
            )
        self.log_records = 0


def now_ms() -> int:
    return time.monotonic_ns() // 1_000_000


class ConsensusHost:
    """One replica on asyncio: receive, tick, persist-then-send, report decisions."""

    def __init__(
        self,
        identity: Identity,
        committee: Committee,
        addresses: dict[str, tuple[str, int]],
        transport: QuicTransport,
        store: ConsensusStore,
        config: ConsensusConfig | None = None,
        on_decided: DecidedCallback | None = None,
    ) -> None:
        self.identity = identity
        self.addresses = addresses
        self.transport = transport
        self.store = store
        self.on_decided = on_decided
        durable = store.load()
        if durable is None:
            durable = DurableState(committee.epoch, committee.members)
            store.save_base(durable)
        restarted = durable.last_executed > 0 or bool(durable.votes) or durable.view > 0
        rng = random.Random(int.from_bytes(os.urandom(8), "big"))
        self.replica = Replica(identity, verify_from_peer_id, committee, rng, config, durable)
        self.replica.restarted = restarted
        self.counters: dict[str, int] = {}
        self._queues: dict[str, asyncio.Queue[bytes]] = {}
        self._unwritten: list[Any] = []
        self._must_write = False
        self._unwritten_since_ms = 0
        self._tick_handle: asyncio.TimerHandle | None = None
        self._drain_handle: asyncio.Handle | None = None  # a drain after a burst of frames
        self._tick_at_ms = 0  # when _tick_handle fires (monotonic ms)
        self._tasks: list[asyncio.Task[None]] = []
        # (kind, monotonic ns, ...) for the timeline reader; None unless a bench traces
        self.trace: list[tuple[Any, ...]] | None = None

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    async def start(self) -> None:
        self.replica.start(now_ms())
        self._drain()
        self._tasks.append(asyncio.create_task(self._receive_loop()))

    async def close(self) -> None:
        if self._drain_handle is not None:
            self._drain_handle.cancel()
            self._drain_handle = None
            self._drain()
        self.flush()
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def propose(self, entry: Entry) -> bool:
        accepted = bool(self.replica.propose(entry, now_ms()))
        self._drain()
        return accepted

    def _drain(self) -> None:
        """Persist first, then queue sends, in outbox order (durability before dependence).

        Group commit: every record of the outbox goes into one transaction before
        the first send leaves (writing a record earlier than needed is always safe;
        a receive that both prepares and commits a batch, or a decision that lets
        the primary propose, costs one commit instead of two). Records that protect
        no message (a batch executed, a checkpoint became stable) may wait for the
        next transaction: losing them in a crash only makes the replica fetch those
        batches again. Votes, prepared certificates, views and view changes are
        committed before the next send leaves.
        """
        outbox = self.replica.take_outbox()
        for item in outbox:
            if isinstance(item, Event) and item.kind == "persist":
                records = item.data["records"]
                if not self._unwritten:
                    self._unwritten_since_ms = now_ms()
                self._unwritten.extend(records)
                self._must_write = self._must_write or not all(
                    isinstance(r, DEFERRABLE) for r in records
                )
        frames: dict[int, bytes] = {}  # a broadcast is one message object: encode it once
        for item in outbox:
            if isinstance(item, Send):
                if self._must_write:
                    self.flush()
                if self.trace is not None:
                    self._record("out", item.to, *_label(item.message))
                frame = frames.get(id(item.message))
                if frame is None:
                    frame = frames[id(item.message)] = encode(item.message)
                self._enqueue(item.to, frame)
            elif item.kind == "decided":
                if self.trace is not None:
                    self._record("decided", item.data["seq"], time.process_time_ns())
                if self.on_decided is not None:
                    self.on_decided(item)
        if self._must_write:
            self.flush()
        self._arm_tick()

    def _record(self, kind: str, *data: Any) -> None:
        assert self.trace is not None
        if len(self.trace) < TRACE_RECORDS_MAX:
            self.trace.append((kind, time.monotonic_ns(), *data))

    def flush(self) -> None:
        """Commit every record not yet durable (one SQLite transaction)."""
        if self._unwritten:
            start_ns = time.perf_counter_ns()
            self.store.write(self._unwritten, self.replica.durable)
            if self.trace is not None:
                self._record("flush", start_ns, len(self._unwritten))
            self.count("transactions")
            self.counters["transaction_us"] = (
                self.counters.get("transaction_us", 0) + (time.perf_counter_ns() - start_ns) // 1000
            )
        self._unwritten = []
        self._must_write = False

    def _enqueue(self, peer: str, frame: bytes) -> None:
        queue = self._queues.get(peer)
        if queue is None:
            queue = self._queues[peer] = asyncio.Queue(SEND_QUEUE_MAX)
            self._tasks.append(asyncio.create_task(self._send_loop(peer, queue)))
        try:
            queue.put_nowait(frame)
        except asyncio.QueueFull:
            self.count("send_queue_full")

    async def _send_loop(self, peer: str, queue: asyncio.Queue[bytes]) -> None:
        address = self.addresses.get(peer)
        while True:
            frame = await queue.get()
            try:
                await self.transport.send(peer, frame, address)
            except TransportClosed:
                return
            except TransportError:
                self.count("send_failed")
            if self.trace is not None:
                self._record("sent", peer)

    def _drain_burst(self) -> None:
        self._drain_handle = None
        self._drain()

    async def _receive_loop(self) -> None:
        while True:
            try:
                incoming = await self.transport.receive()
            except TransportClosed:
                return
            if incoming.kind != "frame":
                self.count("unexpected_blob")
                continue
            try:
                message = decode(incoming.payload)
            except CodecError:
                self.count("undecodable_frame")
                continue
            if self.trace is not None:
                self._record("in", incoming.peer_id, *_label(message))
            self.replica.receive(message, incoming.peer_id, now_ms())
            if self.trace is not None:
                self._record("handled")
            # receive() returns without yielding while frames are queued: the frames
            # of one burst are all fed to the replica first, then drained once (group
            # commit across frames). Their replies leave one loop turn later, within
            # the transport's ACK grace (docs/transport.md).
            if self._drain_handle is None:
                self._drain_handle = asyncio.get_running_loop().call_soon(self._drain_burst)

    def _arm_tick(self) -> None:
        """Keep one timer at the replica's next deadline (or the deferred-record flush).

        A timer handle, not a task woken after every drain: most drains leave the
        deadline where it was, and the handle only ever moves earlier; one that
        fires before the current deadline re-arms itself.
        """
        deadline = self.replica.next_deadline()
        due_ms = now_ms() + TICK_IDLE_MS if deadline is None else deadline
        if self._unwritten:
            due_ms = min(due_ms, self._unwritten_since_ms + DEFERRED_FLUSH_MS)
        if self._tick_handle is not None:
            if self._tick_at_ms <= due_ms:
                return
            self._tick_handle.cancel()
        loop = asyncio.get_running_loop()
        self._tick_at_ms = due_ms
        self._tick_handle = loop.call_at(loop.time() + (due_ms - now_ms()) / 1000, self._on_tick)

    def _on_tick(self) -> None:
        self._tick_handle = None
        current = now_ms()
        if self._unwritten and current - self._unwritten_since_ms >= DEFERRED_FLUSH_MS:
            self.flush()  # bound what a crash can lose of the deferred records
        deadline = self.replica.next_deadline()
        if deadline is not None and deadline <= current:
            self.replica.tick(current)
            self._drain()
        else:
            self._arm_tick()


# ---------------------------------------------------------------- benchmark processes

BENCH_LIMITS = replace(TransportLimits(), messages_per_s=1e6, message_burst=100_000)
BENCH_CONFIG = ConsensusConfig(
    batch_entries_max=64, inflight_batches_max=8, pending_entries_max=8192
)
LOAD_INDEX = 0  # the primary of view 0 proposes and measures, as a PBFT client would time it
LOAD_WINDOW = 1024  # outstanding entries during the throughput phase
RUN_TIMEOUT_S = 300.0
PROFILE_DIR_ENV = "AGENTMESH_BENCH_PROFILE_DIR"  # set: each bench node writes a cProfile file
TRACE_DIR_ENV = "AGENTMESH_BENCH_TRACE_DIR"  # set: each bench node writes its timeline (JSON)


def bench_identity(index: int) -> Identity:
    """Deterministic benchmark identities (never used outside `agent bench`)."""
    return Identity.from_seed(hashlib.sha256(b"agentmesh/bench/consensus/%d" % index).digest())


class _Load:
    """Sequential latency, then windowed throughput, measured at one replica."""

    def __init__(self) -> None:
        self.waiting: dict[bytes, asyncio.Future[float]] = {}
        self.decided_entries = 0
        self.decided_batches = 0

    def on_decided(self, event: Event) -> None:
        self.decided_batches += 1
        for entry in event.data["entries"]:
            self.decided_entries += 1
            future = self.waiting.pop(entry.entry_id(), None)
            if future is not None and not future.done():
                future.set_result(time.perf_counter())

    async def decide(self, host: ConsensusHost, entry: Entry, timeout_s: float) -> float:
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiting[entry.entry_id()] = future
        start = time.perf_counter()
        if host.trace is not None:
            host._record("propose")
        host.propose(entry)
        return (await asyncio.wait_for(future, timeout_s)) - start

    async def run(self, host: ConsensusHost, samples: int, seconds: float) -> dict[str, Any]:
        for k in range(60):  # until every connection is up and a decision went through
            try:
                await self.decide(host, Entry("bench", b"warm-%d" % k), 1.0)
                break
            except TimeoutError:
                continue
        for k in range(50):
            await self.decide(host, Entry("bench", b"warm2-%d" % k), 10.0)
        if host.trace is not None:
            host._record("phase", "latency")
        latencies = [
            await self.decide(host, Entry("bench", b"lat-%d" % k), 10.0) for k in range(samples)
        ]
        return {"latencies_s": latencies, **await self._throughput(host, seconds)}

    async def _throughput(self, host: ConsensusHost, seconds: float) -> dict[str, Any]:
        if host.trace is not None:
            host._record("phase", "throughput")
        start_entries, start_batches = self.decided_entries, self.decided_batches
        start = time.perf_counter()
        k = 0
        while time.perf_counter() - start < seconds:
            proposed = 0
            while len(host.replica.pending) < LOAD_WINDOW and proposed < 256:
                host.propose(Entry("bench", b"tput-%d" % k))
                k += 1
                proposed += 1
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
        entries = self.decided_entries - start_entries
        batches = self.decided_batches - start_batches
        return {"entries": entries, "batches": batches, "elapsed_s": elapsed}


async def _bench_node(
    index: int, n: int, state_dir: Path, samples: int, seconds: float, sync: str
) -> None:
    identity = bench_identity(index)
    transport = QuicTransport(identity, "127.0.0.1", 0, BENCH_LIMITS)
    await transport.start()
    print(json.dumps({"ready": transport.local_address[1]}), flush=True)
    loop = asyncio.get_running_loop()
    line = await loop.run_in_executor(None, sys.stdin.readline)
    ports = json.loads(line)["ports"]
    ids = [bench_identity(i).peer_id for i in range(n)]
    addresses = {ids[i]: ("127.0.0.1", int(port)) for i, port in enumerate(ports)}
    store = StateStore(state_dir)
    if sync == "normal":
        # WAL + NORMAL: a commit survives kill -9 (it is in the OS) but not power loss.
        store.connection.execute("PRAGMA synchronous=NORMAL")
    load = _Load() if index == LOAD_INDEX else None
    host = ConsensusHost(
        identity,
        Committee(0, tuple(ids)),
        addresses,
        transport,
        ConsensusStore(store.connection),
        BENCH_CONFIG,
        load.on_decided if load else None,
    )
    trace_dir = os.environ.get(TRACE_DIR_ENV)
    if trace_dir:
        _trace_datagrams(host, transport)
    await host.start()
    if load is not None:
        result = await load.run(host, samples, seconds)
        result["host_counters"] = host.counters
        result["replica_counters"] = host.replica.counters
        print(json.dumps({"result": result}), flush=True)
    else:
        await loop.run_in_executor(None, sys.stdin.readline)  # until the coordinator closes stdin
    await host.close()
    await transport.close()
    store.close()
    if trace_dir and host.trace is not None:
        (Path(trace_dir) / f"consensus-node{index}.json").write_text(json.dumps(host.trace))


def _trace_datagrams(host: ConsensusHost, transport: QuicTransport) -> None:
    """Timeline: every UDP datagram in and out (the transport's entry points, wrapped)."""
    host.trace = []
    receive = transport.datagram_received

    def traced(data: bytes, address: Any) -> None:
        host._record("datagram", len(data))
        receive(data, address)

    transport.datagram_received = traced  # type: ignore[method-assign]
    send = transport.send_datagram

    def traced_send(data: bytes, address: Any) -> None:
        host._record("datagram_out", len(data))
        send(data, address)

    transport.send_datagram = traced_send  # type: ignore[method-assign]


def run_cluster_bench(n: int, seconds: float, samples: int, sync: str = "full") -> dict[str, Any]:
    """Start n replica processes on 127.0.0.1, measure at one, stop them all."""
    with tempfile.TemporaryDirectory(prefix="agentmesh-consensus-bench-") as root:
        procs = []
        try:
            for index in range(n):
                state_dir = Path(root) / f"node{index}"
                state_dir.mkdir()
                command = [
                    sys.executable,
                    "-m",
                    "agentmesh.edge.consensus_host",
                    "bench-node",
                    "--index",
                    str(index),
                    "--n",
                    str(n),
                    "--state-dir",
                    str(state_dir),
                    "--samples",
                    str(samples),
                    "--seconds",
                    str(seconds),
                    "--sync",
                    sync,
                ]
                procs.append(
                    subprocess.Popen(
                        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
                    )
                )
            ports = [json.loads(_read_line(p))["ready"] for p in procs]
            for proc in procs:
                assert proc.stdin is not None
                proc.stdin.write(json.dumps({"ports": ports}) + "\n")
                proc.stdin.flush()
            result = json.loads(_read_line(procs[LOAD_INDEX]))["result"]
            if os.environ.get(PROFILE_DIR_ENV):  # where the time went, for the profile reader
                counters = {k: result[k] for k in ("host_counters", "replica_counters")}
                print(json.dumps(counters), file=sys.stderr)
        finally:
            for proc in procs:
                if proc.stdin is not None and not proc.stdin.closed:
                    proc.stdin.close()
            for proc in procs:
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    latencies_ms = sorted(s * 1000 for s in result["latencies_s"])
    return {
        "params": {
            "n": n,
            "f": (n - 1) // 3,
            "batch_entries_max": BENCH_CONFIG.batch_entries_max,
            "inflight_batches_max": BENCH_CONFIG.inflight_batches_max,
            "window_entries": LOAD_WINDOW,
            "latency_samples": len(latencies_ms),
            "durability": f"sqlite wal synchronous={sync.upper()}",
        },
        "metrics": {
            "p50_ms": round(statistics.median(latencies_ms), 3),
            "p99_ms": round(
                latencies_ms[min(len(latencies_ms) - 1, int(len(latencies_ms) * 0.99))], 3
            ),
            "decisions_per_s": round(result["entries"] / result["elapsed_s"], 1),
            "batches_per_s": round(result["batches"] / result["elapsed_s"], 1),
            "wall_s": round(result["elapsed_s"], 2),
        },
    }


def _read_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"bench node {proc.args!r} exited early (code {proc.poll()})")
    return line


async def _serve_node(index: int, n: int, state_dir: Path, base_port: int) -> None:
    """A replica driven over stdin/stdout (`propose HEX` / `decided SEQ DIGEST`), for tests."""
    identity = bench_identity(index)
    ids = [bench_identity(i).peer_id for i in range(n)]
    addresses = {ids[i]: ("127.0.0.1", base_port + i) for i in range(n)}
    transport = QuicTransport(identity, "127.0.0.1", base_port + index, BENCH_LIMITS)
    await transport.start()
    store = StateStore(state_dir)

    def on_decided(event: Event) -> None:
        print(f"decided {event.data['seq']} {event.data['digest'].hex()}", flush=True)

    host = ConsensusHost(
        identity,
        Committee(0, tuple(ids)),
        addresses,
        transport,
        ConsensusStore(store.connection),
        BENCH_CONFIG,
        on_decided,
    )
    await host.start()
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = (await loop.run_in_executor(None, sys.stdin.readline)).split()
        if not line or line[0] == "quit":
            break
        if line[0] == "propose" and len(line) == 2:
            host.propose(Entry("task", bytes.fromhex(line[1])))
    await host.close()
    await transport.close()
    store.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m agentmesh.edge.consensus_host")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("bench-node", help="one replica process of `agent bench consensus`")
    node.add_argument("--index", type=int, required=True)
    node.add_argument("--n", type=int, required=True)
    node.add_argument("--state-dir", type=Path, required=True)
    node.add_argument("--samples", type=int, default=200)
    node.add_argument("--seconds", type=float, default=5.0)
    node.add_argument("--sync", choices=("full", "normal"), default="full")
    serve = sub.add_parser("serve-node", help="a replica driven over stdin (tests)")
    serve.add_argument("--index", type=int, required=True)
    serve.add_argument("--n", type=int, required=True)
    serve.add_argument("--state-dir", type=Path, required=True)
    serve.add_argument("--base-port", type=int, required=True)
    args = parser.parse_args(argv)
    if args.command == "serve-node":
        asyncio.run(_serve_node(args.index, args.n, args.state_dir, args.base_port))
        return 0
    bench = _bench_node(args.index, args.n, args.state_dir, args.samples, args.seconds, args.sync)
    profile_dir = os.environ.get(PROFILE_DIR_ENV)
    if not profile_dir:
        asyncio.run(bench)
        return 0
    profiler = cProfile.Profile()  # wall-clock: waits in poll() and in COMMIT show up too
    profiler.enable()
    try:
        asyncio.run(bench)
    finally:
        profiler.disable()
    profiler.dump_stats(Path(profile_dir) / f"consensus-node{args.index}.prof")
    return 0


if __name__ == "__main__":
    sys.exit(main())
