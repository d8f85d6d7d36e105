"""Anti-replay sliding window over monotonic message counters.

The scheme of IPsec ESP (RFC 4303 §3.4.3) and DTLS (RFC 6347 §4.1.2.6): a
counter above the highest seen is accepted and slides the window; one within
`size` below it is accepted once (UDP may reorder); anything older is refused.
After a restart only the highest counter is known, so the window starts full.
"""

from __future__ import annotations


class ReplayWindow:
    """Highest accepted counter plus a bitmap of the `size` counters below it."""

    __slots__ = ("_full", "highest", "mask", "size")

    def __init__(self, highest: int, size: int = 64) -> None:
        self.size = size
        self._full = (1 << size) - 1
        self.highest = highest
        self.mask = self._full  # bit i: counter highest - i was seen (or is unknown)

    def accept(self, counter: int) -> bool:
        """True once for each fresh counter; False for replays and too-old ones."""
        if counter > self.highest:
            shift = counter - self.highest
            self.mask = ((self.mask << shift) | 1) & self._full if shift < self.size else 1
            self.highest = counter
            return True
        offset = self.highest - counter
        if offset >= self.size or self.mask >> offset & 1:
            return False
        self.mask |= 1 << offset
        return True
