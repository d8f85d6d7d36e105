# A model slot: float32 parameters of a dense MLP, filled chunk by chunk, and its forward pass.
# Parameters: W1 (in, out) row-major, b1, W2, b2, ...; ReLU between layers, linear output.
#
# The parameters live in blocks of 64 floats (256 bytes), allocated once at boot. A 64 KB
# heap that has compiled the firmware is too fragmented for one large array, but has
# room for many small ones.
import gc
import hashlib
import struct
from array import array

LAYERS_MAX = 8
WIDTH_MAX = 1024
CHUNKS_MAX = 512
BLOCK_SHIFT = 6
BLOCK = 1 << BLOCK_SHIFT
_MASK = BLOCK - 1


def param_count(layers):
    n = 0
    for i in range(len(layers) - 1):
        n += layers[i] * layers[i + 1] + layers[i + 1]
    return n


def floats(n):
    # array('f', range(n)) allocates exactly 4 * n bytes and no temporary (range has
    # a length); the values are placeholders.
    return array("f", range(n))


def allocate_blocks(params_max, reserve_bytes, holes=4, hole_bytes=1536):
    """Blocks for up to `params_max` floats, leaving `reserve_bytes` of heap free.

    The blocks would fill every large free hole of a fragmented heap, and then a
    1.5 KB datagram could not be received; so `holes` such holes are held while
    the blocks are allocated and handed back afterwards.
    """
    gc.collect()
    kept = []
    for _ in range(holes):
        try:
            kept.append(bytearray(hole_bytes))
        except MemoryError:
            break
    reserve_bytes -= len(kept) * hole_bytes
    blocks = []
    held = 0
    while held < params_max:
        size = min(BLOCK, params_max - held)
        if gc.mem_free() < reserve_bytes + 4 * size:
            break
        try:
            blocks.append(floats(size))
        except MemoryError:
            break
        held += size
    kept = None
    gc.collect()
    return blocks


class ModelSlot:
    """One preallocated, bounded parameter store and the model it currently holds."""

    def __init__(self, blocks):
        self.blocks = blocks
        self.params_max = sum(len(block) for block in blocks)
        self.model_id = 0  # the model ready for inference (0: none)
        self.layers = None
        self._act = None
        self.pending = 0  # model id being received
        self._chunks = 0
        self._have = bytearray(CHUNKS_MAX // 8)

    def bitmap(self):
        return bytes(self._have[: (self._chunks + 7) // 8])

    def on_chunk(self, b):
        """Store one MODEL_CHUNK body; returns the CHUNK_ACK body to send."""
        m, k, i, o, z, layers, d = b["m"], b["k"], b["i"], b["o"], b["z"], b["l"], b["d"]
        if m == self.model_id:
            self._chunks = k
            return {"m": m, "h": bytes(b"\xff" * ((k + 7) // 8)), "ok": True}
        error = self._check(k, i, o, z, layers, d)
        if error:
            return {"m": m, "h": b"", "ok": False, "e": error}
        if m != self.pending:
            # A new model overwrites the slot: the old one stops serving.
            self.pending = m
            self.model_id = 0
            self._chunks = k
            for j in range(len(self._have)):
                self._have[j] = 0
        self._store(o // 4, d)
        self._have[i // 8] |= 1 << (i % 8)
        if self._complete() and self._activate(layers, z, b["h"]):
            self.pending = 0
            self.model_id = m
            return {"m": m, "h": self.bitmap(), "ok": True}
        return {"m": m, "h": self.bitmap(), "ok": False}

    def _store(self, start, data):
        # Float by float from the chunk's bytes: array("f", data) would need a 1 KB
        # hole per chunk, which a fragmented 64 KB heap often lacks (MemoryError).
        blocks = self.blocks
        unpack = struct.unpack_from
        k = start
        for at in range(0, len(data), 4):
            blocks[k >> BLOCK_SHIFT][k & _MASK] = unpack("<f", data, at)[0]
            k += 1

    def _check(self, k, i, o, z, layers, d):
        if not isinstance(layers, list) or not 2 <= len(layers) <= LAYERS_MAX:
            return "bad_layers"
        for width in layers:
            if not isinstance(width, int) or not 0 < width <= WIDTH_MAX:
                return "bad_layers"
        n = param_count(layers)
        if n > self.params_max:
            return "too_large"
        if z != 4 * n or not 0 < k <= CHUNKS_MAX or not 0 <= i < k:
            return "bad_chunk"
        if not isinstance(d, bytes) or o % 4 or len(d) % 4 or o + len(d) > z:
            return "bad_chunk"
        return None

    def _complete(self):
        for j in range(self._chunks):
            if not (self._have[j // 8] >> (j % 8)) & 1:
                return False
        return True

    def _activate(self, layers, z, digest):
        n = z // 4
        h = hashlib.sha256()
        for index in range((n + BLOCK - 1) // BLOCK):
            block = self.blocks[index]
            h.update(memoryview(block)[: min(len(block), n - index * BLOCK)])
        if h.digest() != digest:
            # Corrupt or mixed chunks: start over on the next chunk.
            for j in range(len(self._have)):
                self._have[j] = 0
            return False
        self.layers = layers
        width = max(layers)
        if self._act is None or len(self._act[0]) < width:
            self._act = None
            self._act = (floats(width), floats(width))
        return True

    def forward(self, x):
        """Run the loaded model on `x` (array('f') of the input width); returns a new array."""
        layers = self.layers
        blocks = self.blocks
        a, nxt = self._act
        for i in range(layers[0]):
            a[i] = x[i]
        off = 0
        last = len(layers) - 2
        for li in range(len(layers) - 1):
            n_in = layers[li]
            n_out = layers[li + 1]
            boff = off + n_in * n_out
            for j in range(n_out):
                k = boff + j
                s = blocks[k >> BLOCK_SHIFT][k & _MASK]
                k = off + j
                for i in range(n_in):
                    s += a[i] * blocks[k >> BLOCK_SHIFT][k & _MASK]
                    k += n_out
                if li < last and s < 0:
                    s = 0.0
                nxt[j] = s
            off = boff + n_out
            a, nxt = nxt, a
        out = floats(layers[-1])
        for j in range(layers[-1]):
            out[j] = a[j]
        return out
