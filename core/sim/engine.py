"""The deterministic discrete-event engine: N machines, one heap, one seed.

Every event is a tuple `(key, kind, node, a, b)` with the int key
`time_us << SEQ_BITS | seq`; `seq` is a counter, so events at the same time run
in the order they were scheduled. Events wait in time buckets (a calendar
queue): a bucket is a plain list, sorted by key when its turn comes, and only
bucket numbers go through a heapq. Virtual time is integer
microseconds; each machine sees its own `now_ms`, derived from virtual time by
its clock drift (rate in ppm) and offset. Randomness comes from one seed split
into independent streams (`random.Random(f"{seed}/{concern}")`, which hashes the
string with sha512 and so is stable across processes).

The hot path (delivery -> receive -> check_invariants -> drain outbox -> schedule
tick) lives in `Simulation._loop` with everything bound to locals: this is what
makes 10,000 nodes affordable in CPython.
"""

from __future__ import annotations

import bisect
import gc
import heapq
import itertools
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agentmesh.core.node import (
    ContractError,
    Event,
    InvariantViolation,
    Machine,
    MachineBase,
    Send,
)
from agentmesh.core.sim.faults import Crash, Partition
from agentmesh.core.sim.network import US_PER_MS, ConstantLatency, NetworkConfig, UniformLatency
from agentmesh.core.sim.trace import (
    FAULT_TAG,
    NODE_BITS,
    TICK_SOURCE,
    TRACE_FLUSH_RECORDS,
    TraceHasher,
)

# (node_id, rng, durable_state or None) -> a fresh machine; durable_state is what the
# machine's optional `durable_state()` returned when it crashed (None on first boot).
MachineFactory = Callable[[str, random.Random, Any], Machine]
ProgressCallback = Callable[[int, int], None]  # (virtual_ms, events_processed)

DELIVER, TICK, CALL, FAULT, GLOBAL = 0, 1, 2, 3, 4
GC_YOUNG_THRESHOLD = 100_000  # objects allocated between young collections during a run
SEQ_BITS = 40  # event keys are time_us << SEQ_BITS | seq: at most 2**40 events per run
# Events wait in buckets of 2**BUCKET_US_BITS µs of virtual time; bucket = key >> BUCKET_SHIFT.
# The width changes only speed, never the order (which is by key within and across buckets).
BUCKET_US_BITS = 12
BUCKET_SHIFT = SEQ_BITS + BUCKET_US_BITS
_FAULT_PARTITION_ON, _FAULT_PARTITION_OFF, _FAULT_CRASH, _FAULT_RESTART = 1, 2, 3, 4
PPM = 1_000_000
_US_PER_MS_PER_PPM = 1_000 * PPM  # vt_us * rate_ppm // this = local ms


class _EndOfRun(Exception):
    """The next event is past the end of the run."""


def stream(seed: int, concern: str) -> random.Random:
    """The random stream of one concern, derived from the run's seed."""
    return random.Random(f"{seed}/{concern}")


def node_name(index: int) -> str:
    """The id of node `index` (`n0`, `n1`, ...), as used in specs and traces."""
    return f"n{index}"


def _has_plain_outbox(machine: object) -> bool:
    """True if `machine` uses MachineBase's outbox list and take_outbox unchanged."""
    return (
        isinstance(machine, MachineBase)
        and type(machine).take_outbox is MachineBase.take_outbox
        and isinstance(getattr(machine, "_outbox", None), list)
    )


@dataclass(frozen=True, slots=True)
class ScheduledCall:
    """Run `action(machine, now_ms)` on node `node` at virtual `at_ms` (skipped if down)."""

    at_ms: int
    node: int
    action: Callable[[Any, int], None]


@dataclass(frozen=True, slots=True)
class SimConfig:
    """One run: how many nodes, which seed, how long, the network and the faults."""

    nodes: int
    seed: int
    duration_ms: int
    network: NetworkConfig = field(default_factory=NetworkConfig)
    partitions: tuple[Partition, ...] = ()
    crashes: tuple[Crash, ...] = ()
    drift_ppm: int = 0  # each node's clock rate is 1 + U[-drift_ppm, +drift_ppm] ppm
    clock_offset_ms_max: int = 0  # each node's clock starts at U[0, max] ms
    global_check_ms: int = 1000  # cadence of the scenario's global invariants (0: at end)
    progress_every_events: int = 0  # 0: no progress callbacks

    def __post_init__(self) -> None:
        if not 1 <= self.nodes < TICK_SOURCE:
            raise ValueError(f"nodes must be in 1..{TICK_SOURCE - 1}")
        if self.duration_ms < 0 or self.drift_ppm < 0 or self.clock_offset_ms_max < 0:
            raise ValueError("duration, drift and clock offset must be >= 0")
        if self.drift_ppm >= PPM:
            raise ValueError("drift_ppm must be below 1,000,000")


class SimHooks:
    """What a scenario adds to a run; every method has a do-nothing default."""

    def attach(self, sim: Simulation) -> None:
        """Called once by the Simulation these hooks serve, before any machine starts."""

    def on_event(self, node_id: str, event: Event, now_ms: int) -> None:
        """An Event a machine put in its outbox."""

    def check_global(self, sim: Simulation) -> None:
        """Raise InvariantViolation if a cross-node invariant fails."""


@dataclass(frozen=True, slots=True)
class Violation:
    """Why a run stopped early: a failed invariant or an assert inside a machine."""

    time_ms: int
    node_id: str | None  # None: a scenario-level (global) invariant
    message: str

    def to_json(self) -> dict[str, Any]:
        return {"time_ms": self.time_ms, "node": self.node_id, "message": self.message}


@dataclass(slots=True)
class SimStats:
    """Counters of one run."""

    deliveries: int = 0
    ticks: int = 0
    sends: int = 0
    duplicates: int = 0
    events: int = 0
    calls: int = 0
    invariants_checked: int = 0
    global_checks: int = 0
    faults_applied: int = 0
    drops: dict[str, int] = field(
        default_factory=lambda: {"loss": 0, "partition": 0, "crashed": 0, "unknown_peer": 0}
    )


class Simulation:
    """Hosts `config.nodes` machines built by `factory`; `run()` plays the whole schedule."""

    def __init__(
        self,
        config: SimConfig,
        factory: MachineFactory,
        hooks: SimHooks | None = None,
        calls: tuple[ScheduledCall, ...] = (),
    ) -> None:
        self.config = config
        self.factory = factory
        self.hooks = hooks or SimHooks()
        self.hooks.attach(self)
        self.node_ids = [node_name(i) for i in range(config.nodes)]
        self.index = {node_id: i for i, node_id in enumerate(self.node_ids)}
        self.stats = SimStats()
        self.trace = TraceHasher()
        self.violation: Violation | None = None
        self.now_us = 0
        drift = stream(config.seed, "drift")
        self.rate_ppm = [
            PPM + drift.randint(-config.drift_ppm, config.drift_ppm) for _ in self.node_ids
        ]
        self.offset_ms = [drift.randint(0, config.clock_offset_ms_max) for _ in self.node_ids]
        self.alive = [True] * config.nodes
        self.incarnation = [0] * config.nodes
        self.durable: list[Any] = [None] * config.nodes
        self.active_cuts: list[Partition] = []
        self._tick_at = [-1] * config.nodes
        # Calendar queue: bucket number -> its events (unsorted until the bucket's turn),
        # and a heap of the bucket numbers that have events. The bucket being played is
        # out of `_buckets`; an event due within it is inserted in its sorted place.
        self._buckets: dict[int, list[tuple[int, int, int, Any, Any]]] = {}
        self._bucket_heap: list[int] = []
        self._current_bucket = -1
        self._current: list[tuple[int, int, int, Any, Any]] = []
        self._seq = itertools.count().__next__
        self.streams = {
            concern: stream(config.seed, concern)
            for concern in ("latency", "loss", "duplicate", "reorder")
        }
        self._duplicate_random = self.streams["duplicate"].random
        self.machines: list[Any] = [self._build(i) for i in range(config.nodes)]
        # True where the machine keeps MachineBase's outbox: the hot loop takes the
        # list itself instead of calling take_outbox() (same effect, one call less).
        self._direct_outbox = [_has_plain_outbox(machine) for machine in self.machines]
        self._schedule_plan(calls)

    # -- views for scenarios and tests ------------------------------------------------

    @property
    def now_ms(self) -> int:
        return self.now_us // 1000

    def local_ms(self, node: int, time_us: int) -> int:
        """Node `node`'s clock reading at virtual time `time_us`."""
        return self.offset_ms[node] + time_us * self.rate_ppm[node] // _US_PER_MS_PER_PPM

    def machine(self, node_id: str) -> Any:
        return self.machines[self.index[node_id]]

    def live_nodes(self) -> list[int]:
        return [i for i, up in enumerate(self.alive) if up]

    # -- setup --------------------------------------------------------------------

    def _build(self, node: int) -> Machine:
        node_id = self.node_ids[node]
        rng = stream(self.config.seed, f"node/{node_id}/{self.incarnation[node]}")
        return self.factory(node_id, rng, self.durable[node])

    def _push(self, time_us: int, kind: int, node: int, a: Any, b: Any) -> None:
        self._push_key(time_us << SEQ_BITS | self._seq(), kind, node, a, b)

    def _schedule_plan(self, calls: tuple[ScheduledCall, ...]) -> None:
        config = self.config
        for partition in config.partitions:
            self._push(partition.start_ms * 1000, FAULT, -1, _FAULT_PARTITION_ON, partition)
            if partition.end_ms is not None:
                self._push(partition.end_ms * 1000, FAULT, -1, _FAULT_PARTITION_OFF, partition)
        for crash in config.crashes:
            for node in sorted(crash.nodes):
                self._push(crash.at_ms * 1000, FAULT, node, _FAULT_CRASH, None)
                if crash.restart_ms is not None:
                    self._push(crash.restart_ms * 1000, FAULT, node, _FAULT_RESTART, None)
        for call in calls:
            self._push(call.at_ms * 1000, CALL, call.node, 0, call.action)
        if config.global_check_ms > 0:
            for at_ms in range(
                config.global_check_ms, config.duration_ms + 1, config.global_check_ms
            ):
                self._push(at_ms * 1000, GLOBAL, -1, 0, None)

    # -- the run ------------------------------------------------------------------

    def run(self, progress: ProgressCallback | None = None) -> SimStats:
        """Play events until the duration ends or an invariant fails (see `violation`)."""
        node = -1
        # The run allocates a few small objects per event and keeps many long-lived
        # ones (machines, tables): with CPython's default young-generation threshold
        # (700) the collector runs thousands of times and rescans the old generation
        # dozens of times (~10% of a 10,000-node run). A larger young generation for
        # the duration of the run only; restored after.
        gc_thresholds = gc.get_threshold()
        gc.set_threshold(max(gc_thresholds[0], GC_YOUNG_THRESHOLD), *gc_thresholds[1:])
        try:
            for node in range(self.config.nodes):
                self._start(node, 0)
            node = -1
            self._loop(progress)
            if self.violation is None:
                self.stats.global_checks += 1
                self.hooks.check_global(self)
        except (AssertionError, ContractError) as error:
            self._record_violation(node, error)
        finally:
            gc.set_threshold(*gc_thresholds)
        self.trace.flush()
        return self.stats

    def _record_violation(self, node: int, error: BaseException) -> None:
        node_id = self.node_ids[node] if node >= 0 else None
        kind = "" if isinstance(error, InvariantViolation) else f"{type(error).__name__}: "
        self.violation = Violation(self.now_us // 1000, node_id, f"{kind}{error}")

    def _start(self, node: int, time_us: int) -> None:
        machine = self.machines[node]
        now_ms = self.local_ms(node, time_us)
        machine.start(now_ms)
        self.stats.invariants_checked += 1
        machine.check_invariants()
        self._after_input(node, machine, time_us, now_ms, time_us)

    def _after_input(
        self, node: int, machine: Any, time_us: int, now_ms: int, tick_min_us: int
    ) -> None:
        """Slow-path drain used outside the hot loop (start, restart, calls)."""
        self._drain(node, machine, time_us, now_ms)
        self._schedule_tick(node, machine, tick_min_us)

    def _schedule_tick(self, node: int, machine: Any, tick_min_us: int) -> None:
        deadline = machine.next_deadline()
        if deadline is None:
            return
        rate = self.rate_ppm[node]
        time_us = -((self.offset_ms[node] - deadline) * _US_PER_MS_PER_PPM // rate)
        time_us = max(time_us, tick_min_us)
        pending = self._tick_at[node]
        if pending < 0 or time_us < pending:
            self._tick_at[node] = time_us
            self._push(time_us, TICK, node, self.incarnation[node], None)

    def _drain(self, node: int, machine: Any, time_us: int, now_ms: int) -> None:
        """Route one machine's outbox through the network (the same rules as the hot loop)."""
        network = self.config.network
        latency_rng = self.streams["latency"]
        for item in machine.take_outbox():
            if item.__class__ is not Send:
                self.stats.events += 1
                self.hooks.on_event(self.node_ids[node], item, now_ms)
                continue
            target = self.index.get(item.to)
            if target is None:
                self.stats.drops["unknown_peer"] += 1
                continue
            self.stats.sends += 1
            if network.loss and self.streams["loss"].random() < network.loss:
                self.stats.drops["loss"] += 1
                continue
            if any(cut.blocks(node, target) for cut in self.active_cuts):
                self.stats.drops["partition"] += 1
                continue
            copies = 1
            if network.duplicate and self.streams["duplicate"].random() < network.duplicate:
                copies = 2
                self.stats.duplicates += 1
            for _ in range(copies):
                delay = network.latency_for(node, target).sample_us(latency_rng)
                if network.reorder_ms:
                    delay += int(self.streams["reorder"].random() * network.reorder_ms * 1000)
                self._push(time_us + delay, DELIVER, target, node, item.message)

    def _loop(self, progress: ProgressCallback | None) -> None:
        # Everything the hot path touches is a local: attribute and global lookups
        # dominate CPython's cost per event otherwise. The routing of sends is the
        # same as `_drain`, inlined, with fast paths for a fault-free network.
        config = self.config
        network = config.network
        buckets = self._buckets
        bucket_of = buckets.get
        take_bucket = buckets.pop
        bucket_heap = self._bucket_heap
        pop = heapq.heappop
        seq = self._seq
        machines = self.machines
        direct = self._direct_outbox
        alive = self.alive
        incarnation = self.incarnation
        tick_at = self._tick_at
        node_ids = self.node_ids
        index_get = self.index.get
        rate_ppm = self.rate_ppm
        offset_ms = self.offset_ms
        cuts = self.active_cuts
        stats = self.stats
        drops = stats.drops
        hooks = self.hooks
        records = self.trace.records
        record = records.append
        flush = self.trace.flush
        end_us = config.duration_ms * 1000
        plain_clock = all(r == PPM for r in rate_ppm) and not any(offset_ms)
        scale = _US_PER_MS_PER_PPM
        loss = network.loss
        loss_random = self.streams["loss"].random
        duplicate = network.duplicate
        reorder_us = int(network.reorder_ms * 1000)
        reorder_random = self.streams["reorder"].random
        latency_random = self.streams["latency"].random
        sample_delay = self._delay_sampler()
        # Fast paths of the default latency model (no per-link overrides): a constant
        # needs no draw; a uniform is one `random()` with the very arithmetic of
        # UniformLatency.sample_us, so the draws (and the trace) are identical.
        default_model = network.latency
        const_us = -1
        uniform_low_us = uniform_span_us = 0.0
        if not network.links and not reorder_us:
            if isinstance(default_model, ConstantLatency):
                const_us = default_model.sample_us(self.streams["latency"])
            elif isinstance(default_model, UniformLatency):
                uniform_low_us = default_model.low_ms * US_PER_MS
                uniform_span_us = default_model.high_ms * US_PER_MS - uniform_low_us
        uniform = uniform_span_us > 0.0 and const_us < 0
        plain_network = not loss and not duplicate and (const_us >= 0 or uniform)
        every = config.progress_every_events if progress is not None else 0
        next_progress = every if every else -1
        # Between buckets: flush trace records, maybe report progress (so progress comes
        # at the first bucket boundary after every `every` events).
        flush_at = 2 * TRACE_FLUSH_RECORDS
        deliveries = ticks = sends = duplicates = events = checked = processed = 0
        node = -1
        kind = GLOBAL
        time_us = 0
        current: list[tuple[int, int, int, Any, Any]] = []
        entry: tuple[int, int, int, Any, Any] = (0, GLOBAL, -1, None, None)
        try:
            while bucket_heap:
                if len(records) >= flush_at:
                    flush()
                if 0 < next_progress <= processed:
                    next_progress = (processed // every + 1) * every
                    self.now_us = time_us
                    progress(time_us // 1000, processed)  # type: ignore[misc]
                current_bucket = pop(bucket_heap)
                current = take_bucket(current_bucket)
                current.sort()  # keys are unique: only the first fields are compared
                self._current_bucket = current_bucket
                self._current = current
                for entry in current:
                    key, kind, node, a, b = entry
                    time_us = key >> SEQ_BITS
                    if time_us > end_us:
                        raise _EndOfRun
                    if kind == DELIVER:
                        if not alive[node]:
                            drops["crashed"] += 1
                            continue
                        machine = machines[node]
                        now = (
                            time_us // 1000
                            if plain_clock
                            else offset_ms[node] + time_us * rate_ppm[node] // scale
                        )
                        machine.receive(b, node_ids[a], now)
                        deliveries += 1
                        record(time_us)
                        record(node << NODE_BITS | a)
                        tick_min = time_us
                    elif kind == TICK:
                        if tick_at[node] != time_us or incarnation[node] != a or not alive[node]:
                            continue  # superseded by an earlier deadline, or from a past life
                        tick_at[node] = -1
                        machine = machines[node]
                        now = (
                            time_us // 1000
                            if plain_clock
                            else offset_ms[node] + time_us * rate_ppm[node] // scale
                        )
                        deadline = machine.next_deadline()
                        if deadline is not None and deadline <= now:
                            machine.tick(now)
                            ticks += 1
                            record(time_us)
                            record(node << NODE_BITS | TICK_SOURCE)
                        # never tick twice within one local millisecond
                        tick_min = (
                            (now + 1) * 1000
                            if plain_clock
                            else -((offset_ms[node] - now - 1) * scale // rate_ppm[node])
                        )
                    else:
                        self.now_us = time_us
                        self._control(kind, node, a, b, time_us)
                        continue
                    checked += 1
                    machine.check_invariants()
                    # -- drain the outbox; a MachineBase's list is taken without a call --
                    if direct[node]:
                        outbox = machine._outbox
                        if outbox:
                            machine._outbox = []
                    else:
                        outbox = machine.take_outbox()
                    for item in outbox:
                        if item.__class__ is not Send:
                            events += 1
                            hooks.on_event(node_ids[node], item, now)
                            continue
                        target = index_get(item[0])
                        if target is None:
                            drops["unknown_peer"] += 1
                            continue
                        sends += 1
                        if plain_network and not cuts:
                            if uniform:
                                delay = int(uniform_low_us + latency_random() * uniform_span_us)
                            else:
                                delay = const_us
                            key = time_us + delay << SEQ_BITS | seq()
                            bucket = bucket_of(key >> BUCKET_SHIFT)
                            if bucket is not None:
                                bucket.append((key, DELIVER, target, node, item[1]))
                            else:
                                self._push_key(key, DELIVER, target, node, item[1])
                            continue
                        if loss and loss_random() < loss:
                            drops["loss"] += 1
                            continue
                        if cuts and any(cut.blocks(node, target) for cut in cuts):
                            drops["partition"] += 1
                            continue
                        delay = sample_delay(node, target)
                        if reorder_us:
                            delay += int(reorder_random() * reorder_us)
                        self._push_key(
                            time_us + delay << SEQ_BITS | seq(), DELIVER, target, node, item[1]
                        )
                        if duplicate and self._duplicate_random() < duplicate:
                            duplicates += 1
                            delay = sample_delay(node, target)
                            if reorder_us:
                                delay += int(reorder_random() * reorder_us)
                            self._push_key(
                                time_us + delay << SEQ_BITS | seq(), DELIVER, target, node, item[1]
                            )
                    # -- schedule the next tick (lazily: a later deadline leaves the old entry) --
                    deadline = machine.next_deadline()
                    if deadline is not None:
                        due = (
                            deadline * 1000
                            if plain_clock
                            else -((offset_ms[node] - deadline) * scale // rate_ppm[node])
                        )
                        if due < tick_min:
                            due = tick_min
                        pending = tick_at[node]
                        if pending < 0 or due < pending:
                            tick_at[node] = due
                            key = due << SEQ_BITS | seq()
                            bucket = bucket_of(key >> BUCKET_SHIFT)
                            if bucket is not None:
                                bucket.append((key, TICK, node, incarnation[node], None))
                            else:
                                self._push_key(key, TICK, node, incarnation[node], None)
                processed += len(current)
            time_us = end_us
        except _EndOfRun:
            self._keep_unplayed(current, entry)
            time_us = end_us
        except (AssertionError, ContractError) as error:
            self.now_us = time_us
            self._record_violation(node if kind != GLOBAL else -1, error)
            self._flush_counters(deliveries, ticks, sends, duplicates, events, checked)
            return
        finally:
            self._current_bucket = -1
        self._flush_counters(deliveries, ticks, sends, duplicates, events, checked)
        self.now_us = end_us

    def _push_key(self, key: int, kind: int, node: int, a: Any, b: Any) -> None:
        """Queue an event under an existing key (see `_push`)."""
        entry = (key, kind, node, a, b)
        bucket_number = key >> BUCKET_SHIFT
        bucket = self._buckets.get(bucket_number)
        if bucket is not None:
            bucket.append(entry)
        elif bucket_number == self._current_bucket:
            # due within the bucket being played: after the event being played (its key
            # is larger), so the loop over the bucket still reaches it in order
            bisect.insort(self._current, entry)
        else:
            self._buckets[bucket_number] = [entry]
            heapq.heappush(self._bucket_heap, bucket_number)

    def _keep_unplayed(
        self, current: list[tuple[int, int, int, Any, Any]], entry: tuple[int, int, int, Any, Any]
    ) -> None:
        """Put the events of the bucket being played from `entry` on back in the queue."""
        rest = current[current.index(entry) :]
        bucket_number = rest[0][0] >> BUCKET_SHIFT
        self._buckets[bucket_number] = rest + self._buckets.get(bucket_number, [])
        if len(rest) == len(self._buckets[bucket_number]):
            heapq.heappush(self._bucket_heap, bucket_number)

    def _delay_sampler(self) -> Callable[[int, int], int]:
        """Latency of one copy on link (source, target) in µs, before reordering jitter."""
        network = self.config.network
        latency_rng = self.streams["latency"]
        if network.links:
            latency_for = network.latency_for
            return lambda source, target: latency_for(source, target).sample_us(latency_rng)
        sample = network.latency.sample_us
        return lambda source, target: sample(latency_rng)

    def _flush_counters(self, *counts: int) -> None:
        stats = self.stats
        stats.deliveries += counts[0]
        stats.ticks += counts[1]
        stats.sends += counts[2]
        stats.duplicates += counts[3]
        stats.events += counts[4]
        stats.invariants_checked += counts[5]

    def _control(self, kind: int, node: int, a: Any, b: Any, time_us: int) -> None:
        """Faults, scheduled calls and global checks: rare, so plain methods."""
        stats = self.stats
        if kind == GLOBAL:
            stats.global_checks += 1
            self.hooks.check_global(self)
            return
        if kind == CALL:
            if not self.alive[node]:
                return
            machine = self.machines[node]
            now_ms = self.local_ms(node, time_us)
            b(machine, now_ms)
            stats.calls += 1
            stats.invariants_checked += 1
            machine.check_invariants()
            self._after_input(node, machine, time_us, now_ms, time_us)
            return
        stats.faults_applied += 1
        self.trace.records.append(time_us)
        self.trace.records.append(FAULT_TAG - (a << NODE_BITS | (node + 1)))
        if a == _FAULT_PARTITION_ON:
            self.active_cuts.append(b)
        elif a == _FAULT_PARTITION_OFF:
            self.active_cuts.remove(b)
        elif a == _FAULT_CRASH and self.alive[node]:
            state_of = getattr(self.machines[node], "durable_state", None)
            self.durable[node] = state_of() if state_of is not None else None
            self.alive[node] = False
        elif a == _FAULT_RESTART and not self.alive[node]:
            self.alive[node] = True
            self.incarnation[node] += 1
            self._tick_at[node] = -1
            self.machines[node] = self._build(node)
            self._direct_outbox[node] = _has_plain_outbox(self.machines[node])
            self._start(node, time_us)
