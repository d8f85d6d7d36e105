"""A gateway's bridged devices in federated rounds: their samples become their updates.

A 64 KB device cannot train the digits-8 model, so it sends labelled samples
(protocol type 6, `sample`) and the gateway keeps the newest of them per device
(gateway_peer: `samples_per_device_max`). When a round starts and this gateway is a
trainer of its cohort, `DeviceRounds` trains one update per device that has at least
`samples_min` usable samples (the rounds host's own trainer, on its one worker
thread, from the same global model), and hands each to the round machine, which
offers it signed with the device's derived identity (`signer_for`) and carried by
this gateway (`UpdateOffer.via`). Validators and aggregators judge each device as
one vote, like any peer (docs/microcontrollers.md).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

import numpy as np

from agentmesh.core.rounds.task import flat_bytes, unflatten
from agentmesh.gateway_peer.messages import Sample

if TYPE_CHECKING:
    from agentmesh.edge.rounds_host import RoundsHost
    from agentmesh.gateway_peer.server import GatewayServer

log = logging.getLogger("agentmesh.device_rounds")

SAMPLES_MIN = 16  # a device with fewer usable samples sits the round out
_OFFERS_KEPT = 64  # recent device offers listed in the status
_SHUFFLE_DOMAIN = b"agentmesh/device-shuffle/1\x00"


class DeviceRounds:
    """Trains and offers the updates of this gateway's devices in each round it trains in."""

    def __init__(
        self,
        rounds: RoundsHost,
        server: GatewayServer,
        samples_min: int = SAMPLES_MIN,
    ) -> None:
        self.rounds = rounds
        self.server = server
        self.samples_min = samples_min
        self.offers_max = rounds.settings.device_offers_max  # the cap validators apply
        first, last = rounds.shapes[0], rounds.shapes[-1]
        self.features = first[0]  # inputs of the first dense layer (64 for digits-8)
        self.classes = last[-1]
        self.offered: deque[dict[str, Any]] = deque(maxlen=_OFFERS_KEPT)
        self.counters: dict[str, int] = {}
        rounds.extra_training = self.on_train

    def on_train(self, number: int, model: bytes, deadline_ms: int) -> None:
        """The round machine asked this agent to train: queue one job per ready device."""
        if self.rounds.machine is None:
            return
        sets = self.server.sample_sets(self.samples_min)
        if len(sets) > self.offers_max:
            self._count("devices_over_cap", len(sets) - self.offers_max)
            sets = sets[: self.offers_max]
        if sets:
            log.info("round %d: training %d device updates", number, len(sets))
        loop = asyncio.get_running_loop()
        for device_id, samples in sets:
            usable = self._usable(samples)
            if usable is None:
                self._count("devices_too_few_usable_samples")
                continue
            features, labels = usable
            future = loop.run_in_executor(self.rounds.executor, self._train_job, number, model,
                                          deadline_ms, device_id, features, labels)  # fmt: skip
            future.add_done_callback(functools.partial(self._trained, number, device_id))

    def _usable(self, samples: list[Sample]) -> tuple[np.ndarray, np.ndarray] | None:
        """Samples of the model's input width and a known class (others are ignored)."""
        kept = [s for s in samples if s.features.size == self.features and s.label < self.classes]
        if len(kept) < self.samples_min:
            return None
        features = np.stack([s.features for s in kept]).astype(np.float32)
        labels = np.array([s.label for s in kept], dtype=np.int32)
        return features, labels

    def _train_job(
        self,
        number: int,
        model: bytes,
        deadline_ms: int,
        device_id: str,
        features: np.ndarray,
        labels: np.ndarray,
    ) -> tuple[bytes, int]:
        """On the rounds host's worker thread: one local epoch on the device's samples."""
        rounds, settings = self.rounds, self.rounds.settings
        rounds.trainer.set_weights(unflatten(model, rounds.shapes))
        clock = rounds.agent.clock
        seed = hashlib.sha256(_SHUFFLE_DOMAIN + device_id.encode()).digest()[:8]
        result = rounds.trainer.train(
            features, labels, epochs=settings.epochs, batch_size=settings.batch_size,
            learning_rate=settings.learning_rate,
            deadline_passed=lambda: clock.now_ms() >= deadline_ms,
            rng=np.random.default_rng((int.from_bytes(seed, "big"), number)),
        )  # fmt: skip
        trained = np.frombuffer(flat_bytes(rounds.trainer.get_weights()), dtype="<f4")
        delta = trained - np.frombuffer(model, dtype="<f4")
        return delta.astype("<f4").tobytes(), result.examples or len(labels)

    def _trained(
        self, number: int, device_id: str, future: asyncio.Future[tuple[bytes, int]]
    ) -> None:
        machine = self.rounds.machine
        if future.cancelled() or machine is None:
            return
        error = future.exception()
        if error is not None:
            self._count("device_training_failed")
            log.error("training device %s for round %d failed: %s", device_id, number, error)
            return
        delta, samples = future.result()
        signer = self.server.signer_for(device_id)
        sent_before = machine.counters.get("device_offers_sent", 0)
        machine.on_device_trained(number, signer, delta, samples, self.rounds.agent.clock.now_ms())
        offered = machine.counters.get("device_offers_sent", 0) > sent_before
        self._count("device_offers" if offered else "device_offers_refused")
        if not offered:
            log.info("round %d: device %s's update not offered (round closed or refused)",
                     number, device_id)  # fmt: skip
        norm = float(np.linalg.norm(np.frombuffer(delta, dtype="<f4").astype(np.float64)))
        self.offered.append({"round": number, "device_id": device_id, "peer_id": signer.peer_id,
                             "samples": samples, "update_norm": norm,
                             "offered": offered})  # fmt: skip
        self.rounds.drain()

    def _count(self, name: str, amount: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + amount

    def status(self) -> dict[str, Any]:
        """`agent status --json` self.gateway.device_rounds."""
        return {
            "samples_min": self.samples_min,
            "offers_max": self.offers_max,
            "offered": list(self.offered),
            "counters": dict(self.counters),
        }
