"""The trace hash: blake2b over the ordered event records, hashed in batches.

The engine appends two integers per record to `records` (a plain list, so the hot
path pays one `list.append` each); every few thousand records the buffer is packed
as little-endian int64 and fed to the hash. Same seed, same records, same hash on
any machine (no `hash()` of strings, which PYTHONHASHSEED would randomize).
"""

from __future__ import annotations

import hashlib
import sys
from array import array

TICK_SOURCE = 0x1FFFFF  # the "source" field of a tick record (no node has this index)
NODE_BITS = 21  # records pack target << NODE_BITS | source; nodes must be < 2**21 - 1
FAULT_TAG = -1  # fault records use negative second fields
TRACE_FLUSH_RECORDS = 8192  # the engine flushes between time buckets once this many are buffered


class TraceHasher:
    """Accumulates records; `digest()` flushes and returns the hex hash."""

    def __init__(self) -> None:
        self.records: list[int] = []
        self.count = 0
        self._hash = hashlib.blake2b(digest_size=16)

    def flush(self) -> None:
        if not self.records:
            return
        packed = array("q", self.records)
        if sys.byteorder != "little":
            packed.byteswap()
        self._hash.update(packed.tobytes())
        self.count += len(self.records) // 2
        self.records.clear()

    def digest(self) -> str:
        self.flush()
        return self._hash.copy().hexdigest()
