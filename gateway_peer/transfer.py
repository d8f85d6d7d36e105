"""Chunked, windowed, acknowledged transfer of one model to one device (sans-I/O)."""

from __future__ import annotations

from typing import Any

from agentmesh.gateway_peer.model import MlpModel


class ModelTransfer:
    """Which chunks of a model a device holds; which to (re)send next.

    The device acknowledges with a bitmap of the chunks it holds (bit i of byte
    i // 8, least significant bit first), so a lost ack is repaired by the next
    one. At most `window` chunks are in flight; a chunk unacknowledged for
    `retry_ms` is resent, at most `retries_max` times each, then the transfer fails.
    """

    def __init__(
        self, model: MlpModel, chunk_bytes: int, window: int, retry_ms: int, retries_max: int
    ) -> None:
        self.model = model
        self.chunk_bytes = chunk_bytes
        self.chunks_count = max(1, -(-len(model.data) // chunk_bytes))
        self.window = window
        self.retry_ms = retry_ms
        self.retries_max = retries_max
        self.have = bytearray(-(-self.chunks_count // 8))
        self.sent_at_ms: dict[int, int] = {}
        self.sends: dict[int, int] = {}
        self.loaded = False
        self.failed: str | None = None
        self.chunks_sent = 0
        self._probe_at_ms: int | None = None

    def chunk_body(self, index: int) -> dict[str, Any]:
        """The MODEL_CHUNK body of chunk `index` (every chunk names the whole model)."""
        offset = index * self.chunk_bytes
        return {
            "m": self.model.model_id,
            "i": index,
            "k": self.chunks_count,
            "o": offset,
            "z": len(self.model.data),
            "l": list(self.model.layers),
            "h": self.model.sha256,
            "d": self.model.data[offset : offset + self.chunk_bytes],
        }

    def holds(self, index: int) -> bool:
        return bool(self.have[index // 8] >> (index % 8) & 1)

    def all_held(self) -> bool:
        return all(self.holds(index) for index in range(self.chunks_count))

    def on_ack(self, bitmap: bytes) -> None:
        """Merge the device's bitmap (bits beyond the chunk count are ignored)."""
        for position in range(min(len(bitmap), len(self.have))):
            self.have[position] |= bitmap[position]
        for index in list(self.sent_at_ms):
            if self.holds(index):
                del self.sent_at_ms[index]

    def due(self, now_ms: int) -> list[int]:
        """Chunks to send now: expired ones again, then new ones up to the window."""
        if self.loaded or self.failed:
            return []
        if self.all_held():
            return self._probe(now_ms)
        due: list[int] = []
        for index, sent_ms in sorted(self.sent_at_ms.items()):
            if now_ms - sent_ms >= self.retry_ms:
                if self.sends[index] > self.retries_max:
                    self.failed = "retries_exhausted"
                    return []
                due.append(index)
        in_flight = len(self.sent_at_ms)
        for index in range(self.chunks_count):
            if in_flight >= self.window:
                break
            if not self.holds(index) and index not in self.sent_at_ms:
                due.append(index)
                in_flight += 1
        for index in due:
            self.sent_at_ms[index] = now_ms
            self.sends[index] = self.sends.get(index, 0) + 1
            self.chunks_sent += 1
        return due

    def _probe(self, now_ms: int) -> list[int]:
        """All chunks held but no `ok` yet (lost ack): resend the last chunk as a probe."""
        if self._probe_at_ms is None:
            self._probe_at_ms = now_ms
            return []
        if now_ms - self._probe_at_ms < self.retry_ms:
            return []
        last = self.chunks_count - 1
        self.sends[last] = self.sends.get(last, 0) + 1
        if self.sends[last] > self.retries_max:
            self.failed = "retries_exhausted"
            return []
        self._probe_at_ms = now_ms
        self.chunks_sent += 1
        return [last]

    def next_deadline(self) -> int | None:
        if self.loaded or self.failed:
            return None
        if self._probe_at_ms is not None:
            return self._probe_at_ms + self.retry_ms
        if not self.sent_at_ms:
            return None
        return min(self.sent_at_ms.values()) + self.retry_ms
