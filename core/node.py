"""The sans-I/O contract every protocol machine follows.

A machine is a plain object. The host (the asyncio agent in edge/, or the
simulator in core/sim) drives it and does all I/O:

    machine.start(now_ms)                      # once, after construction
    machine.receive(message, sender, now_ms)   # a message from peer `sender`
    machine.tick(now_ms)                       # called at or after next_deadline()
    machine.next_deadline()  -> int | None     # earliest now_ms at which tick is due
    machine.take_outbox()    -> list[Send | Event]
    machine.check_invariants()                 # raises InvariantViolation

Rules (see docs/node-contract.md):
- Time is an integer of milliseconds passed in; a machine never reads a clock.
- Randomness is an injected `random.Random` (seeded by the host); signing is an
  injected `Signer`. No global random, no sockets, no sleeps, no threads.
- A machine never calls back into the host: everything it wants done goes in
  the outbox, which the host drains after every input.
- Peer misbehaviour is data: a bad message becomes an Event (and a counter)
  and is dropped. Programming errors are asserts; API misuse raises a
  subclass of `ContractError`.
- Every queue and table is bounded (see agentmesh.core.limits).
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple, Protocol, runtime_checkable


class ContractError(Exception):
    """The host used a machine against its contract (a bug in the caller)."""


class InvariantViolation(AssertionError):
    """A machine's own invariant does not hold (a bug in the machine)."""


class Send(NamedTuple):
    """Ask the host to deliver `message` to peer `to` (best effort, unordered).

    A NamedTuple rather than a frozen dataclass: machines build one per message
    and the simulator delivers hundreds of thousands a second.
    """

    to: str
    message: Any


_NO_DATA: Mapping[str, Any] = MappingProxyType({})


class Event(NamedTuple):
    """Something the host (or a test) may want to know: a decision, evidence, a drop."""

    kind: str
    data: Mapping[str, Any] = _NO_DATA


Output = Send | Event


@runtime_checkable
class Signer(Protocol):
    """Signs bytes with this node's identity key."""

    @property
    def peer_id(self) -> str: ...

    def sign(self, data: bytes) -> bytes: ...


@runtime_checkable
class Machine(Protocol):
    """What a host may call on a protocol machine."""

    def start(self, now_ms: int) -> None: ...

    def receive(self, message: Any, sender: str, now_ms: int) -> None: ...

    def tick(self, now_ms: int) -> None: ...

    def next_deadline(self) -> int | None: ...

    def take_outbox(self) -> list[Output]: ...

    def check_invariants(self) -> None: ...


class MachineBase:
    """Outbox and counters shared by the machines; subclasses add the protocol."""

    def __init__(self, node_id: str, rng: random.Random) -> None:
        if not isinstance(rng, random.Random):
            raise ContractError("rng must be a seeded random.Random owned by the host")
        self.node_id = node_id
        self.rng = rng
        self.counters: dict[str, int] = {}
        self._outbox: list[Output] = []

    def send(self, to: str, message: Any) -> None:
        self._outbox.append(Send(to, message))

    def emit(self, kind: str, /, **data: Any) -> None:
        self._outbox.append(Event(kind, data))

    def count(self, name: str, by: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + by

    def take_outbox(self) -> list[Output]:
        out, self._outbox = self._outbox, []
        return out

    def start(self, now_ms: int) -> None:
        """Default: nothing to do at start."""

    def check_invariants(self) -> None:
        """Default: no invariants beyond the type system."""
