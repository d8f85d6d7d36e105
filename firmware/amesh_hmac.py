# HMAC-SHA256 (RFC 2104) on hashlib.sha256, for ports without the `hmac` module.
import hashlib

_BLOCK = 64


class HmacSha256:
    """One key, many messages: the padded inner/outer keys are computed once."""

    def __init__(self, key):
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        key = key + bytes(_BLOCK - len(key))
        self._inner = bytes(b ^ 0x36 for b in key)
        self._outer = bytes(b ^ 0x5C for b in key)

    def digest(self, data):
        inner = hashlib.sha256(self._inner)
        inner.update(data)
        outer = hashlib.sha256(self._outer)
        outer.update(inner.digest())
        return outer.digest()


def equal(a, b):
    """Compare in time independent of where the bytes differ (tags are secrets)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0
