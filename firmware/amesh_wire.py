# The bridge protocol v1, device side: seal uplink, open downlink (see docs/microcontrollers.md).
# Datagram = cbor(envelope) + HMAC-SHA256(key, cbor(envelope)); envelope keys are all text,
# and cbor_pure sorts them bytewise, so encoding never depends on dict order.
import cbor_pure as cbor
from amesh_hmac import HmacSha256, equal

VERSION = 1
TAG_BYTES = 32
DATAGRAM_MAX = 1400
HELLO = 1
HEARTBEAT = 2
READING = 3
INFER_RESULT = 4
CHUNK_ACK = 5
SAMPLE = 6
WELCOME = 16
MODEL_CHUNK = 17
INFER_REQUEST = 18
_DOWNLINK = (WELCOME, MODEL_CHUNK, INFER_REQUEST)
_KEYS = ("b", "c", "d", "n", "t", "v")
WINDOW = 24  # downlink anti-replay window (RFC 4303 3.4.3); a small int on every port
_WINDOW_FULL = (1 << WINDOW) - 1


class CounterStore:
    """Uplink counter that never repeats, even across reboots, with few flash writes.

    The file holds a reservation R: counters up to R may have been used. At boot
    the counter resumes at R and R + step is written before any counter above R
    goes out, so a reboot at any moment skips ahead instead of repeating.
    """

    def __init__(self, path, step):
        self.path = path
        self.step = step
        self.value = self._load()
        self.reserved = self.value
        self._reserve()

    def _load(self):
        try:
            with open(self.path) as f:
                return int(f.read().strip() or "0")
        except (OSError, ValueError):
            return 0

    def _reserve(self):
        self.reserved = self.value + self.step
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(self.reserved))
        import os

        os.rename(tmp, self.path)

    def next(self):
        self.value += 1
        if self.value > self.reserved:
            self._reserve()
        return self.value


class Link:
    """Seals uplink messages and opens downlink ones for this device."""

    def __init__(self, device_id, key, nonce, counters):
        self.device_id = device_id
        self.nonce = nonce
        self.counters = counters
        self._mac = HmacSha256(key)
        self._high = 0
        self._mask = _WINDOW_FULL
        self.rejected = {}

    def seal(self, msg_type, body):
        envelope = {
            "v": VERSION,
            "t": msg_type,
            "d": self.device_id,
            "c": self.counters.next(),
            "n": self.nonce,
            "b": body,
        }
        signed = cbor.encode(envelope)
        return signed + self._mac.digest(signed)

    def reject(self, reason):
        self.rejected[reason] = self.rejected.get(reason, 0) + 1
        return None

    def open(self, datagram):
        """(type, body) of an authentic, fresh downlink message, else None (counted)."""
        n = len(datagram)
        if n <= TAG_BYTES or n > DATAGRAM_MAX:
            return self.reject("size")
        signed = datagram[: n - TAG_BYTES]
        # The tag is checked before decoding: forged bytes never reach the decoder.
        if not equal(self._mac.digest(signed), datagram[n - TAG_BYTES :]):
            return self.reject("bad_mac")
        try:
            env = cbor.decode(signed, DATAGRAM_MAX, 4, 64, DATAGRAM_MAX)
        except cbor.CBORDecodeError:
            return self.reject("decode")
        if not isinstance(env, dict) or len(env) != 6:
            return self.reject("schema")
        for key in _KEYS:
            if key not in env:
                return self.reject("schema")
        if env["v"] != VERSION or env["t"] not in _DOWNLINK or not isinstance(env["b"], dict):
            return self.reject("schema")
        if env["d"] != self.device_id or env["n"] != self.nonce:
            return self.reject("replay")
        counter = env["c"]
        if not isinstance(counter, int) or counter < 1 or not self._fresh(counter):
            return self.reject("replay")
        return env["t"], env["b"]

    def _fresh(self, counter):
        if counter > self._high:
            shift = counter - self._high
            self._mask = ((self._mask << shift) | 1) & _WINDOW_FULL if shift < WINDOW else 1
            self._high = counter
            return True
        offset = self._high - counter
        if offset >= WINDOW or (self._mask >> offset) & 1:
            return False
        self._mask |= 1 << offset
        return True
