"""Token buckets for per-peer message and byte rates (time passed in, in seconds)."""

from __future__ import annotations


class TokenBucket:
    """`rate_per_s` tokens a second, at most `burst` saved up.

    `take` is all-or-nothing (a frame either fits or is dropped); `charge` may drive
    the bucket negative, for blob bytes already accepted: the debt then holds back
    that peer's next frames until it is repaid, so the average rate still holds.
    """

    __slots__ = ("_burst", "_rate_per_s", "_tokens", "_updated_s")

    def __init__(self, rate_per_s: float, burst: float, now_s: float) -> None:
        self._rate_per_s = rate_per_s
        self._burst = burst
        self._tokens = burst
        self._updated_s = now_s

    def _refill(self, now_s: float) -> None:
        elapsed_s = max(0.0, now_s - self._updated_s)
        self._tokens = min(self._burst, self._tokens + elapsed_s * self._rate_per_s)
        self._updated_s = now_s

    def take(self, amount: float, now_s: float) -> bool:
        """Remove `amount` tokens if there are that many; else nothing and False."""
        self._refill(now_s)
        if self._tokens < amount:
            return False
        self._tokens -= amount
        return True

    def charge(self, amount: float, now_s: float) -> None:
        """Remove `amount` tokens even into debt."""
        self._refill(now_s)
        self._tokens -= amount

    def tokens(self, now_s: float) -> float:
        self._refill(now_s)
        return self._tokens


class PeerRate:
    """The two buckets of one peer: messages and bytes."""

    __slots__ = ("bytes", "messages")

    def __init__(
        self,
        messages_per_s: float,
        message_burst: float,
        bytes_per_s: float,
        byte_burst: float,
        now_s: float,
    ) -> None:
        self.messages = TokenBucket(messages_per_s, message_burst, now_s)
        self.bytes = TokenBucket(bytes_per_s, byte_burst, now_s)

    def admit(self, size_bytes: int, now_s: float) -> bool:
        """One message of `size_bytes`: both buckets must allow it."""
        if self.bytes.tokens(now_s) < size_bytes:
            return False
        if not self.messages.take(1, now_s):
            return False
        self.bytes.charge(size_bytes, now_s)
        return True
