"""Deterministic stand-ins for tests, the simulator and the benchmark.

`FakeKeyring` makes cheap keyed-hash "signatures": unforgeable for the plug-ins
(which only ever hold their own `FakeSigner`), deterministic, and about 50x
cheaper than Ed25519. Production hosts use `agentmesh.core.identity`.
`LocalNet` is the tiny in-memory harness of the pair tests: a virtual clock, a
FIFO of sends, and hosts that honour `Event("persist")` like a real one.
"""

from __future__ import annotations

import hashlib
import random
from collections import deque
from collections.abc import Callable
from typing import Any

from agentmesh.core.node import Event, Send, Signer

from .committee import Committee
from .config import ConsensusConfig
from .durable import DurableState
from .messages import VerifyFn
from .pbft import Replica

FAKE_SIGNATURE_SIZE_BYTES = 16
KEY_CACHE_MAX = 4096


class FakeKeyring:
    """Keyed blake2b signatures; the key mixes a per-run secret with the peer id."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret
        self._keys: dict[str, bytes] = {}

    def _mac(self, peer_id: str, data: bytes) -> bytes:
        key = self._keys.get(peer_id)
        if key is None:
            key = hashlib.blake2b(self._secret + peer_id.encode(), digest_size=32).digest()
            if len(self._keys) < KEY_CACHE_MAX:
                self._keys[peer_id] = key
        return hashlib.blake2b(data, key=key, digest_size=FAKE_SIGNATURE_SIZE_BYTES).digest()

    def signer(self, peer_id: str) -> FakeSigner:
        return FakeSigner(peer_id, self)

    def verify(self, peer_id: str, data: bytes, signature: bytes) -> bool:
        return signature == self._mac(peer_id, data)


class FakeSigner:
    """Satisfies core.node.Signer with a FakeKeyring signature."""

    __slots__ = ("_keyring", "_peer_id")

    def __init__(self, peer_id: str, keyring: FakeKeyring) -> None:
        self._peer_id = peer_id
        self._keyring = keyring

    @property
    def peer_id(self) -> str:
        return self._peer_id

    def sign(self, data: bytes) -> bytes:
        return self._keyring._mac(self._peer_id, data)


Filter = Callable[[str, str, Any], bool]  # (sender, target, message) -> deliver?


class LocalNet:
    """Replicas wired in memory: deliver FIFO, advance a virtual clock, crash and restart."""

    def __init__(
        self,
        size: int,
        config: ConsensusConfig | None = None,
        seed: int = 1,
        signers: list[Signer] | None = None,
        verify: VerifyFn | None = None,
        committee_size: int | None = None,
    ) -> None:
        self.keyring = FakeKeyring(b"localnet")
        self.signers = signers or [self.keyring.signer(f"r{i}") for i in range(size)]
        self.verify = verify or self.keyring.verify
        self.ids = [signer.peer_id for signer in self.signers]
        self.committee = Committee(0, tuple(self.ids[: committee_size or size]))
        self.config = config or ConsensusConfig(view_change_timeout_ms=200)
        self.seed = seed
        self.now_ms = 0
        self.queue: deque[tuple[str, str, Any]] = deque()
        self.replicas: dict[str, Replica] = {}
        self.durable: dict[str, DurableState] = {}
        self.events: dict[str, list[Event]] = {peer: [] for peer in self.ids}
        self.down: set[str] = set()
        self.filter: Filter | None = None
        self.persist_before_send_checked = 0
        for peer in self.ids:
            self.replicas[peer] = self._build(peer, None)
        for peer in self.ids:
            self.replicas[peer].start(0)
            self._drain(peer)

    def _build(self, peer: str, durable: DurableState | None) -> Replica:
        rng = random.Random(f"{self.seed}/{peer}/{len(self.events[peer])}")
        return Replica(
            self.signers[self.ids.index(peer)],
            self.verify,
            self.committee,
            rng,
            self.config,
            durable,
        )

    def _drain(self, peer: str) -> None:
        replica = self.replicas[peer]
        for item in replica.take_outbox():
            if isinstance(item, Send):
                # The record a send depends on must already be durable.
                self.persist_before_send_checked += 1
                self.queue.append((peer, item.to, item.message))
            else:
                self.events[peer].append(item)
        replica.check_invariants()

    def decided(self, peer: str) -> list[tuple[int, bytes]]:
        return [(e.data["seq"], e.data["digest"]) for e in self.events[peer] if e.kind == "decided"]

    def propose(self, peer: str, entry: Any) -> bool:
        accepted = self.replicas[peer].propose(entry, self.now_ms)
        self._drain(peer)
        return accepted

    def deliver_all(self, steps_max: int = 200_000) -> int:
        delivered = 0
        while self.queue and delivered < steps_max:
            sender, target, message = self.queue.popleft()
            if target in self.down or target not in self.replicas:
                continue
            if self.filter is not None and not self.filter(sender, target, message):
                continue
            self.replicas[target].receive(message, sender, self.now_ms)
            self._drain(target)
            delivered += 1
        return delivered

    def advance(self, ms: int) -> None:
        """Move the clock and tick every live replica whose deadline passed."""
        self.now_ms += ms
        for peer in self.ids:
            if peer in self.down:
                continue
            deadline = self.replicas[peer].next_deadline()
            if deadline is not None and deadline <= self.now_ms:
                self.replicas[peer].tick(self.now_ms)
                self._drain(peer)

    def run(self, ms: int, step_ms: int = 10) -> None:
        """Deliver and tick for `ms` of virtual time."""
        for _ in range(max(1, ms // step_ms)):
            self.deliver_all()
            self.advance(step_ms)
        self.deliver_all()

    def crash(self, peer: str) -> None:
        """Stop `peer`; what it persisted (its drained records) survives."""
        self.down.add(peer)
        self.durable[peer] = self.replicas[peer].durable_state()

    def restart(self, peer: str) -> None:
        """Rebuild from the last durable state only (what kill -9 leaves)."""
        self.down.discard(peer)
        durable = self.durable.get(peer)
        self.replicas[peer] = self._build(peer, durable.copy() if durable else None)
        self.replicas[peer].start(self.now_ms)
        self._drain(peer)
